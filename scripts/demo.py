"""A recorded match between two scripted teams: `python scripts/demo.py --out match.gif` (= `marl-grpo demo`)."""

from marl_grpo.cli import main

if __name__ == "__main__":
    import sys

    main(["demo", *sys.argv[1:]])
