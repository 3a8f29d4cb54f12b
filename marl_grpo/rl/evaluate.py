"""Evaluation: the policy (blue) against a scripted bot (red) over a fixed set of seeded matches."""

from __future__ import annotations

from typing import Any

import torch

from marl_grpo.agents import SoccerPolicy, make_bot
from marl_grpo.envs import SoccerVecEnv
from marl_grpo.run.files import EVAL_SEED


@torch.no_grad()
def play_matches(policy: SoccerPolicy, env_kwargs: dict[str, Any], opponent: str = "team", strength: float = 1.0,
                 matches: int = 200, seed: int = EVAL_SEED, deterministic: bool = False,
                 compile_bot: bool = False) -> dict[str, float]:
    """Play `matches` full matches; returns win/draw/loss rates and the mean goal difference.

    Match i uses env seed `seed + i` and the bot and the policy's sampling are seeded too, so the
    same policy gets the same figures. `compile_bot`: the bot runs through torch.compile
    (`agents.bots.Bot`; same actions).
    """
    env = SoccerVecEnv(num_envs=matches, device=policy.device, **env_kwargs)
    bot = make_bot(opponent, env.config, strength=strength, seed=seed, device=policy.device, compile=compile_bot)
    generator = torch.Generator(device=policy.device).manual_seed(seed)
    n_blue = env.config.n_blue
    obs = env.reset(seed=seed)
    for _ in range(env.config.max_cycles):
        actions, _ = policy.act(obs[:, :n_blue], deterministic=deterministic, generator=generator)
        actions = torch.cat([actions, bot.act(obs[:, n_blue:])], 1)
        obs, _, terminated, truncated, infos = env.step(actions)
        if bool((terminated | truncated).all()):
            break
    score = infos["final_score"].float()
    diff = score[:, 0] - score[:, 1]
    return {
        "eval/win_rate": float((diff > 0).float().mean()),
        "eval/draw_rate": float((diff == 0).float().mean()),
        "eval/loss_rate": float((diff < 0).float().mean()),
        "eval/goal_diff": float(diff.mean()),
        "eval/goals_for": float(score[:, 0].mean()),
        "eval/goals_against": float(score[:, 1].mean()),
    }
