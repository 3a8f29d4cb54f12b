"""`marl-grpo eval`, `watch` and `play`: a trained policy against a bot (or another checkpoint),
and a person playing one player beside it."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Collection, Iterable

import torch
import tyro

from marl_grpo.agents import BOT_NAMES, SoccerPolicy, make_bot
from marl_grpo.envs import KICK_ACTION, SoccerConfig, SoccerVecEnv
from marl_grpo.envs.backend import resolve_device
from marl_grpo.envs.record import save_video
from marl_grpo.rl.evaluate import evaluate
from marl_grpo.run.checkpoint import load_policy, read_config
from marl_grpo.run.files import EVAL_SEED


@dataclass
class EvalConfig:
    """Evaluate a checkpoint against a scripted bot over seeded matches."""

    checkpoint: tyro.conf.Positional[str]
    """checkpoint folder (runs/<name>/checkpoint)"""
    opponent: str = "team"
    """bot to play against: random, chaser or team"""
    strength: float = 1.0
    """bot strength in [0, 1]"""
    matches: int = 200
    """number of matches (match i uses seed `seed + i`)"""
    seed: int = EVAL_SEED
    """first match seed"""
    team_size: int | None = None
    """players per team (default: as in training)"""
    deterministic: bool = False
    """play the most likely action instead of sampling"""
    device: str = "auto"
    """torch device"""


def _env_kwargs(meta: dict[str, Any], team_size: int | None) -> dict[str, Any]:
    env = meta["env"]
    kwargs = {"team_size": env["team_size"], "blue_size": env.get("blue_size"), "red_size": env.get("red_size"),
              "max_cycles": env["max_cycles"]}
    if team_size is not None:
        kwargs.update(team_size=team_size, blue_size=None, red_size=None)
    return kwargs


def _load(checkpoint: str, team_size: int | None, device: Any) -> tuple[SoccerPolicy, dict[str, Any], dict[str, Any]]:
    meta = read_config(checkpoint)
    kwargs = _env_kwargs(meta, team_size)
    config = SoccerVecEnv(num_envs=1, device="cpu", **kwargs).config
    policy, meta = load_policy(checkpoint, device=device, env_config=config)
    return policy, meta, kwargs


def run_eval(cfg: EvalConfig) -> dict[str, float]:
    if cfg.opponent not in BOT_NAMES:
        raise ValueError(f"opponent={cfg.opponent!r} is invalid: expected one of {BOT_NAMES}")
    policy, _, kwargs = _load(cfg.checkpoint, cfg.team_size, resolve_device(cfg.device))
    result = evaluate(policy, kwargs, cfg.opponent, cfg.strength, cfg.matches, cfg.seed, cfg.deterministic)
    print(f"{cfg.checkpoint} vs {cfg.opponent} (strength {cfg.strength}), {cfg.matches} matches:")
    print(f"  win {result['eval/win_rate']:.1%}  draw {result['eval/draw_rate']:.1%}  loss {result['eval/loss_rate']:.1%}"
          f"  goal difference {result['eval/goal_diff']:+.2f} per match")
    return result


@dataclass
class WatchConfig:
    """Watch a checkpoint (blue) play a bot or another checkpoint (red) in a pygame window."""

    checkpoint: tyro.conf.Positional[str]
    """checkpoint folder of the blue team"""
    opponent: str = "team"
    """red: a bot (random, chaser, team) or another checkpoint folder"""
    strength: float = 1.0
    """bot strength in [0, 1]"""
    record: str | None = None
    """write the match to this .gif or .mp4 instead of opening a window"""
    seed: int = 0
    """match seed"""
    team_size: int | None = None
    """players per team (default: as in training)"""
    deterministic: bool = False
    """play the most likely action instead of sampling"""
    device: str = "cpu"
    """torch device"""


def run_watch(cfg: WatchConfig) -> Path | None:
    """Keys in the window: space/p pause, r restart, q/Esc quit."""
    device = resolve_device(cfg.device)
    policy, _, kwargs = _load(cfg.checkpoint, cfg.team_size, device)
    env = SoccerVecEnv(num_envs=1, device=device, render_mode="rgb_array" if cfg.record else "human", **kwargs)
    n_blue = env.config.n_blue
    if cfg.opponent in BOT_NAMES:
        bot = make_bot(cfg.opponent, env.config, strength=cfg.strength, seed=cfg.seed, device=device)

        def red(obs: torch.Tensor) -> torch.Tensor:
            return bot.act(obs)[:, n_blue:]
    elif Path(cfg.opponent).is_dir():
        other, _ = load_policy(cfg.opponent, device=device, env_config=env.config)

        def red(obs: torch.Tensor) -> torch.Tensor:
            return other.act(obs[:, n_blue:], deterministic=cfg.deterministic)[0]
    else:
        raise ValueError(f"opponent={cfg.opponent!r} is neither a bot ({', '.join(BOT_NAMES)}) nor a checkpoint folder")

    obs = env.reset(seed=cfg.seed)
    frames = [env.render()] if cfg.record else []
    paused = False
    try:
        while True:
            if not cfg.record:
                events = env.poll_events()
                if "quit" in events:
                    break
                if "pause" in events:
                    paused = not paused
                if "restart" in events:
                    obs = env.reset(seed=cfg.seed)
                if paused:
                    env.render()
                    time.sleep(1 / env.metadata["render_fps"])
                    continue
            blue = policy.act(obs[:, :n_blue], deterministic=cfg.deterministic)[0]
            obs, _, terminated, truncated, infos = env.step(torch.cat([blue, red(obs)], 1))
            if bool(terminated[0] or truncated[0]):
                score = infos["final_score"][0].tolist()
                print(f"final score: blue {score[0]} - {score[1]} red")
                if cfg.record:
                    break
            elif cfg.record:
                frames.append(env.render())
    finally:
        env.close()
    if cfg.record:
        path = save_video(frames, cfg.record, fps=env.metadata["render_fps"])
        print(f"video written to {path}")
        return path
    return None


# ---------------------------------------------------------------------------------- play
RUN_KEYS: dict[str, tuple[int, int]] = {
    "right": (1, 0), "d": (1, 0), "left": (-1, 0), "a": (-1, 0),
    "up": (0, 1), "w": (0, 1), "down": (0, -1), "s": (0, -1),
}
"""Key (pygame key name) -> direction on the screen (x right, y up), which is the world frame."""
KICK_KEY = "space"
PLAY_COMMAND_KEYS = {"p": "pause", "r": "restart", "q": "quit", "escape": "quit"}
"""Key -> window command in `play` (space kicks there, so only p pauses)."""
PLAY_KEYS_HELP = "arrows/WASD run, space kick, p pause, r restart, q/Esc quit"


def keys_to_action(keys: Collection[str], team: str = "blue", ball_in_reach: bool = True) -> int:
    """The action (an index into `ACTION_NAMES`) for the keys a person holds down.

    keys: pygame key names (``"left"``, ``"w"``, ``"space"``, ...); others are ignored.
    team: the controlled player's team, ``"blue"`` or ``"red"``.
    ball_in_reach: whether a kick would connect now (the ``ball_in_reach`` observation).

    - The run keys give a direction on the screen: one key runs E, N, W or S, two adjacent
      keys a diagonal, opposite keys cancel. No run key is ``stay`` (0).
    - The env reads moves in each agent's mirrored frame, which for red is the world turned
      by 180 degrees, so a red player's direction is turned back: right on the screen is
      always right on the screen.
    - Space is ``kick`` (9), which in this env is its own action (it does not accelerate). When
      the ball is out of reach a kick would do nothing, so holding space keeps the run
      direction and the kick goes off as soon as the ball comes within reach (as in Haxball).
    """
    if team not in ("blue", "red"):
        raise ValueError(f"team={team!r} is invalid: expected 'blue' or 'red'")
    if KICK_KEY in keys and ball_in_reach:
        return KICK_ACTION
    dx = sum(RUN_KEYS[k][0] for k in set(keys) & set(RUN_KEYS))
    dy = sum(RUN_KEYS[k][1] for k in set(keys) & set(RUN_KEYS))
    dx, dy = max(-1, min(1, dx)), max(-1, min(1, dy))  # "right" and "d" together are still one step right
    if dx == 0 and dy == 0:
        return 0
    if team == "red":
        dx, dy = -dx, -dy
    # actions 1..8 are E, NE, N, ... SE: counter-clockwise from +x in steps of 45 degrees
    return 1 + round(math.atan2(dy, dx) / (math.pi / 4)) % 8


@dataclass
class PlayConfig:
    """Play one player yourself, with the keyboard, beside a checkpoint's team.

    Keys: arrows or WASD run (two keys for a diagonal), space kicks (hold it to kick as soon as
    the ball is in reach), p pauses, r restarts, q or Esc quits. Your teammates are played by
    the checkpoint, the other team by a bot or another checkpoint. A match that ends prints its
    score and the next one starts.
    """

    checkpoint: tyro.conf.Positional[str]
    """checkpoint folder of your team (it plays your teammates)"""
    player: str = "blue_0"
    """the player you control: blue_0, blue_1, ..., red_0, ... (red: the checkpoint plays red)"""
    opponent: str = "team"
    """the other team: a bot (random, chaser, team) or another checkpoint folder"""
    strength: float = 1.0
    """bot strength in [0, 1]"""
    seed: int = 0
    """match seed (kickoffs, the bot's and the policy's random draws)"""
    team_size: int | None = None
    """players per team (default: as in training)"""
    deterministic: bool = False
    """teammates (and a checkpoint opponent) play their most likely action instead of sampling"""
    fps: int = 20
    """game speed in steps per second (20 is real time; lower is easier)"""
    device: str = "cpu"
    """torch device"""


def _sizes(meta: dict[str, Any]) -> str:
    env = meta["env"]
    return f"{env.get('blue_size') or env['team_size']}v{env.get('red_size') or env['team_size']}"


class HumanMatch:
    """One match in which a person's keys drive one player: the checkpoint plays that player's
    teammates and `opponent` the other team. `step(keys)` advances it by one step.

    Shapes: the env holds one match (B = 1), N = `num_agents` players, blue slots first.
    """

    def __init__(self, cfg: PlayConfig):
        if isinstance(cfg.fps, bool) or not isinstance(cfg.fps, int) or cfg.fps < 1:
            raise ValueError(f"fps={cfg.fps!r} is invalid: expected an int >= 1")
        self.cfg = cfg
        self.device = device = resolve_device(cfg.device)
        meta = read_config(cfg.checkpoint)
        self.env = SoccerVecEnv(num_envs=1, device=device, **_env_kwargs(meta, cfg.team_size))
        config = self.env.config
        if cfg.player not in config.agents:
            raise ValueError(f"player={cfg.player!r} is not in this {config.n_blue}v{config.n_red} match: expected one "
                             f"of {', '.join(config.agents)}")
        self.player = cfg.player
        self.index = config.agents.index(cfg.player)
        """the controlled player's column in [N]"""
        self.team = "blue" if self.index < config.n_blue else "red"
        blue, red = slice(0, config.n_blue), slice(config.n_blue, config.num_agents)
        self.own, self.other = (blue, red) if self.team == "blue" else (red, blue)
        self.bot = None
        self.opponent = self._opponent(config, device)
        self.policy, _ = load_policy(cfg.checkpoint, device=device, env_config=config)
        self._reach = config.obs_layout()["ball_in_reach"]
        self.generator = torch.Generator(device=device)
        self.reset()

    def _opponent(self, config: SoccerConfig, device: torch.device) -> Callable[[torch.Tensor], torch.Tensor]:
        """obs [1, N, D] -> the other team's actions [1, n_other]."""
        cfg, other = self.cfg, self.other
        if cfg.opponent in BOT_NAMES:
            self.bot = make_bot(cfg.opponent, config, strength=cfg.strength, seed=cfg.seed, device=device)
            return lambda obs: self.bot.act(obs)[:, other]
        if not Path(cfg.opponent).is_dir():
            raise ValueError(f"opponent={cfg.opponent!r} is neither a bot ({', '.join(BOT_NAMES)}) nor a checkpoint "
                             "folder")
        meta = read_config(cfg.opponent)
        if meta["policy"].get("arch") != "entity" and \
                [tuple(f) for f in meta["observation_features"]] != config.observation_features():
            raise ValueError(f"the opponent checkpoint {cfg.opponent!r} plays {_sizes(meta)} matches, but the match "
                             f"of the checkpoint {cfg.checkpoint!r} is {config.n_blue}v{config.n_red}: use checkpoints "
                             "of the same team size (or an --arch entity one, which plays any size)")
        policy, _ = load_policy(cfg.opponent, device=device, env_config=config)
        return lambda obs: policy.act(obs[:, other], deterministic=cfg.deterministic, generator=self.generator)[0]

    @property
    def title(self) -> str:
        return f"marl-grpo play \u2014 you are {self.player}"

    def caption(self, paused: bool = False) -> str:
        """The help line under the pitch: who you are, which way you attack, the keys."""
        who = f"{self.player} ({self.team}, attacking {'right' if self.team == 'blue' else 'left'})"
        if paused:
            return f"PAUSED: p resumes, r restarts, q quits  \u00b7  you are {who}"
        return f"You are {who}  \u00b7  {PLAY_KEYS_HELP}"

    def reset(self) -> None:
        """Kick off again from the seed (the bot's and the policy's random draws too)."""
        self.env.reset(seed=self.cfg.seed)
        self.generator.manual_seed(self.cfg.seed)
        if self.bot is not None:
            self.bot.reset(seed=self.cfg.seed)

    def step(self, keys: Collection[str]) -> tuple[int, tuple[int, int] | None]:
        """One step with the person's action from `keys` (pygame key names held down).

        Returns (the person's action, the final score (blue, red) if the match ended this step,
        else None). An ended match is followed by a new kickoff.
        """
        obs = self.env.engine.observe()  # fresh: a test (or a tool) may have set the state
        action = keys_to_action(keys, self.team, ball_in_reach=bool(obs[0, self.index, self._reach][0] > 0.5))
        own = self.policy.act(obs[:, self.own], deterministic=self.cfg.deterministic, generator=self.generator)[0]
        own[0, self.index - self.own.start] = action
        other = self.opponent(obs)
        actions = torch.cat([own, other] if self.team == "blue" else [other, own], 1)
        _, _, terminated, truncated, infos = self.env.step(actions)
        if bool(terminated[0] or truncated[0]):
            blue, red = infos["final_score"][0].tolist()
            return action, (int(blue), int(red))
        return action, None

    def frame(self, paused: bool = False) -> dict[str, Any]:
        """The renderer's frame, with the controlled player marked and the help line."""
        return {**self.env.engine.frame(0), "highlight": self.index, "caption": self.caption(paused)}

    def close(self) -> None:
        self.env.close()


@dataclass
class PlayResult:
    """What a `run_play` session did."""

    frames: int = 0
    """loop iterations (a paused one steps nothing)"""
    actions: list[int] = field(default_factory=list)
    """the person's action at each env step"""
    scores: list[tuple[int, int]] = field(default_factory=list)
    """final score (blue, red) of every match that ended"""
    frame: dict[str, Any] = field(default_factory=dict)
    """the last state of the match (`SoccerEngine.frame`: world positions, unmirrored)"""


def run_play(cfg: PlayConfig, keys: Iterable[Collection[str]] | None = None,
             max_steps: int | None = None) -> PlayResult:
    """Open a window and let a person play `cfg.player`; returns when they quit.

    keys: a script instead of the keyboard, for tests: one set of held key names per frame;
        a key that is in a frame but not in the one before counts as pressed (p, r, q then
        pause, restart, quit). The session ends when the script does.
    max_steps: stop after this many frames (env steps plus paused frames).
    """
    from marl_grpo.envs.render import SoccerRenderer

    match = HumanMatch(cfg)
    result = PlayResult()
    script = None if keys is None else iter(keys)
    held_before: set[str] = set()
    paused = False
    renderer = None
    try:
        renderer = SoccerRenderer(match.env.config, render_mode="human", fps=cfg.fps, title=match.title,
                                  command_keys=PLAY_COMMAND_KEYS)
        print(f"you are {match.player} ({match.team}); keys: {PLAY_KEYS_HELP}")
        renderer.render(match.frame())
        while max_steps is None or result.frames < max_steps:
            commands, held = renderer.poll_events(), renderer.poll_keys()
            if script is not None:
                try:
                    held = set(next(script))
                except StopIteration:
                    break
                commands += [PLAY_COMMAND_KEYS[k] for k in sorted(held - held_before) if k in PLAY_COMMAND_KEYS]
                held_before = held
            if "quit" in commands:
                break
            paused ^= commands.count("pause") % 2 == 1
            if "restart" in commands:
                match.reset()
            result.frames += 1
            if not paused:
                action, final = match.step(held)
                result.actions.append(action)
                if final is not None:
                    result.scores.append(final)
                    print(f"final score: blue {final[0]} - {final[1]} red; a new match starts")
            renderer.render(match.frame(paused))
    finally:
        if renderer is not None:
            renderer.close()
        match.close()
    result.frame = match.env.engine.frame(0)
    return result
