"""Memory soak: `python scripts/soak.py [--minutes 30] [--tolerance-mb 64] [--train.* ...]` (= `marl-grpo soak`)."""

import sys

from marl_grpo.cli import main

if __name__ == "__main__":
    main(["soak", *sys.argv[1:]])
