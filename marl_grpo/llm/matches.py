"""Closed-loop evaluation of an LLM line-up: whole matches in which the LLM plays some blue seats.

    result = evaluate_lineup(player, seats=[0], env_kwargs={"team_size": 2, "max_cycles": 300},
                             teammates="team", opponent="team", matches=200)

Blue is the LLM in `seats` (a `LLMPlayer`, one batched generation per decision step over every
match and seat) and the `teammates` bot in the other blue seats; red is the `opponent` bot. With
no player, the teammates bot plays the LLM's seats too: the baseline line-up, on the same seeds.
Match i uses env seed `seed + i`; each match counts once, at its first end.

The rates come with 95% Wilson score intervals, and the mean goal difference with a 95%
percentile bootstrap interval over matches (`marl_grpo.run.intervals`, which the soccer scoring
API `marl_grpo.evaluate` shares).
"""

from __future__ import annotations

import time
from typing import Any

import torch

from marl_grpo.agents import make_bot
from marl_grpo.agents.llm_player import LLMPlayer
from marl_grpo.envs import SoccerVecEnv
from marl_grpo.envs.team import play_once
from marl_grpo.run.files import EVAL_SEED
from marl_grpo.run.intervals import bootstrap_mean_interval, wilson_interval


@torch.no_grad()
def evaluate_lineup(player: LLMPlayer | None, seats: list[int], env_kwargs: dict[str, Any], teammates: str = "team",
                    opponent: str = "team", strength: float = 1.0, matches: int = 200, seed: int = EVAL_SEED,
                    device: Any = "cpu") -> dict[str, float]:
    """Play `matches` matches of the line-up (module docstring) and return the figures.

    Keys: ``eval/win_rate``, ``eval/draw_rate``, ``eval/loss_rate`` each with ``_low`` / ``_high``
    (95% Wilson), ``eval/wins`` / ``draws`` / ``losses`` (counts), ``eval/goal_diff`` (mean per
    match) with ``_low`` / ``_high`` (95% bootstrap), ``eval/goals_for``, ``eval/goals_against``,
    ``eval/matches``, ``eval/seconds`` (wall time of the loop); with a player also
    ``llm/decisions`` (answers), ``llm/generate_calls``, ``llm/invalid_frac`` and
    ``llm/decisions_per_s`` (answers per second of the player's own time: rendering,
    generation, parsing).
    """
    env = SoccerVecEnv(num_envs=matches, device=device, **env_kwargs)
    config, n_blue = env.config, env.config.n_blue
    if not seats or any(not 0 <= s < n_blue for s in seats):
        raise ValueError(f"seats {seats} are not blue player columns of a {config.n_blue}v{config.n_red} match")
    mates = make_bot(teammates, config, strength=1.0, seed=seed + 1, device=device)
    others = make_bot(opponent, config, strength=strength, seed=seed, device=device)
    seat_index = torch.tensor(seats, device=env.device)
    before = (player.decisions, player.invalid, player.generate_calls, player.seconds) if player else None
    if player is not None:
        player.reset()

    def act(obs: torch.Tensor) -> torch.Tensor:
        actions = torch.cat([mates.act(obs)[:, :n_blue], others.act(obs)[:, n_blue:]], 1)
        if player is not None:
            actions[:, seat_index] = player.act(obs[:, seat_index])
        return actions

    start = time.perf_counter()
    score = play_once(env, act, seed, "final_score").long()
    seconds = time.perf_counter() - start
    env.close()
    score = score.cpu().numpy()
    diff = score[:, 0] - score[:, 1]
    out: dict[str, float] = {"eval/matches": float(matches), "eval/seconds": seconds}
    for key, counted, hit in (("win", "wins", diff > 0), ("draw", "draws", diff == 0), ("loss", "losses", diff < 0)):
        count = int(hit.sum())
        low, high = wilson_interval(count, matches)
        out.update({f"eval/{counted}": float(count),
                    f"eval/{key}_rate": count / matches, f"eval/{key}_rate_low": low, f"eval/{key}_rate_high": high})
    low, high = bootstrap_mean_interval(diff, seed)
    out.update({"eval/goal_diff": float(diff.mean()), "eval/goal_diff_low": low, "eval/goal_diff_high": high,
                "eval/goals_for": float(score[:, 0].mean()), "eval/goals_against": float(score[:, 1].mean())})
    if player is not None:
        decisions, invalid, calls, spent = (now - then for now, then in zip(
            (player.decisions, player.invalid, player.generate_calls, player.seconds), before))
        out.update({"llm/decisions": float(decisions), "llm/generate_calls": float(calls),
                    "llm/invalid_frac": invalid / decisions if decisions else 0.0,
                    "llm/decisions_per_s": decisions / spent if spent > 0 else 0.0})
    return out


def format_result(result: dict[str, float]) -> str:
    """The figures of `evaluate_lineup` as a few lines of text."""
    def rate(key: str) -> str:
        return (f"{key} {result[f'eval/{key}_rate']:.1%} [{result[f'eval/{key}_rate_low']:.1%}, "
                f"{result[f'eval/{key}_rate_high']:.1%}]")

    lines = [f"  {rate('win')}  {rate('draw')}  {rate('loss')}",
             f"  goal difference {result['eval/goal_diff']:+.2f} per match [{result['eval/goal_diff_low']:+.2f}, "
             f"{result['eval/goal_diff_high']:+.2f}]  (95% intervals: Wilson for rates, bootstrap for goals)"]
    if "llm/decisions" in result:
        lines.append(f"  LLM: {result['llm/decisions']:.0f} decisions in {result['llm/generate_calls']:.0f} batched "
                     f"calls, {result['llm/decisions_per_s']:.1f} decisions/s, invalid answers "
                     f"{result['llm/invalid_frac']:.1%} (played stay); {result['eval/seconds']:.1f} s in all")
    return "\n".join(lines)


__all__ = ["bootstrap_mean_interval", "evaluate_lineup", "format_result", "wilson_interval"]
