"""Thin entry point: `python scripts/train.py ...` is `marl-grpo train ...` (see --help)."""

from marl_grpo.cli import main

if __name__ == "__main__":
    import sys

    main(["train", *sys.argv[1:]])
