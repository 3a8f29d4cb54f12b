"""Thin entry point: `python scripts/llm.py ...` is `marl-grpo llm ...` (see --help)."""

from marl_grpo.llm_train import main

if __name__ == "__main__":
    main()
