"""`marl-grpo eval`, `watch` and `play`: a trained policy against a bot (or another checkpoint),
and a person playing one player beside it.

A checkpoint is a soccer policy (runs/<name>/checkpoint of `marl-grpo train`) or an LLM
(`marl-grpo llm`'s, recognised by its llm_config.json), wherever a checkpoint goes:

    marl-grpo eval runs/llm-tiny/checkpoint                        # the LLM as blue_0, team bots beside it
    marl-grpo eval runs/llm-tiny/checkpoint --baseline             # the team bot in its seat instead
    marl-grpo eval runs/llm-tiny/checkpoint --llm-players all-blue --decide-every 4
    marl-grpo watch runs/llm-tiny/checkpoint --opponent runs/a/checkpoint
    marl-grpo play runs/a/checkpoint --opponent runs/llm-tiny/checkpoint

An LLM answers every `--decide-every` steps (default: its run's --horizon) and holds its action in
between, with one batched generation over every match and LLM player (`marl_grpo.llm.player`);
it asks and parses as it was trained (chat template, system prompt, answer format).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Collection, Iterable

import torch
import tyro

from marl_grpo.agents import BOT_NAMES, SoccerPolicy, make_bot
from marl_grpo.agents.checkpoint import load_policy, match_kwargs, read_config, soccer_env
from marl_grpo.envs import KICK_ACTION, SoccerConfig, SoccerVecEnv
from marl_grpo.envs.backend import resolve_device
from marl_grpo.envs.record import save_video
from marl_grpo.envs.team import make_team_env
from marl_grpo.rl.evaluate import mean_return, play_matches
from marl_grpo.run.files import EVAL_SEED


@dataclass
class EvalConfig:
    """Evaluate a checkpoint against a scripted bot over seeded matches.

    An LLM checkpoint plays `--llm-players` (blue_0 by default) beside the `--teammates` bot, and the
    report adds 95% intervals (Wilson for the rates, bootstrap for the goal difference), decisions
    per second and the share of malformed answers; `--baseline` puts the teammates bot in its seats."""

    checkpoint: tyro.conf.Positional[str]
    """checkpoint folder (runs/<name>/checkpoint) of a soccer policy or an LLM"""
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
    """play the most likely action instead of sampling (an LLM: greedy answers)"""
    device: str = "auto"
    """torch device"""
    llm_players: str | None = None
    """LLM checkpoint only: the blue players it plays, blue_0, blue_0,blue_1 or all-blue (default blue_0)"""
    teammates: str | None = None
    """LLM checkpoint only: the bot in the other blue seats, random, chaser or team (default team)"""
    decide_every: int | None = None
    """LLM checkpoint only: steps each answer is held (default: the run's --horizon)"""
    baseline: bool = False
    """LLM checkpoint only: play the same line-up with the --teammates bot in the LLM's seats (no model)"""


LLM_ONLY = ("llm_players", "teammates", "decide_every", "baseline")
"""options of eval and watch that only an LLM checkpoint takes"""


def _llm_only_given(cfg: Any, checkpoint: str, names: tuple[str, ...] = LLM_ONLY) -> None:
    """Refuse LLM-only options (of `names`) given with a soccer checkpoint (they would do nothing)."""
    given = [f"--{name.replace('_', '-')}" for name in names
             if hasattr(cfg, name) and getattr(cfg, name) not in (None, False)]
    if given:
        raise ValueError(f"{' '.join(given)} {'is' if len(given) == 1 else 'are'} for an LLM checkpoint (a folder "
                         f"with llm_config.json), but {checkpoint!r} is a soccer checkpoint: drop "
                         f"{'it' if len(given) == 1 else 'them'}")


def _env_kwargs(meta: dict[str, Any], team_size: int | None) -> dict[str, Any]:
    return match_kwargs(meta, team_size)


def _load(checkpoint: str, team_size: int | None, device: Any) -> tuple[SoccerPolicy, dict[str, Any], dict[str, Any]]:
    meta = read_config(checkpoint)
    kwargs = _env_kwargs(meta, team_size)
    config = SoccerVecEnv(num_envs=1, device="cpu", **kwargs).config
    policy, meta = load_policy(checkpoint, device=device, env_config=config)
    return policy, meta, kwargs


def run_eval(cfg: EvalConfig) -> dict[str, float]:
    if cfg.opponent not in BOT_NAMES:
        raise ValueError(f"opponent={cfg.opponent!r} is invalid: expected one of {BOT_NAMES}")
    from marl_grpo.llm.player import is_llm_checkpoint

    if is_llm_checkpoint(cfg.checkpoint):
        return _run_llm_eval(cfg)
    _llm_only_given(cfg, cfg.checkpoint)
    if read_config(cfg.checkpoint)["env"].get("name", "soccer") != "soccer":
        return _run_env_eval(cfg)
    policy, _, kwargs = _load(cfg.checkpoint, cfg.team_size, resolve_device(cfg.device))
    result = play_matches(policy, kwargs, cfg.opponent, cfg.strength, cfg.matches, cfg.seed, cfg.deterministic)
    print(f"{cfg.checkpoint} vs {cfg.opponent} (strength {cfg.strength}), {cfg.matches} matches:")
    print(f"  win {result['eval/win_rate']:.1%}  draw {result['eval/draw_rate']:.1%}  loss {result['eval/loss_rate']:.1%}"
          f"  goal difference {result['eval/goal_diff']:+.2f} per match")
    return result


def _run_env_eval(cfg: EvalConfig) -> dict[str, float]:
    """A checkpoint of another env (`train --env vmas:...`): `--matches` episodes of its env from
    seeds `seed + i`, the mean episode return (the run's `eval/return` with the same seeds and count)."""
    soccer_only = [name for name, default in (("opponent", "team"), ("strength", 1.0), ("team_size", None))
                   if getattr(cfg, name) != default]
    if soccer_only:
        raise ValueError(f"--{' --'.join(n.replace('_', '-') for n in soccer_only)} {'is' if len(soccer_only) == 1 else 'are'}"
                         f" for soccer checkpoints, but {cfg.checkpoint!r} was trained on another env: drop it")
    policy, meta = load_policy(cfg.checkpoint, device=resolve_device(cfg.device))
    env_meta = meta["env"]
    env = make_team_env(env_meta["name"], cfg.matches, policy.device, cfg.seed, max_steps=env_meta["max_steps"],
                        **env_meta["kwargs"])
    result = mean_return(policy, env, seed=cfg.seed, deterministic=cfg.deterministic)
    print(f"{cfg.checkpoint} on {env_meta['name']}, {cfg.matches} episodes: mean return {result['eval/return']:.3f}"
          f" ± {result['eval/return_sem']:.3f} (standard error)")
    return result


def _llm_env_kwargs(checkpoint: str, team_size: int | None) -> dict[str, Any]:
    from marl_grpo.llm.player import llm_env_kwargs, read_llm_config

    kwargs = llm_env_kwargs(read_llm_config(checkpoint))
    return kwargs if team_size is None else {**kwargs, "team_size": team_size}


def _run_llm_eval(cfg: EvalConfig) -> dict[str, float]:
    """An LLM checkpoint in some blue seats, a bot in the others, against a bot: closed loop."""
    from marl_grpo.llm.matches import evaluate_lineup, format_result
    from marl_grpo.llm.player import load_llm_player, parse_players

    teammates = cfg.teammates or "team"
    if teammates not in BOT_NAMES:
        raise ValueError(f"teammates={teammates!r} is invalid: expected one of {BOT_NAMES}")
    device = resolve_device(cfg.device)
    kwargs = _llm_env_kwargs(cfg.checkpoint, cfg.team_size)
    config = SoccerConfig.from_kwargs(**kwargs)
    spec = cfg.llm_players or "blue_0"
    seats = parse_players(spec, config)
    if cfg.baseline:
        if cfg.decide_every is not None:
            raise ValueError("--decide-every sets how often the LLM answers, but --baseline plays no LLM: drop one")
        player, who = None, f"baseline: {teammates} bot in {spec}"
    else:
        player = load_llm_player(cfg.checkpoint, device, config, cfg.decide_every, greedy=cfg.deterministic,
                                 seed=cfg.seed)
        who = (f"{cfg.checkpoint} in {spec} ({'greedy' if cfg.deterministic else 'sampled'}, deciding every "
               f"{player.decide_every} steps)")
    result = evaluate_lineup(player, seats, kwargs, teammates, cfg.opponent, cfg.strength, cfg.matches, cfg.seed,
                             device)
    print(f"{who}, {teammates} bot in the other blue seats, vs {cfg.opponent} (strength {cfg.strength}), "
          f"{config.n_blue}v{config.n_red}, {cfg.matches} matches of {config.max_cycles} steps:")
    print(format_result(result))
    return result


@dataclass
class WatchConfig:
    """Watch a checkpoint (blue) play a bot or another checkpoint (red) in a pygame window; an LLM
    checkpoint as blue plays `--llm-players` (all-blue by default) beside the `--teammates` bot, as red
    every red player."""

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
    """play the most likely action instead of sampling (an LLM: greedy answers)"""
    device: str = "cpu"
    """torch device"""
    llm_players: str | None = None
    """LLM checkpoint (blue) only: the blue players it plays, blue_0, blue_0,blue_1 or all-blue (default all-blue)"""
    teammates: str | None = None
    """LLM checkpoint (blue) only: the bot in the other blue seats (default team)"""
    decide_every: int | None = None
    """LLM checkpoints only: steps each answer is held (default: the run's --horizon)"""


def _llm_blue(cfg: WatchConfig, config: SoccerConfig, device: torch.device, players: list[Any]) \
        -> Callable[[torch.Tensor], torch.Tensor]:
    """obs [1, N, D] -> blue actions [1, n_blue]: the LLM checkpoint in its seats, a bot in the others."""
    from marl_grpo.llm.player import load_llm_player, parse_players

    teammates = cfg.teammates or "team"
    if teammates not in BOT_NAMES:
        raise ValueError(f"teammates={teammates!r} is invalid: expected one of {BOT_NAMES}")
    seats = torch.tensor(parse_players(cfg.llm_players or "all-blue", config), device=device)
    bot = make_bot(teammates, config, seed=cfg.seed + 1, device=device)
    player = load_llm_player(cfg.checkpoint, device, config, cfg.decide_every, greedy=cfg.deterministic,
                             seed=cfg.seed)
    players += [player, bot]

    def blue(obs: torch.Tensor) -> torch.Tensor:
        actions = bot.act(obs)[:, :config.n_blue]
        actions[:, seats] = player.act(obs[:, seats])
        return actions
    return blue


def run_watch(cfg: WatchConfig) -> Path | None:
    """Keys in the window: space/p pause, r restart, q/Esc quit."""
    from marl_grpo.llm.player import is_llm_checkpoint, load_llm_player

    device = resolve_device(cfg.device)
    llm_blue = is_llm_checkpoint(cfg.checkpoint)
    if llm_blue:
        kwargs = _llm_env_kwargs(cfg.checkpoint, cfg.team_size)
    else:
        _llm_only_given(cfg, cfg.checkpoint, ("llm_players", "teammates"))
        if cfg.decide_every is not None and not is_llm_checkpoint(cfg.opponent):
            raise ValueError(f"--decide-every is for LLM checkpoints, but neither {cfg.checkpoint!r} nor "
                             f"{cfg.opponent!r} is one: drop it")
        policy, _, kwargs = _load(cfg.checkpoint, cfg.team_size, device)
    env = SoccerVecEnv(num_envs=1, device=device, render_mode="rgb_array" if cfg.record else "human", **kwargs)
    n_blue = env.config.n_blue
    restart: list[Any] = []  # LLM players and bots to reset when a match starts again
    if llm_blue:
        blue_team = _llm_blue(cfg, env.config, device, restart)
    else:
        def blue_team(obs: torch.Tensor) -> torch.Tensor:
            return policy.act(obs[:, :n_blue], deterministic=cfg.deterministic)[0]
    if cfg.opponent in BOT_NAMES:
        bot = make_bot(cfg.opponent, env.config, strength=cfg.strength, seed=cfg.seed, device=device)

        def red(obs: torch.Tensor) -> torch.Tensor:
            return bot.act(obs)[:, n_blue:]
    elif is_llm_checkpoint(cfg.opponent):
        red_player = load_llm_player(cfg.opponent, device, env.config, cfg.decide_every, greedy=cfg.deterministic,
                                     seed=cfg.seed + 2)
        restart.append(red_player)

        def red(obs: torch.Tensor) -> torch.Tensor:
            return red_player.act(obs[:, n_blue:])
    elif Path(cfg.opponent).is_dir():
        other, _ = load_policy(cfg.opponent, device=device, env_config=env.config)

        def red(obs: torch.Tensor) -> torch.Tensor:
            return other.act(obs[:, n_blue:], deterministic=cfg.deterministic)[0]
    else:
        raise ValueError(f"opponent={cfg.opponent!r} is neither a bot ({', '.join(BOT_NAMES)}) nor a checkpoint folder")

    def new_match() -> None:
        for player in restart:
            player.reset()

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
                    new_match()
                if paused:
                    env.render()
                    time.sleep(1 / env.metadata["render_fps"])
                    continue
            obs, _, terminated, truncated, infos = env.step(torch.cat([blue_team(obs), red(obs)], 1))
            if bool(terminated[0] or truncated[0]):
                score = infos["final_score"][0].tolist()
                print(f"final score: blue {score[0]} - {score[1]} red")
                new_match()
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
    the checkpoint, the other team by a bot or another checkpoint (either may be an LLM
    checkpoint, answering every `--decide-every` steps). A match that ends prints its score and
    the next one starts.
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
    decide_every: int | None = None
    """LLM checkpoints only: steps each answer is held (default: the run's --horizon)"""


def _sizes(meta: dict[str, Any]) -> str:
    env = soccer_env(meta)
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
        from marl_grpo.llm.player import is_llm_checkpoint

        self.device = device = resolve_device(cfg.device)
        self.llm_players: list[Any] = []  # restart with every kickoff
        llm_team = is_llm_checkpoint(cfg.checkpoint)
        if llm_team:
            kwargs = _llm_env_kwargs(cfg.checkpoint, cfg.team_size)
        else:
            if cfg.decide_every is not None and not is_llm_checkpoint(cfg.opponent):
                raise ValueError(f"--decide-every is for LLM checkpoints, but neither {cfg.checkpoint!r} nor "
                                 f"{cfg.opponent!r} is one: drop it")
            kwargs = _env_kwargs(read_config(cfg.checkpoint), cfg.team_size)
        self.env = SoccerVecEnv(num_envs=1, device=device, **kwargs)
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
        self.policy = self.mates = None
        if llm_team:
            self.mates = self._llm(cfg.checkpoint, [i for i in range(self.own.start, self.own.stop) if i != self.index],
                                   config, cfg.seed)
        else:
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
        from marl_grpo.llm.player import is_llm_checkpoint

        if is_llm_checkpoint(cfg.opponent):
            return self._llm(cfg.opponent, list(range(other.start, other.stop)), config, cfg.seed + 2)
        meta = read_config(cfg.opponent)
        if meta["policy"].get("arch") != "entity" and \
                [tuple(f) for f in meta["observation_features"]] != config.observation_features():
            raise ValueError(f"the opponent checkpoint {cfg.opponent!r} plays {_sizes(meta)} matches, but the match "
                             f"of the checkpoint {cfg.checkpoint!r} is {config.n_blue}v{config.n_red}: use checkpoints "
                             "of the same team size (or an --arch entity one, which plays any size)")
        policy, _ = load_policy(cfg.opponent, device=device, env_config=config)
        return lambda obs: policy.act(obs[:, other], deterministic=cfg.deterministic, generator=self.generator)[0]

    def _llm(self, checkpoint: str, seats: list[int], config: SoccerConfig, seed: int) \
            -> Callable[[torch.Tensor], torch.Tensor]:
        """obs [1, N, D] -> actions [1, K] of the LLM checkpoint playing the columns `seats` (K of them)."""
        from marl_grpo.llm.player import load_llm_player

        if not seats:  # the person is the whole team
            return lambda obs: torch.zeros(obs.shape[0], 0, dtype=torch.long, device=obs.device)
        player = load_llm_player(checkpoint, self.device, config, self.cfg.decide_every,
                                 greedy=self.cfg.deterministic, seed=seed)
        self.llm_players.append(player)
        return lambda obs: player.act(obs[:, seats])

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
        for player in self.llm_players:
            player.reset()

    def step(self, keys: Collection[str]) -> tuple[int, tuple[int, int] | None]:
        """One step with the person's action from `keys` (pygame key names held down).

        Returns (the person's action, the final score (blue, red) if the match ended this step,
        else None). An ended match is followed by a new kickoff.
        """
        obs = self.env.engine.observe()  # fresh: a test (or a tool) may have set the state
        action = keys_to_action(keys, self.team, ball_in_reach=bool(obs[0, self.index, self._reach][0] > 0.5))
        if self.mates is not None:  # an LLM plays every own column but the person's
            mates = self.mates(obs)
            own = torch.cat([mates[:, :self.index - self.own.start], torch.tensor([[action]], device=mates.device),
                             mates[:, self.index - self.own.start:]], 1)
        else:
            own = self.policy.act(obs[:, self.own], deterministic=self.cfg.deterministic, generator=self.generator)[0]
            own[0, self.index - self.own.start] = action
        other = self.opponent(obs)
        actions = torch.cat([own, other] if self.team == "blue" else [other, own], 1)
        _, _, terminated, truncated, infos = self.env.step(actions)
        if bool(terminated[0] or truncated[0]):
            for player in self.llm_players:
                player.reset()
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
