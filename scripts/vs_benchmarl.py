"""Our PPO and GRPO against BenchMARL's MAPPO and IPPO on VMAS tasks, same frames, same machine.

    python scripts/vs_benchmarl.py --dry-run                      # one command per run, for any scheduler
    python scripts/vs_benchmarl.py --jobs 2                       # run what is missing, then the report
    python scripts/vs_benchmarl.py --report-only                  # the table and plot from finished runs
    python scripts/vs_benchmarl.py --tasks navigation --seeds 1 --frames 300000   # a pilot

Runs: for each task (`--tasks`, default navigation and balance), seed (1..`--seeds`) and algorithm:

- `mappo`, `ippo`: BenchMARL 1.5.2 (the `benchmarl` extra, in its own venv `--benchmarl-python`,
  default `.venv-benchmarl/bin/python`: it needs torchrl < 0.12) with its own configs
  (`ExperimentConfig`, `MappoConfig` / `IppoConfig`, `MlpConfig` and the task's `get_from_yaml()`:
  6000 frames per batch from 10 envs, 45 minibatch iterations of 400, lr 5e-5), changed only where
  the comparison needs it: `max_n_frames = --frames`, discrete actions
  (`prefer_continuous_actions=False`, as our policy), csv logging, no rendering. A callback records
  (frames, seconds, mean evaluation return) at each of its evaluations (every 120000 frames, 10
  episodes, most likely actions).
- `ppo`, `grpo`: `marl-grpo train --env vmas:<task>` with BenchMARL's task settings (its yaml), the
  same frames, 6000 frames per iteration (`--num-envs 200 --branch-horizon 30`), each algorithm's
  soccer preset otherwise (PPO: `ppo-2v2`, its centralized critic, 4 epochs, lr 1e-3, not tuned for
  these tasks; GRPO: `2v2`, lr 6e-3, with the group mode and advantage scale of `GRPO_OPTIONS`, the
  best of a small selection run on a seed not reported, 100: docs/other-envs.md), evaluated every
  120000 frames on 64 held-out episodes (sampled actions), and at the end with their most likely
  actions on 200 (`most_likely.json`), as BenchMARL evaluates.

Each run uses one thread (`--threads 1`; BenchMARL's process: `torch.set_num_threads(1)`), so that
`--jobs 2` on 2 cores gives both sides the same share. The report (`<out>/vs_benchmarl.md`, `.json`,
`.png`): per task and algorithm the final evaluation return of each seed, its mean and IQM with 95%
stratified-bootstrap intervals (`marl_grpo.tools.stats`), the wall time, and curves against frames
and against wall time.

`--run-benchmarl ALGO TASK SEED FRAMES OUT` is the command of one BenchMARL run (in its venv).
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

TASK_KWARGS = {
    # benchmarl/conf/task/vmas/<task>.yaml (BenchMARL 1.5.2), max_steps apart (our --max-cycles)
    "navigation": {"n_agents": 3, "collisions": True, "agents_with_same_goal": 1, "split_goals": False,
                   "observe_all_goals": False, "shared_rew": False, "lidar_range": 0.35, "agent_radius": 0.1},
    "balance": {"n_agents": 4, "random_package_pos_on_line": True, "package_mass": 5},
}
MAX_STEPS = 100
GRPO_OPTIONS = {
    # chosen on seed 100 at 240k frames among group modes branch / team / episode / branch+team, lr 1e-3 / 6e-3
    # and group / batch advantage scale (runs/grpo-nav-sweep): the group std (GRPO's) amplifies the noise
    # between branches of one state; the batch std does not
    "navigation": ["--group-mode", "branch", "--group-size", "8", "--scale", "batch"],
    "balance": ["--group-mode", "branch", "--group-size", "8", "--scale", "batch"],
}
BENCHMARL_ALGOS = ("mappo", "ippo")
OUR_ALGOS = ("ppo", "grpo")
EVAL_EVERY_FRAMES = 120_000
FRAMES_PER_BATCH = 6000
CURVE_FILE = "curve.json"
MOST_LIKELY_FILE = "most_likely.json"
MOST_LIKELY_EPISODES = 200


# ---------------------------------------------------------------------- one BenchMARL run (its venv)
try:  # BenchMARL pickles its callbacks: the class must live at module level
    from benchmarl.experiment.callback import Callback
except ImportError:  # the main venv: only the plan and the report
    Callback = object


class Record(Callback):
    """(frames, seconds, mean return) at each BenchMARL evaluation: each episode's return summed over
    time, averaged over agents (BenchMARL's `eval/<group>/reward/episode_reward_mean`)."""

    def __init__(self):
        super().__init__()
        self.curve: list[dict[str, float]] = []
        self.start = time.perf_counter()

    def on_evaluation_end(self, rollouts):
        group = next(iter(self.experiment.group_map))
        returns = [float(td.get(("next", group, "reward")).sum(0).mean()) for td in rollouts]
        self.curve.append({"frames": self.experiment.total_frames, "seconds": time.perf_counter() - self.start,
                           "return": sum(returns) / len(returns), "episodes": len(returns)})


def run_benchmarl(algo: str, task: str, seed: int, frames: int, out: Path) -> None:
    import torch
    from benchmarl.algorithms import IppoConfig, MappoConfig
    from benchmarl.environments import VmasTask
    from benchmarl.experiment import Experiment, ExperimentConfig
    from benchmarl.models.mlp import MlpConfig

    torch.set_num_threads(1)
    out.mkdir(parents=True, exist_ok=True)
    config = ExperimentConfig.get_from_yaml()
    config.max_n_frames = frames
    config.prefer_continuous_actions = False
    config.loggers = ["csv"]
    config.render = False
    config.save_folder = str(out)
    config.checkpoint_at_end = False
    task_config = getattr(VmasTask, task.upper()).get_from_yaml()
    algorithm = {"mappo": MappoConfig, "ippo": IppoConfig}[algo].get_from_yaml()
    record = Record()
    experiment = Experiment(task=task_config, algorithm_config=algorithm, model_config=MlpConfig.get_from_yaml(),
                            critic_model_config=MlpConfig.get_from_yaml(), seed=seed, config=config,
                            callbacks=[record])
    experiment.run()
    (out / CURVE_FILE).write_text(json.dumps({"algo": algo, "task": task, "seed": seed, "frames": frames,
                                              "wall_time": time.perf_counter() - record.start,
                                              "curve": record.curve}, indent=1))


# ---------------------------------------------------------------------- the plan
def our_command(algo: str, task: str, seed: int, frames: int, out: Path, marl_grpo: str) -> list[str]:
    kwargs = [f"{k}={v}" for k, v in TASK_KWARGS[task].items()]
    preset = ["--preset", "2v2", *GRPO_OPTIONS[task]] if algo == "grpo" else ["--preset", "ppo-2v2"]
    return [marl_grpo, "train", *preset, "--env", f"vmas:{task}", "--env-kwargs", *kwargs,
            "--max-cycles", str(MAX_STEPS), "--seed", str(seed), "--total-env-steps", str(frames), "--num-envs", "200",
            "--branch-horizon", str(FRAMES_PER_BATCH // 200), "--max-minutes", "0",
            "--eval-every", str(EVAL_EVERY_FRAMES // FRAMES_PER_BATCH), "--eval-matches", "64", "--threads", "1",
            "--no-progress", "--log-dir", str(out.parent), "--name", out.name]


def plan(args: argparse.Namespace) -> list[tuple[Path, list[str]]]:
    """(run folder, command) of every run."""
    runs = []
    for task in args.tasks:
        for algo in (*BENCHMARL_ALGOS, *OUR_ALGOS):
            for seed in range(1, args.seeds + 1):
                out = Path(args.out) / task / algo / f"seed{seed}"
                if algo in BENCHMARL_ALGOS:
                    command = [args.benchmarl_python, __file__, "--run-benchmarl", algo, task, str(seed),
                               str(args.frames), str(out)]
                else:
                    command = our_command(algo, task, seed, args.frames, out, args.marl_grpo)
                    if (out / "checkpoint").is_dir():  # cut off earlier: continue it (a BenchMARL run starts over)
                        command.append("--resume")
                runs.append((out, command))
    return runs


def finished(out: Path) -> bool:
    return (out / CURVE_FILE).is_file() or (out / "result.json").is_file()


# ---------------------------------------------------------------------- the report
def read_curve(out: Path) -> dict[str, list[float]]:
    """frames, seconds and returns at each evaluation of a finished run (ours: from TensorBoard)."""
    if (out / CURVE_FILE).is_file():
        curve = json.loads((out / CURVE_FILE).read_text())["curve"]
        return {k: [p[k] for p in curve] for k in ("frames", "seconds", "return")}
    from marl_grpo.tools.compare import read_scalars

    frames, returns = read_scalars(out, "eval/return")
    _, seconds = read_scalars(out, "eval/wall_time")
    return {"frames": frames.tolist(), "seconds": seconds.tolist(), "return": returns.tolist()}


def most_likely_return(out: Path, marl_grpo: str) -> float:
    """Our run's final return with its most likely actions, as BenchMARL evaluates (its own final
    evaluation, 10 episodes, is already that): `marl-grpo eval --deterministic` of the final checkpoint
    on `MOST_LIKELY_EPISODES` held-out episodes (computed once, kept in `most_likely.json`)."""
    if not (out / MOST_LIKELY_FILE).is_file():
        text = subprocess.run([marl_grpo, "eval", str(out / "checkpoint"), "--deterministic", "--matches",
                               str(MOST_LIKELY_EPISODES)], capture_output=True, text=True, check=True).stdout
        value = float(text.rsplit("mean return ", 1)[1].split()[0])
        (out / MOST_LIKELY_FILE).write_text(json.dumps({"return": value, "episodes": MOST_LIKELY_EPISODES}))
    return json.loads((out / MOST_LIKELY_FILE).read_text())["return"]


def report(args: argparse.Namespace) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from marl_grpo.tools.stats import format_interval, summarize

    out = Path(args.out)
    rows, improvements, results = [], [], {}
    fig, axes = plt.subplots(len(args.tasks), 2, figsize=(11, 3.6 * len(args.tasks)), squeeze=False)
    for t, task in enumerate(args.tasks):
        finals, likely = {}, {}
        for algo in (*BENCHMARL_ALGOS, *OUR_ALGOS):
            runs = [out / task / algo / f"seed{s}" for s in range(1, args.seeds + 1)
                    if finished(out / task / algo / f"seed{s}")]
            if not runs:
                continue
            curves = [read_curve(run) for run in runs]
            finals[algo] = np.array([[c["return"][-1]] for c in curves])
            likely[algo] = finals[algo] if algo in BENCHMARL_ALGOS else \
                np.array([[most_likely_return(run, args.marl_grpo)] for run in runs])
            walls = [c["seconds"][-1] for c in curves]
            results.setdefault(task, {})[algo] = {"final_returns": finals[algo][:, 0].tolist(),
                                                  "most_likely_returns": likely[algo][:, 0].tolist(),
                                                  "wall_times": walls, "curves": curves}
            for c in curves:
                label = algo if c is curves[0] else None
                color = {"mappo": "tab:blue", "ippo": "tab:cyan", "ppo": "tab:orange", "grpo": "tab:green"}[algo]
                axes[t, 0].plot(c["frames"], c["return"], color=color, alpha=0.7, label=label)
                axes[t, 1].plot(c["seconds"], c["return"], color=color, alpha=0.7, label=label)
        if not finals:
            continue
        summary, summary_likely = summarize(finals), summarize(likely)
        results[task]["summary"], results[task]["summary_most_likely"] = summary, summary_likely
        for algo, stats in summary["algos"].items():
            walls, stats_likely = results[task][algo]["wall_times"], summary_likely["algos"][algo]
            rows.append(f"| {task} | {algo} | {stats['runs']} | {format_interval(stats['iqm'], '.2f')} | "
                        f"{', '.join(f'{r:.2f}' for r in results[task][algo]['final_returns'])} | "
                        f"{format_interval(stats_likely['iqm'], '.2f')} | "
                        f"{', '.join(f'{r:.2f}' for r in results[task][algo]['most_likely_returns'])} | "
                        f"{np.mean(walls) / 60:.1f} |")
        for name, stats in (("final return", summary), ("most likely actions", summary_likely)):
            for pair in stats["improvement"]:  # P(mappo > ours) -> P(ours > mappo) = 1 - it
                if pair["x"] == "mappo" and pair["y"] in OUR_ALGOS:
                    flipped = {"point": 1 - pair["point"], "low": 1 - pair["high"], "high": 1 - pair["low"]}
                    improvements.append(f"- {task}, {name}: P({pair['y']} > mappo) = "
                                        f"{format_interval(flipped, '.2f')}")
        axes[t, 1].set_xscale("log")  # ours and BenchMARL's differ ten-fold and more
        for ax, xlabel in zip(axes[t], ("frames (env steps)", "wall time (s, log scale)")):
            ax.set_title(f"vmas:{task}")
            ax.set_xlabel(xlabel)
            ax.set_ylabel("mean episode return")
            ax.legend()
    fig.tight_layout()
    fig.savefig(out / "vs_benchmarl.png", dpi=110)
    table = ("| task | algorithm | seeds | final return, IQM [95% CI] | per seed | most likely actions, IQM [95% CI] "
             "| per seed | minutes |\n|---|---|---|---|---|---|---|---|\n" + "\n".join(rows)
             + "\n\n" + "\n".join(improvements))
    (out / "vs_benchmarl.md").write_text(table + "\n")
    (out / "vs_benchmarl.json").write_text(json.dumps({"frames": args.frames, "seeds": args.seeds,
                                                       "results": results}, indent=1))
    return table


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", nargs="+", default=list(TASK_KWARGS), choices=list(TASK_KWARGS))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--frames", type=int, default=3_000_000, help="frames (env steps) per run: BenchMARL's 3M")
    parser.add_argument("--out", default="runs/vs-benchmarl")
    parser.add_argument("--jobs", type=int, default=2, help="runs at once (each on one thread)")
    parser.add_argument("--dry-run", action="store_true", help="print one command per missing run, then stop")
    parser.add_argument("--report-only", action="store_true")
    parser.add_argument("--benchmarl-python", default=".venv-benchmarl/bin/python")
    parser.add_argument("--marl-grpo", default=str(Path(sys.executable).parent / "marl-grpo"))
    parser.add_argument("--run-benchmarl", nargs=5, metavar=("ALGO", "TASK", "SEED", "FRAMES", "OUT"))
    args = parser.parse_args(argv)
    if args.run_benchmarl:
        algo, task, seed, frames, out = args.run_benchmarl
        run_benchmarl(algo, task, int(seed), int(frames), Path(out))
        return
    if args.frames % EVAL_EVERY_FRAMES or args.frames < EVAL_EVERY_FRAMES:  # BenchMARL evaluates at its multiples only
        parser.error(f"--frames {args.frames}: expected a multiple of {EVAL_EVERY_FRAMES}, so that every run ends with "
                     "an evaluation")
    missing = [(out, command) for out, command in plan(args) if not finished(out)]
    if args.dry_run:
        for _, command in missing:
            print(shlex.join(command))
        return
    if not args.report_only:
        def run(item: tuple[Path, list[str]]) -> None:
            out, command = item
            out.parent.mkdir(parents=True, exist_ok=True)
            with open(out.parent / f"{out.name}.log", "w") as log:
                subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, check=True)

        with ThreadPoolExecutor(args.jobs) as pool:
            list(pool.map(run, missing))
    print(report(args))


if __name__ == "__main__":
    main()
