"""Thin entry point: `python scripts/llm.py ...` is `marl-grpo llm ...` (see --help)."""

import sys

from marl_grpo.cli import main

if __name__ == "__main__":
    main(["llm", *sys.argv[1:]])
