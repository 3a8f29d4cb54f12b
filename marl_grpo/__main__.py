"""`python -m marl_grpo ...` is the `marl-grpo` command (and runs under `torchrun -m marl_grpo`)."""

from marl_grpo.cli import main

main()
