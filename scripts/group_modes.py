"""Compare GRPO group modes at equal env steps: `python scripts/group_modes.py [--total-env-steps N] ...`."""

import marl_grpo  # noqa: F401  (before torch: OpenMP settings)
import tyro

from marl_grpo.study import GroupModeStudy, run_study

if __name__ == "__main__":
    run_study(tyro.cli(GroupModeStudy))
