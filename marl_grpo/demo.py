"""A match between two scripted teams, recorded to a GIF (or MP4): the project's smoke demo."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from marl_grpo.agents import make_bot
from marl_grpo.envs import SoccerVecEnv
from marl_grpo.envs.record import save_video


@dataclass
class DemoConfig:
    """Settings of `marl-grpo demo`."""

    out: str = "runs/demo/match.gif"
    """where to write the recording (.gif, or .mp4 with imageio-ffmpeg)"""
    team_size: int = 2
    """players per team"""
    blue: str = "team"
    """bot playing blue: random, chaser or team"""
    red: str = "chaser"
    """bot playing red: random, chaser or team"""
    strength: float = 1.0
    """strength of both bots, in [0, 1]"""
    max_cycles: int = 300
    """match length in steps (20 steps = 1 s of match time)"""
    seed: int = 0
    """seed of the match and the bots"""


def run_demo(cfg: DemoConfig) -> tuple[Path, list[int]]:
    """Play one match, write the video, return (path, final score [blue, red])."""
    env = SoccerVecEnv(num_envs=1, device="cpu", render_mode="rgb_array",
                       team_size=cfg.team_size, max_cycles=cfg.max_cycles)
    n_blue = env.config.n_blue
    blue = make_bot(cfg.blue, env.config, strength=cfg.strength, seed=cfg.seed)
    red = make_bot(cfg.red, env.config, strength=cfg.strength, seed=cfg.seed + 1)
    obs = env.reset(seed=cfg.seed)
    frames = [env.render()]
    score = [0, 0]
    for _ in tqdm(range(cfg.max_cycles), desc=f"{cfg.blue} vs {cfg.red}", unit="step"):
        actions = torch.cat([blue.act(obs)[:, :n_blue], red.act(obs)[:, n_blue:]], 1)
        obs, _, terminated, truncated, infos = env.step(actions)
        if bool(terminated[0] or truncated[0]):
            score = infos["final_score"][0].tolist()
            break
        frames.append(env.render())
    env.close()
    path = save_video(frames, cfg.out, fps=env.metadata["render_fps"])
    print(f"final score: blue ({cfg.blue}) {score[0]} - {score[1]} red ({cfg.red}); video written to {path}")
    return path, score

