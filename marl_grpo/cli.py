"""The `marl-grpo` command line.

    marl-grpo demo [--out runs/demo/match.gif] [--team-size 2] ...   a scripted match, recorded
    marl-grpo bench env [--threads 2] ...                            environment throughput

Each command's options come from a config dataclass (see `--help` of each command).
"""

from __future__ import annotations

import sys
from typing import Callable

import tyro


def _demo(argv: list[str]) -> None:
    from marl_grpo.demo import DemoConfig, run_demo

    run_demo(tyro.cli(DemoConfig, args=argv, prog="marl-grpo demo"))


def _bench_env(argv: list[str]) -> None:
    from marl_grpo.bench import EnvBenchConfig, run_env_bench

    run_env_bench(tyro.cli(EnvBenchConfig, args=argv, prog="marl-grpo bench env"))


COMMANDS: dict[str, Callable[[list[str]], None] | dict[str, Callable[[list[str]], None]]] = {
    "demo": _demo,
    "bench": {"env": _bench_env},
}


def _usage(commands: dict, prefix: str) -> str:
    return f"usage: {prefix} {{{','.join(commands)}}} [options]   (add --help after a command for its options)"


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    commands, prefix = COMMANDS, "marl-grpo"
    while isinstance(commands, dict):
        if not argv or argv[0] in ("-h", "--help"):
            print(_usage(commands, prefix))
            raise SystemExit(0 if argv else 2)
        name = argv.pop(0)
        if name not in commands:
            print(f"{prefix}: unknown command {name!r}; choose one of: {', '.join(commands)}", file=sys.stderr)
            raise SystemExit(2)
        commands, prefix = commands[name], f"{prefix} {name}"
    commands(argv)


if __name__ == "__main__":
    main()
