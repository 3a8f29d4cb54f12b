"""Thin entry point: `python scripts/watch.py ...` is `marl-grpo watch ...` (see --help)."""

from marl_grpo.cli import main

if __name__ == "__main__":
    import sys

    main(["watch", *sys.argv[1:]])
