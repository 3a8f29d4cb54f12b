"""Environment throughput benchmark: `python scripts/bench_env.py [--threads 2] ...` (= `marl-grpo bench env`)."""

from marl_grpo.cli import main

if __name__ == "__main__":
    import sys

    main(["bench", "env", *sys.argv[1:]])
