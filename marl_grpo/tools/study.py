"""Which GRPO settings learn best? Train each combination for the same env-step budget and compare.

    python scripts/group_modes.py --total-env-steps 6000000                       # the group modes
    marl-grpo study --modes branch --supervisions process --baselines mean loo \\
        --aggregations sum_then_normalize normalize_then_sum --seeds 3            # baselines, aggregations

Each run is a normal training run (`runs/<prefix>-<mode>-<supervision>[-<baseline>-<aggregation>]-s<seed>/`),
so the curves can be overlaid in TensorBoard; the table printed at the end is the final
evaluation of each combination against the team bot on matches no training evaluation has seen,
averaged over the seeds (with each seed's win rate). A second table gives, per combination, the
mean and interquartile mean (IQM) of the seeds' final win rates with 95% stratified-bootstrap
intervals, and a third the probability of improvement P(row > column) between combinations, both
from `marl_grpo.tools.stats` (Agarwal et al., "Deep Reinforcement Learning at the Edge of the
Statistical Precipice", NeurIPS 2021).
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
from marl_grpo.tools import stats
from marl_grpo.tools.compare import BOOTSTRAP_REPS, mean_ci


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
            final = play_matches(policy, cfg.soccer_kwargs(), "team", 1.0, study.final_matches, seed=STUDY_EVAL_SEED)
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
    print("\n" + aggregate_table(rows))
    return rows


def _label(row: dict) -> str:
    return "/".join(row[k] for k in ("group_mode", "supervision", "advantage_baseline", "reward_aggregation"))


def aggregate_table(rows: list[dict], reps: int = BOOTSTRAP_REPS) -> str:
    """Add to each row the mean and IQM of its seeds' final win rates with 95% stratified-bootstrap
    intervals (`win_rate_mean`, `win_rate_iqm`: {point, low, high}) and `improvement`: P(this
    combination's run > the other's run) for each other combination; return both as markdown."""
    labels = [_label(r) for r in rows]
    wins = [np.array(r["win_rates"]) for r in rows]
    for row, values in zip(rows, wins):
        row["win_rate_mean"] = stats.stratified_bootstrap_ci(values, stats.mean, reps).as_dict()
        row["win_rate_iqm"] = stats.stratified_bootstrap_ci(values, stats.iqm, reps).as_dict()
        row["improvement"] = {}
    for i, j in itertools.combinations(range(len(rows)), 2):
        poi = stats.probability_of_improvement_ci(wins[i], wins[j], reps)
        rows[i]["improvement"][labels[j]] = poi.as_dict()
        # P(Y > X) = 1 - P(X > Y) with ties counted 1/2, replicate by replicate
        rows[j]["improvement"][labels[i]] = {"point": 1 - poi.point, "low": 1 - poi.high, "high": 1 - poi.low}
    lines = ["| combination | seeds | win rate, mean [95% bootstrap CI] | win rate, IQM [95% bootstrap CI] |",
             "|---|---|---|---|"]
    lines += [f"| {label} | {r['seeds']} | {stats.format_interval(r['win_rate_mean'], '.1%')} | "
              f"{stats.format_interval(r['win_rate_iqm'], '.1%')} |" for label, r in zip(labels, rows)]
    if len(rows) > 1:
        lines += ["", "P(row > column), a run of one combination against a run of the other [95% bootstrap CI]:",
                  "", "| | " + " | ".join(labels) + " |", "|---" * (len(rows) + 1) + "|"]
        for label, r in zip(labels, rows):
            cells = [stats.format_interval(r["improvement"][other], ".2f") if other != label else "-"
                     for other in labels]
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


__all__ = ["GroupModeStudy", "aggregate_table", "run_study"]
