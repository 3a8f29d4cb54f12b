"""Which GRPO settings learn best? Train each combination for the same env-step budget and compare.

    python scripts/group_modes.py --total-env-steps 6000000                       # the group modes
    marl-grpo study --modes branch --supervisions process --baselines mean loo \\
        --aggregations sum_then_normalize normalize_then_sum --seeds 3            # baselines, aggregations

Each run is a normal training run (`runs/<prefix>-<mode>-<supervision>[-<baseline>-<aggregation>]-s<seed>/`),
so the curves can be overlaid in TensorBoard; the table printed at the end is the final
evaluation of each combination against the team bot on matches no training evaluation has seen,
averaged over the seeds (with each seed's win rate).
"""

from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass, field

import numpy as np
import tyro

from marl_grpo.agents.checkpoint import load_policy
from marl_grpo.rl import TrainConfig, play_matches, train
from marl_grpo.run.files import CHECKPOINT_DIR, STUDY_EVAL_SEED
from marl_grpo.tools.compare import mean_ci


@dataclass
class GroupModeStudy:
    """Settings of the comparison; every `marl-grpo train` option sets all its runs."""

    modes: tuple[str, ...] = ("team", "branch", "episode", "branch+team")
    """group modes to compare"""
    supervisions: tuple[str, ...] = ("outcome", "process")
    """supervisions to compare"""
    baselines: tuple[str, ...] = ("mean",)
    """group baselines to compare (mean, loo)"""
    aggregations: tuple[str, ...] = ("sum_then_normalize",)
    """reward aggregations to compare (sum_then_normalize, normalize_then_sum)"""
    seeds: int = 1
    """seeds per combination (1, 2, ...)"""
    final_matches: int = 200
    """matches of the final evaluation against the team bot"""
    prefix: str = "modes"
    """run-name prefix"""
    train: tyro.conf.OmitArgPrefixes[TrainConfig] = field(default_factory=lambda: TrainConfig(
        total_env_steps=6_000_000, eval_every=0, save_every=0, progress=False))
    """the settings every run shares (the compared fields, seed and name are set per run)"""

    def combinations(self) -> list[dict[str, str]]:
        return [dict(zip(("group_mode", "supervision", "advantage_baseline", "reward_aggregation"), combo))
                for combo in itertools.product(self.modes, self.supervisions, self.baselines, self.aggregations)]

    def validate(self) -> None:
        for combo in self.combinations():
            # a clear error for a bad value, before any run; the shared settings go to every
            # combination, so one that a combination does not read is not refused (given=frozenset())
            dataclasses.replace(self.train, given=frozenset(), **combo)
        if isinstance(self.seeds, bool) or not isinstance(self.seeds, int) or self.seeds < 1:
            raise ValueError(f"seeds={self.seeds!r} is invalid: expected an int >= 1")
        self.train.validate()


def _name(study: GroupModeStudy, combo: dict[str, str], seed: int) -> str:
    parts = [combo["group_mode"].replace("+", "-"), combo["supervision"]]
    if len(study.baselines) > 1 or len(study.aggregations) > 1:
        parts += [combo["advantage_baseline"], combo["reward_aggregation"]]
    return "-".join([study.prefix, *parts]) + (f"-s{seed}" if study.seeds > 1 else "")


def run_study(study: GroupModeStudy) -> list[dict]:
    rows = []
    for combo in study.combinations():
        finals = []
        for seed in range(study.train.seed, study.train.seed + study.seeds):
            cfg = dataclasses.replace(study.train, name=_name(study, combo, seed), seed=seed, given=frozenset(),
                                      **combo)
            result = train(cfg)
            policy, _ = load_policy(f"{result['run_dir']}/{CHECKPOINT_DIR}", device=cfg.device)
            final = play_matches(policy, cfg.env_kwargs(), "team", 1.0, study.final_matches, seed=STUDY_EVAL_SEED)
            finals.append({**final, "env_steps": result["global_step"], "minutes": result["wall_time"] / 60})
            print(f"{cfg.name}: win {final['eval/win_rate']:.1%}  draw {final['eval/draw_rate']:.1%}"
                  f"  goal diff {final['eval/goal_diff']:+.2f}  ({result['global_step']} env steps, "
                  f"{result['wall_time'] / 60:.1f} min)", flush=True)
        wins = np.array([f["eval/win_rate"] for f in finals])
        mean, ci = mean_ci(wins)
        rows.append({**combo, "seeds": len(finals), "win_rate": float(mean), "win_rate_ci": float(ci),
                     "win_rates": wins.tolist(),
                     **{k: float(np.mean([f[k] for f in finals])) for k in
                        ("eval/draw_rate", "eval/goal_diff", "env_steps", "minutes")}})
    print("\n| group mode | supervision | baseline | aggregation | seeds | win rate (mean ± 95% CI) | per seed "
          "| draw rate | goal diff | env steps | minutes |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        per_seed = ", ".join(f"{w:.1%}" for w in r["win_rates"])
        print(f"| {r['group_mode']} | {r['supervision']} | {r['advantage_baseline']} | {r['reward_aggregation']} | "
              f"{r['seeds']} | {r['win_rate']:.1%} ± {r['win_rate_ci']:.1%} | {per_seed} | {r['eval/draw_rate']:.1%} | "
              f"{r['eval/goal_diff']:+.2f} | {r['env_steps']:,.0f} | {r['minutes']:.1f} |")
    return rows


__all__ = ["GroupModeStudy", "run_study"]
