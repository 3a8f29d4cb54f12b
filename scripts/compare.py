"""GRPO vs PPO over seeds: the same as `marl-grpo compare` (see marl_grpo/compare.py)."""

import sys

from marl_grpo.cli import main

if __name__ == "__main__":
    main(["compare", *sys.argv[1:]])
