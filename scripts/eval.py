"""Thin entry point: `python scripts/eval.py ...` is `marl-grpo eval ...` (see --help)."""

from marl_grpo.cli import main

if __name__ == "__main__":
    import sys

    main(["eval", *sys.argv[1:]])
