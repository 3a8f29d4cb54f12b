"""The `marl-grpo` command line.

    marl-grpo train [--preset quick] [--total-env-steps N] ...      GRPO training (runs/<name>/)
    marl-grpo train --algo ppo [--critic centralized] ...           the PPO-with-critic baseline
    marl-grpo compare [--name 2v2] [--seeds 3] [--jobs 2]           GRPO vs PPO over seeds (runs/compare-<name>/)
    marl-grpo llm [--preset tiny] [--model PATH] ...                a language model plays, trained by GRPO
    marl-grpo eval CHECKPOINT [--opponent team] [--matches 200]     win/draw/loss against a bot
    marl-grpo watch CHECKPOINT [--record match.gif]                 play a match in a window
    marl-grpo demo [--out runs/demo/match.gif] [--team-size 2] ...  a scripted match, recorded
    marl-grpo bench env [--threads 2] ...                           environment throughput
    marl-grpo bench train [--algo grpo|ppo] ...                     GRPO / PPO loop throughput and update cost

Each command's options come from a config dataclass (see `--help` of each command).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Callable

import tyro


def _demo(argv: list[str]) -> None:
    from marl_grpo.demo import DemoConfig, run_demo

    run_demo(tyro.cli(DemoConfig, args=argv, prog="marl-grpo demo"))


def parse_with_preset(argv: list[str], presets: dict[str, Any], default_name: str, command: str,
                      description: str) -> Any:
    """`--preset NAME` picks the defaults (a config dataclass from `presets`); the other options
    override its fields through tyro."""
    from marl_grpo.config import pick_preset

    name = default_name
    if "--preset" in argv:
        at = argv.index("--preset")
        if at + 1 >= len(argv):
            raise SystemExit(f"--preset needs a name: one of {', '.join(presets)}")
        name = argv[at + 1]
        argv = argv[:at] + argv[at + 2:]
    try:
        default = pick_preset(presets, name)
    except ValueError as err:
        raise SystemExit(f"{command}: {err}") from None
    return tyro.cli(type(default), default=default, args=argv, prog=f"{command} --preset {name}",
                    description=f"{description} Presets: {', '.join(presets)} (default {default_name}).")


def _train(argv: list[str]) -> None:
    from marl_grpo.config import PRESETS
    from marl_grpo.train import train

    cfg = parse_with_preset(argv, PRESETS, "2v2", "marl-grpo train", "GRPO or PPO (--algo ppo) training.")
    try:
        result = train(cfg)
    except (ValueError, FileExistsError, FileNotFoundError) as err:
        raise SystemExit(f"marl-grpo train: {err}") from None
    print(f"done: {result['global_step']} env steps in {result['elapsed']:.0f} s; last evaluation: {result['eval']}")
    print(f"TensorBoard logs and checkpoint in {result['run_dir']}  (tensorboard --logdir {Path(result['run_dir']).parent})")


def _compare(argv: list[str]) -> None:
    from marl_grpo.compare import COMPARE_PRESETS, run_compare

    cfg = parse_with_preset(argv, COMPARE_PRESETS, "2v2", "marl-grpo compare",
                            "GRPO against the PPO-with-critic baseline over several seeds, same budget.")
    try:
        summary = run_compare(cfg)
    except (ValueError, FileExistsError, FileNotFoundError) as err:
        raise SystemExit(f"marl-grpo compare: {err}") from None
    root = Path(cfg.train.log_dir) / f"compare-{cfg.name}"
    print((root / "compare.md").read_text())
    print(f"plot: {root / 'compare.png'}; curves: tensorboard --logdir {root}")
    for algo, row in summary.items():
        print(f"{algo}: final win rate {row['final_win_rate']:.1%} ± {row['final_win_rate_ci']:.1%}")


def _llm(argv: list[str]) -> None:
    try:
        from marl_grpo.llm_train import main as llm_main
    except ImportError as err:
        raise SystemExit(f"marl-grpo llm needs the LLM extra: pip install -e '.[llm]' ({err})") from None
    llm_main(argv)


def _eval(argv: list[str]) -> None:
    from marl_grpo.play import EvalConfig, run_eval

    _run_checked(run_eval, tyro.cli(EvalConfig, args=argv, prog="marl-grpo eval"))


def _watch(argv: list[str]) -> None:
    from marl_grpo.play import WatchConfig, run_watch

    _run_checked(run_watch, tyro.cli(WatchConfig, args=argv, prog="marl-grpo watch"))


def _run_checked(fn: Callable, cfg: object) -> None:
    try:
        fn(cfg)
    except (ValueError, FileNotFoundError) as err:
        raise SystemExit(f"marl-grpo: {err}") from None


def _bench_env(argv: list[str]) -> None:
    from marl_grpo.bench import EnvBenchConfig, run_env_bench

    run_env_bench(tyro.cli(EnvBenchConfig, args=argv, prog="marl-grpo bench env"))


def _bench_train(argv: list[str]) -> None:
    from marl_grpo.bench import TrainBenchConfig, run_train_bench

    run_train_bench(tyro.cli(TrainBenchConfig, args=argv, prog="marl-grpo bench train"))


COMMANDS: dict[str, Callable[[list[str]], None] | dict[str, Callable[[list[str]], None]]] = {
    "train": _train,
    "compare": _compare,
    "llm": _llm,
    "eval": _eval,
    "watch": _watch,
    "demo": _demo,
    "bench": {"env": _bench_env, "train": _bench_train},
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
