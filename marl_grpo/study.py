"""Which GRPO group mode learns best? Train each mode for the same env-step budget and compare.

    python scripts/group_modes.py --total-env-steps 6000000

Each run is a normal training run (`runs/<prefix>-<mode>-<supervision>/`), so the curves can be
overlaid in TensorBoard; the table printed at the end is the final evaluation of each.
"""

from __future__ import annotations

from dataclasses import dataclass

from marl_grpo.config import TrainConfig
from marl_grpo.evaluate import evaluate
from marl_grpo.checkpoint import load_policy
from marl_grpo.train import CHECKPOINT_DIR, train


@dataclass
class GroupModeStudy:
    """Settings of the group-mode comparison."""

    modes: tuple[str, ...] = ("team", "branch", "episode", "branch+team")
    """group modes to compare"""
    supervisions: tuple[str, ...] = ("outcome", "process")
    """supervisions to compare"""
    total_env_steps: int = 6_000_000
    """equal budget of every run, in match-steps"""
    num_envs: int = 1024
    """matches stepped together"""
    final_matches: int = 200
    """matches of the final evaluation against the team bot"""
    prefix: str = "modes"
    """run-name prefix"""
    log_dir: str = "runs"
    """parent folder of the runs"""
    learning_rate: float = 1e-3
    """Adam learning rate of every run"""
    num_minibatches: int = 8
    """minibatches per pass of every run"""
    seed: int = 1
    """seed of every run"""


def run_study(study: GroupModeStudy) -> list[dict]:
    rows = []
    for mode in study.modes:
        for supervision in study.supervisions:
            cfg = TrainConfig(
                name=f"{study.prefix}-{mode.replace('+', '-')}-{supervision}", log_dir=study.log_dir,
                group_mode=mode, supervision=supervision, total_env_steps=study.total_env_steps,
                num_envs=study.num_envs, learning_rate=study.learning_rate,
                num_minibatches=study.num_minibatches, seed=study.seed, eval_every=0, save_every=0, progress=False)
            result = train(cfg)
            policy, _ = load_policy(f"{result['run_dir']}/{CHECKPOINT_DIR}", device=cfg.device)
            final = evaluate(policy, cfg.env_kwargs(), "team", 1.0, study.final_matches, seed=20_000)
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
