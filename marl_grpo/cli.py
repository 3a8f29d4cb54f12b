"""The `marl-grpo` command line.

    marl-grpo train [--preset quick] [--total-env-steps N] ...      GRPO training (runs/<name>/)
    marl-grpo train --algo ppo [--critic centralized] ...           the PPO-with-critic baseline
    marl-grpo compare [--name 2v2] [--seeds 3] [--jobs 2]           GRPO vs PPO over seeds (runs/compare-<name>/)
    marl-grpo llm [--preset tiny] [--model PATH] ...                a language model plays, trained by GRPO
    marl-grpo fetch-model smollm2-135m-instruct [--out DIR]         a real instruct model, as models/<name>/
    marl-grpo eval CHECKPOINT [--opponent team] [--matches 200]     win/draw/loss against a bot
    marl-grpo watch CHECKPOINT [--record match.gif]                 play a match in a window
    marl-grpo play CHECKPOINT [--player blue_0] [--opponent team]   you play one player with the keyboard
    marl-grpo demo [--out runs/demo/match.gif] [--team-size 2] ...  a scripted match, recorded
    marl-grpo bench env [--threads 2] ...                           environment throughput
    marl-grpo bench train [--algo grpo|ppo] ...                     GRPO / PPO loop throughput and update cost
    marl-grpo study [--total-env-steps N] ...                       GRPO group modes side by side
    marl-grpo soak [--minutes 30] [--tolerance-mb 64]               train and watch memory for growth
    marl-grpo tournament [CHECKPOINT ...] [--bots random,team]      round robin, payoff matrix, Elo ratings
    marl-grpo exploit CHECKPOINT... [--minutes 5] [--seeds 3]       exploitability: fresh best responses vs each

`python -m marl_grpo ...` is the same command.

Each command's options come from a config dataclass (see `--help` of each command).

One option comes before the command: `marl-grpo --omp-wait auto|active|passive|default COMMAND ...`
(else the MARL_GRPO_OMP_WAIT variable; default `auto`) chooses the OpenMP wait policy of torch's
CPU threads, once, before torch is imported (see `marl_grpo.run.threads.omp_wait_env`). The
command sets the chosen variable (OMP_WAIT_POLICY or GOMP_SPINCOUNT) in its own environment, so
the processes it starts (`compare --jobs` workers, compile workers) inherit it. A user's own
OMP_WAIT_POLICY or GOMP_SPINCOUNT always wins. Called as a function after torch was imported
(`main([...])` from Python), the command sets nothing.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Callable

from marl_grpo.run.threads import OMP_WAIT_OPTIONS, omp_wait_env

# Nothing imported at the top may import torch: the OpenMP runtime reads its wait policy once,
# when torch loads it, and `main` chooses that policy first. So the command modules, and the
# parsing helpers below, are imported only when a command runs.


def parse_config(*args: Any, **kwargs: Any) -> Any:
    """`marl_grpo.run.presets.parse_config`, imported when a command runs."""
    from marl_grpo.run.presets import parse_config as parse

    return parse(*args, **kwargs)


def parse_with_preset(*args: Any, **kwargs: Any) -> Any:
    """`marl_grpo.run.presets.parse_with_preset`, imported when a command runs."""
    from marl_grpo.run.presets import parse_with_preset as parse

    return parse(*args, **kwargs)


def world_from_env() -> Any:
    """`marl_grpo.run.distributed.world_from_env`, imported when a command runs."""
    from marl_grpo.run.distributed import world_from_env as world

    return world()


def _checked(command: str, fn: Callable[[Any], Any], cfg: Any) -> Any:
    """Run `fn(cfg)`, turning a bad-input error into a one-line `SystemExit` naming the command."""
    try:
        return fn(cfg)
    except (ValueError, FileExistsError, FileNotFoundError, FloatingPointError) as err:
        raise SystemExit(f"{command}: {err}") from None


def _train(argv: list[str]) -> None:
    from marl_grpo.rl import PRESETS, train

    cfg = parse_with_preset(argv, PRESETS, "2v2", "marl-grpo train", "GRPO or PPO (--algo ppo) training.")
    result = _checked("marl-grpo train", train, cfg)
    if not world_from_env().is_main:
        return
    print(f"done: {result['global_step']} env steps in {result['elapsed']:.0f} s "
          f"(peak memory {result['peak_memory_mb']:.0f} MB); last evaluation: {result['eval']}")
    print(f"TensorBoard logs and checkpoint in {result['run_dir']}  (tensorboard --logdir {Path(result['run_dir']).parent})")


def _llm(argv: list[str]) -> None:
    from marl_grpo.llm import PRESETS, train_llm

    cfg = parse_with_preset(argv, PRESETS, "tiny", "marl-grpo llm", "GRPO training of an LLM agent.")
    try:
        import transformers  # noqa: F401
    except ImportError as err:
        raise SystemExit(f"marl-grpo llm needs the LLM extra: pip install -e '.[llm]' ({err})") from None
    result = _checked("marl-grpo llm", train_llm, cfg)
    if not world_from_env().is_main:
        return
    history = result["history"]["llm/answer_reward"]
    if history:
        print(f"done: {result['iteration']} iterations in {result['wall_time']:.0f} s "
              f"(peak memory {result['peak_memory_mb']:.0f} MB); answer reward "
              f"{history[0]:.3f} -> {history[-1]:.3f} (chance {result['history']['llm/reward_chance'][-1]:.3f}); "
              f"last evaluation: {result['eval']}")
    else:
        print(f"nothing to do: the run is already at iteration {result['iteration']} of {cfg.total_iterations}")
    print(f"TensorBoard logs and Hugging Face checkpoint in {result['run_dir']}")
    if "merged" in result:
        print(f"LoRA adapter merged into its base model: {result['merged']}")


def _fetch_model(argv: list[str]) -> None:
    from marl_grpo.llm.fetch import FetchConfig, FetchError, fetch_model

    cfg = parse_config(FetchConfig, argv, "marl-grpo fetch-model")
    try:
        folder = _checked("marl-grpo fetch-model", lambda c: fetch_model(c.model, c.out or None), cfg)
    except FetchError as err:
        raise SystemExit(f"marl-grpo fetch-model: {err}") from None
    print(folder)


def _compare(argv: list[str]) -> None:
    from marl_grpo.tools.compare import COMPARE_PRESETS, final_line, run_compare

    cfg = parse_with_preset(argv, COMPARE_PRESETS, "2v2", "marl-grpo compare",
                            "GRPO against the PPO-with-critic baseline over several seeds, same budget.")
    summary = _checked("marl-grpo compare", run_compare, cfg)
    if cfg.dry_run:
        return
    root = Path(cfg.train.log_dir) / f"compare-{cfg.name}"
    print((root / "compare.md").read_text())
    print(f"plot: {root / 'compare.png'}; curves: tensorboard --logdir {root}")
    for algo, row in summary.items():
        print(final_line(algo, row))


def _study(argv: list[str]) -> None:
    from marl_grpo.tools.study import GroupModeStudy, run_study

    _checked("marl-grpo study", run_study, parse_config(GroupModeStudy, argv, "marl-grpo study"))


def _soak(argv: list[str]) -> None:
    from marl_grpo.tools.soak import SoakConfig, run_soak

    _checked("marl-grpo soak", run_soak, parse_config(SoakConfig, argv, "marl-grpo soak"))


def _tournament(argv: list[str]) -> None:
    from marl_grpo.tools.tournament import TournamentConfig, run_tournament

    _checked("marl-grpo tournament", run_tournament, parse_config(TournamentConfig, argv, "marl-grpo tournament"))


def _exploit(argv: list[str]) -> None:
    from marl_grpo.tools.exploit import ExploitConfig, run_exploit

    _checked("marl-grpo exploit", run_exploit, parse_config(ExploitConfig, argv, "marl-grpo exploit"))


def _eval(argv: list[str]) -> None:
    from marl_grpo.play import EvalConfig, run_eval

    _checked("marl-grpo eval", run_eval, parse_config(EvalConfig, argv, "marl-grpo eval"))


def _watch(argv: list[str]) -> None:
    from marl_grpo.play import WatchConfig, run_watch

    _checked("marl-grpo watch", run_watch, parse_config(WatchConfig, argv, "marl-grpo watch"))


def _play(argv: list[str]) -> None:
    from marl_grpo.play import PlayConfig, run_play

    _checked("marl-grpo play", run_play, parse_config(PlayConfig, argv, "marl-grpo play"))


def _demo(argv: list[str]) -> None:
    from marl_grpo.demo import DemoConfig, run_demo

    run_demo(parse_config(DemoConfig, argv, "marl-grpo demo"))


def _bench_env(argv: list[str]) -> None:
    from marl_grpo.tools.bench import EnvBenchConfig, run_env_bench

    run_env_bench(parse_config(EnvBenchConfig, argv, "marl-grpo bench env"))


def _bench_train(argv: list[str]) -> None:
    from marl_grpo.tools.bench import TrainBenchConfig, run_train_bench

    _checked("marl-grpo bench train", run_train_bench, parse_config(TrainBenchConfig, argv, "marl-grpo bench train"))


COMMANDS: dict[str, Callable[[list[str]], None] | dict[str, Callable[[list[str]], None]]] = {
    "train": _train,
    "compare": _compare,
    "llm": _llm,
    "fetch-model": _fetch_model,
    "eval": _eval,
    "watch": _watch,
    "play": _play,
    "demo": _demo,
    "study": _study,
    "soak": _soak,
    "tournament": _tournament,
    "exploit": _exploit,
    "bench": {"env": _bench_env, "train": _bench_train},
}


def _usage(commands: dict, prefix: str) -> str:
    before = f" [--omp-wait {{{','.join(OMP_WAIT_OPTIONS)}}}]" if prefix == "marl-grpo" else ""
    return f"usage: {prefix}{before} {{{','.join(commands)}}} [options]   (add --help after a command for its options)"


def _omp_wait_option(argv: list[str]) -> str | None:
    """Remove the leading `--omp-wait VALUE` (or `--omp-wait=VALUE`) options from `argv`; the last
    value given, or None."""
    value = None
    while argv and argv[0].split("=", 1)[0] == "--omp-wait":
        option = argv.pop(0)
        if "=" in option:
            value = option.split("=", 1)[1]
        elif argv:
            value = argv.pop(0)
        else:
            raise SystemExit(f"marl-grpo: --omp-wait needs a value: one of {', '.join(OMP_WAIT_OPTIONS)}")
    return value


def set_thread_policy(option: str | None) -> dict[str, str]:
    """Choose the OpenMP wait policy from `option` (`--omp-wait`; None: the MARL_GRPO_OMP_WAIT
    variable, else `auto`) and set its variable in this process's environment, which the OpenMP
    runtime reads when torch loads and child processes inherit. Returns what was set: nothing once
    torch is imported (too late to matter), or when the user set OMP_WAIT_POLICY or GOMP_SPINCOUNT."""
    name = "--omp-wait"
    if option is None:
        option, name = os.environ.get("MARL_GRPO_OMP_WAIT"), "MARL_GRPO_OMP_WAIT"
    try:
        env = omp_wait_env(option, name=name)
    except ValueError as err:
        raise SystemExit(f"marl-grpo: {err}") from None
    if "torch" in sys.modules:
        if name == "--omp-wait":
            print(f"marl-grpo: --omp-wait {option} has no effect: torch was imported before the command started",
                  file=sys.stderr)
        return {}
    os.environ.update(env)
    return env


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    set_thread_policy(_omp_wait_option(argv))
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
