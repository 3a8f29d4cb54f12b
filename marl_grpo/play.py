"""`marl-grpo eval` and `marl-grpo watch`: a trained policy against a bot (or another checkpoint)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import tyro

from marl_grpo.agents import BOT_NAMES, SoccerPolicy, make_bot
from marl_grpo.envs import SoccerVecEnv
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
