"""Which GRPO group mode learns best? Train each mode for the same env-step budget and compare.

    python scripts/group_modes.py --total-env-steps 6000000

Each run is a normal training run (`runs/<prefix>-<mode>-<supervision>/`), so the curves can be
overlaid in TensorBoard; the table printed at the end is the final evaluation of each.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field


import tyro

from marl_grpo.rl import TrainConfig, evaluate, train
from marl_grpo.run.checkpoint import load_policy
from marl_grpo.run.files import CHECKPOINT_DIR, STUDY_EVAL_SEED


@dataclass
class GroupModeStudy:
    """Settings of the group-mode comparison; every `marl-grpo train` option sets all its runs."""

    modes: tuple[str, ...] = ("team", "branch", "episode", "branch+team")
    """group modes to compare"""
    supervisions: tuple[str, ...] = ("outcome", "process")
    """supervisions to compare"""
    final_matches: int = 200
    """matches of the final evaluation against the team bot"""
    prefix: str = "modes"
    """run-name prefix"""
    train: tyro.conf.OmitArgPrefixes[TrainConfig] = field(default_factory=lambda: TrainConfig(
        total_env_steps=6_000_000, eval_every=0, save_every=0, progress=False))
    """the settings every run shares (group_mode, supervision and name are set per run)"""

    def validate(self) -> None:
        for mode in self.modes:
            dataclasses.replace(self.train, group_mode=mode)  # a clear error for a bad mode, before any run
        self.train.validate()


def run_study(study: GroupModeStudy) -> list[dict]:
    rows = []
    for mode in study.modes:
        for supervision in study.supervisions:
            cfg = dataclasses.replace(study.train, name=f"{study.prefix}-{mode.replace('+', '-')}-{supervision}",
                                      group_mode=mode, supervision=supervision)
            result = train(cfg)
            policy, _ = load_policy(f"{result['run_dir']}/{CHECKPOINT_DIR}", device=cfg.device)
            final = evaluate(policy, cfg.env_kwargs(), "team", 1.0, study.final_matches, seed=STUDY_EVAL_SEED)
            rows.append({"mode": mode, "supervision": supervision, "env_steps": result["global_step"],
                         "minutes": result["wall_time"] / 60, **final})
            print(f"{mode:>12} {supervision:>8}: win {final['eval/win_rate']:.1%}  draw {final['eval/draw_rate']:.1%}"
                  f"  goal diff {final['eval/goal_diff']:+.2f}  ({result['global_step']} env steps, "
                  f"{result['wall_time'] / 60:.1f} min)", flush=True)
    print("\n| group mode | supervision | win rate | draw rate | goal diff | env steps | minutes |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['mode']} | {r['supervision']} | {r['eval/win_rate']:.1%} | {r['eval/draw_rate']:.1%} | "
              f"{r['eval/goal_diff']:+.2f} | {r['env_steps']:,} | {r['minutes']:.1f} |")
    return rows


__all__ = ["GroupModeStudy", "run_study"]
