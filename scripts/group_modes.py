"""Compare GRPO group modes at equal env steps: `python scripts/group_modes.py [--total-env-steps N] ...`
(= `marl-grpo study ...`)."""

import sys

from marl_grpo.cli import main

if __name__ == "__main__":
    main(["study", *sys.argv[1:]])
