"""Evaluation: the policy (blue) against a scripted bot (red) over a fixed set of seeded matches."""

from __future__ import annotations

from typing import Any, Callable

import torch

from marl_grpo.agents import SoccerPolicy, make_bot
from marl_grpo.envs import SoccerVecEnv
from marl_grpo.envs.team import TeamVecEnv, play_once
from marl_grpo.run.files import EVAL_SEED


@torch.no_grad()
def final_scores(blue: Callable[[torch.Tensor], torch.Tensor], env_kwargs: dict[str, Any], opponent: str = "team",
                 strength: float = 1.0, matches: int = 200, seed: int = EVAL_SEED, device: Any = "cpu",
                 compile_bot: bool = False) -> torch.Tensor:
    """The match loop of every evaluation: `blue` against the `opponent` bot (red) over `matches`
    seeded matches stepped as one batch; returns each match's final score, int64 `[matches, 2]`
    (blue, red).

    blue: the blue team's observations `[B, n_blue, D]` -> its actions `[B, n_blue]` (a tensor on
        `device`; checked by the env).
    Match i uses env seed `seed + i` and the bot is seeded with `seed`. Each match counts once, at
    its first end (with `goals_to_win` a match may end early and restart; its restart is not counted).
    """
    env = SoccerVecEnv(num_envs=matches, device=device, **env_kwargs)
    bot = make_bot(opponent, env.config, strength=strength, seed=seed, device=device, compile=compile_bot)
    n_blue = env.config.n_blue
    score = play_once(env, lambda obs: torch.cat([blue(obs[:, :n_blue]), bot.act(obs[:, n_blue:])], 1), seed,
                      "final_score")
    env.close()
    return score.long()


def policy_player(policy: SoccerPolicy, seed: int, deterministic: bool = False) \
        -> Callable[[torch.Tensor], torch.Tensor]:
    """`policy` as a `blue` of `final_scores`: it samples (or, deterministic, takes the argmax)
    with a generator of its own seeded with `seed`, so the same policy gets the same figures."""
    generator = torch.Generator(device=policy.device).manual_seed(seed)
    return lambda obs: policy.act(obs, deterministic=deterministic, generator=generator)[0]


def play_matches(policy: SoccerPolicy, env_kwargs: dict[str, Any], opponent: str = "team", strength: float = 1.0,
                 matches: int = 200, seed: int = EVAL_SEED, deterministic: bool = False,
                 compile_bot: bool = False) -> dict[str, float]:
    """Play `matches` full matches; returns win/draw/loss rates and the mean goal difference.

    Match i uses env seed `seed + i` and the bot and the policy's sampling are seeded too, so the
    same policy gets the same figures. `compile_bot`: the bot runs through torch.compile
    (`envs.bots.Bot`; same actions). `marl_grpo.evaluate` plays the same matches and adds
    counts and intervals.
    """
    score = final_scores(policy_player(policy, seed, deterministic), env_kwargs, opponent, strength, matches, seed,
                         policy.device, compile_bot).float()
    diff = score[:, 0] - score[:, 1]
    return {
        "eval/win_rate": float((diff > 0).float().mean()),
        "eval/draw_rate": float((diff == 0).float().mean()),
        "eval/loss_rate": float((diff < 0).float().mean()),
        "eval/goal_diff": float(diff.mean()),
        "eval/goals_for": float(score[:, 0].mean()),
        "eval/goals_against": float(score[:, 1].mean()),
    }


@torch.no_grad()
def mean_return(policy: SoccerPolicy, env: TeamVecEnv, seed: int = EVAL_SEED,
                deterministic: bool = False) -> dict[str, float]:
    """The evaluation of a run on an env other than soccer (`--env vmas:...`): each of `env`'s B
    copies plays one episode from a held-out seed (copy b: `seed + b`; training uses the run's
    seed), the policy sampling with a generator of its own seeded with `seed` (or, deterministic,
    taking its most likely action); returns the mean
    over episodes of the agents' mean return, and its standard error."""
    returns = play_once(env, policy_player(policy, seed, deterministic), seed, "episode_return").mean(-1)
    sem = returns.std() / env.num_envs ** 0.5 if env.num_envs > 1 else torch.tensor(0.0)
    return {"eval/return": float(returns.mean()), "eval/return_sem": float(sem)}
