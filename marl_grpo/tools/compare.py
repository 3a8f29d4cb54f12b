"""`marl-grpo compare`: GRPO against the PPO-with-critic baseline, several seeds, one budget.

    marl-grpo compare                                  # runs/compare-2v2/{grpo,ppo}_seed{1,2,3}/
    marl-grpo compare --name big --jobs 4 --train.threads 4 --train.total-env-steps 40000000
    marl-grpo compare --name 2v2 --report-only         # redraw compare.png / compare.md
    marl-grpo compare --algo-args.grpo="--group-size 16"   # one algorithm's own options
    marl-grpo compare --name nav --train.env vmas:navigation --train.env-kwargs n_agents=2
    tensorboard --logdir runs/compare-2v2              # the curves overlay

Both algorithms get the same env, opponent, budget in env steps and every shared setting (the
`--train.*` options); `--algo-args.<algo>` changes settings for that algorithm only (its own
tuning; every learner of `marl_grpo.rl.LEARNERS` has one, by default its `compare_args`). Runs
write TensorBoard logs and checkpoints as `marl-grpo train` does; a run that was cut off is
resumed and a finished one is skipped, so the command can be re-run after a crash.

The report is read back from the TensorBoard event files (what you see is what was logged):

- `compare.png`: mean and 95% interval over seeds (Student t) of `eval/win_rate` against env
  steps and against wall-clock time, and of `charts/episodic_return` against env steps;
- `compare.md`: per algorithm, the final win rate (mean +- 95% interval), the env steps and wall
  time to reach 50% and 80% win rate, agent-steps/s, parameters and peak memory;
- the aggregate statistics of Agarwal et al., "Deep Reinforcement Learning at the Edge of the
  Statistical Precipice" (NeurIPS 2021), from `marl_grpo.tools.stats`: the mean and the
  interquartile mean (IQM) of the seeds' win rates with 95% stratified-bootstrap intervals, and the
  probability of improvement of each algorithm over each other, at 25%, 50% and 100% of the
  env-step budget and of the wall time (in `compare.md` and `compare.json`);
- `compare_profile.png`: the performance profile at the end of the budget, the fraction of runs
  whose final win rate is above each threshold, with bootstrap bands.

On another env than soccer (`--train.env vmas:...` or `pettingzoo:...`, docs/other-envs.md) the
runs log no win rate: the report's metric is `eval/return`, the mean episode return on held-out
seeds (any sign and scale), in place of `eval/win_rate` everywhere above (`METRICS`; with
`--report-only` it is the one of the env the runs' result.json names). Its numbers are printed
with two decimals, the rows "to 50% / 80% wins" are left out (a return has no fixed scale to put
thresholds on), the profile's thresholds span the observed final returns and the curves have no
fixed y range. `compare.json` names its keys after the metric, `final_<key>`, `final_<key>_ci`,
`final_<key>s`, `final_<key>_mean`, `final_<key>_iqm` with `<key>` `win_rate` or `return`
(`steps_to_50%` ... only for the win rate); `at` and `improvement` are the same for both.
"""

from __future__ import annotations

import concurrent.futures as futures
import dataclasses
import json
import multiprocessing
import queue
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from tqdm import tqdm

from marl_grpo.agents.checkpoint import read_config
from marl_grpo.rl import ALGOS, LEARNERS, PRESETS, TrainConfig, preset, train
from marl_grpo.run.checkpoint import load_trainer_state
from marl_grpo.run.config import check_int, resume_config
from marl_grpo.run.files import CHECKPOINT_DIR, RESULT_FILE
from marl_grpo.run.presets import parse_config, pick_preset
from marl_grpo.tools import stats

T_975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262,
         10: 2.228, 12: 2.179, 15: 2.131, 20: 2.086, 30: 2.042}
"""two-sided 95% Student t quantiles t_{0.975, df} (any statistics table, e.g. NIST/SEMATECH 1.3.6.7.2)"""
THRESHOLDS = (0.5, 0.8)
FRACTIONS = (0.25, 0.5, 1.0)
"""fractions of the env-step and wall-time budget where the aggregate statistics are reported"""
BOOTSTRAP_REPS = 2000
"""bootstrap replicates of every interval of the report (fixed seed 0: a redrawn report is the same)"""


class Metric(NamedTuple):
    """What the report compares the runs on: one evaluation tag and how to show it."""

    tag: str
    """the TensorBoard tag of the evaluation"""
    key: str
    """its name in compare.json's keys (`final_<key>`, ...)"""
    label: str
    """its name in the table and the plots"""
    axis: str
    """the y-axis label of its curves"""
    profile_axis: str
    """the x-axis label of its performance profile (the thresholds τ)"""
    fmt: str
    """format of a mean or an interval bound"""
    seed_fmt: str
    """format of one seed's value"""
    thresholds: tuple[float, ...]
    """values whose first reach (env steps, wall time) the table gives"""
    ylim: tuple[float, float] | None
    """fixed y range of its curves, and of the profile's thresholds (None: matplotlib's, and the
    thresholds span the observed final values)"""


METRICS = {
    "win_rate": Metric("eval/win_rate", "win_rate", "win rate", "win rate vs the evaluation bot",
                       "win rate τ against the evaluation bot", ".1%", ".0%", THRESHOLDS, (-0.02, 1.02)),
    "return": Metric("eval/return", "return", "return", "mean episode return (held-out seeds)",
                     "mean episode return τ (held-out seeds)", ".2f", ".2f", (), None),
}
"""the soccer runs' win rate against the evaluation bot, and another env's mean episode return"""


def metric_for(env: str) -> Metric:
    """The metric the runs on `env` (a `TrainConfig.env`) are compared on."""
    return METRICS["win_rate" if env == "soccer" else "return"]


def _compare_train(**overrides: Any) -> TrainConfig:
    """`--preset 2v2` with one learning rate for both algorithms, 1e-3: the
    GRPO preset's 6e-3 was never tried with PPO's critic (docs/results.md)"""
    return dataclasses.replace(preset("2v2"), name="", max_minutes=0.0, progress=False, learning_rate=1e-3,
                               **overrides)


@dataclass
class CompareConfig:
    """Settings of `marl-grpo compare`."""

    name: str = "2v2"
    """the comparison's name: runs go to `<train.log_dir>/compare-<name>/<algo>_seed<k>/`"""
    seeds: int = 3
    """seeds per algorithm (1, 2, ... seeds)"""
    algos: tuple[str, ...] = ALGOS
    """algorithms to run"""
    jobs: int = 1
    """runs at a time; the `train.threads` CPU threads are shared among them"""
    report_only: bool = False
    """do not train: redraw compare.png and compare.md from the runs already there"""
    dry_run: bool = False
    """do not train: print one `marl-grpo train` command per run (algorithm x seed), to send to any
    scheduler (SLURM, Ray, a loop over machines; prefix `torchrun ... -m marl_grpo` for several
    processes each); then `--report-only` on the shared folder writes the report"""
    algo_args: dict[str, str] = field(default_factory=lambda: {name: cls.compare_args for name, cls in LEARNERS.items()})
    """extra `marl-grpo train` options of one algorithm's runs only, e.g. `--algo-args.grpo="--group-size 16"`
    (default: PPO gets 4 epochs, its best in a small sweep, where GRPO keeps the shared 2)"""
    train: TrainConfig = field(default_factory=lambda: _compare_train(total_env_steps=10_000_000, eval_every=10,
                                                                      eval_matches=100))
    """settings shared by both algorithms (env, opponent, budget, optimiser, evaluation)"""

    def validate(self) -> None:
        self.train.validate()
        unknown = [a for a in self.algos if a not in ALGOS]
        if unknown or not self.algos:
            raise ValueError(f"algos={self.algos!r} is invalid: expected a non-empty subset of {ALGOS}")
        unknown = [a for a in self.algo_args if a not in ALGOS]
        if unknown:
            raise ValueError(f"algo_args names {unknown}: expected algorithms among {ALGOS}")
        for name in ("seeds", "jobs"):
            check_int(self, name)


COMPARE_PRESETS: dict[str, CompareConfig] = {
    # the comparison on docs/results.md: 2v2 against the positional team bot, 3 seeds, 10M env steps each
    "2v2": CompareConfig(jobs=2),
    # end-to-end test size
    "tiny": CompareConfig(name="tiny", seeds=2, train=dataclasses.replace(preset("tiny"), name="", progress=False)),
}


def compare_preset(name: str) -> CompareConfig:
    return pick_preset(COMPARE_PRESETS, name)


# --------------------------------------------------------------------------- runs
def run_configs(cfg: CompareConfig) -> list[TrainConfig]:
    """The TrainConfig of every run, shared settings first, then the algorithm's own options."""
    cfg.validate()
    root = Path(cfg.train.log_dir) / f"compare-{cfg.name}"
    threads = max(1, cfg.train.threads // min(cfg.jobs, cfg.seeds * len(cfg.algos)))
    # the settings of the env that the user changed count as given: --max-cycles then overrides the
    # task's own time limit, and a soccer option with another env (or --env-kwargs with soccer) is refused
    env_fields = {"max_cycles", *(name for row in TrainConfig.USED_BY if row.setting == "env" for name in row.fields)}
    given = cfg.train.user_fields() & env_fields
    runs = []
    for algo in cfg.algos:
        options = cfg.algo_args.get(algo, "")
        extra = shlex.split(options)
        for seed in range(1, cfg.seeds + 1):
            # the shared settings go to every run, so one that this algorithm does not read is not
            # refused here (not given); its own options (algo_args) are checked as given
            base = dataclasses.replace(cfg.train, algo=algo, seed=seed, name=f"{algo}_seed{seed}",
                                       log_dir=str(root), threads=threads, progress=False, resume=False,
                                       given=given)
            if extra:
                try:
                    base = parse_config(TrainConfig, extra, f"--algo-args.{algo}", default=base)
                except SystemExit as err:
                    raise ValueError(f"--algo-args.{algo} {options!r} holds an invalid `marl-grpo train` option "
                                     f"(see marl-grpo train --help): {err}") from None
                if base.algo != algo:
                    raise ValueError(f"--algo-args.{algo} may not change the algorithm (got --algo {base.algo})")
                base.given = base.given | given
            runs.append(base)
    return runs


def train_command(cfg: TrainConfig, base: str | None = None) -> str:
    """The `marl-grpo train` command line of `cfg`: `--preset base` (default: the preset `cfg` came
    from, else 2v2) and every field that differs from that preset (parsing it gives `cfg` back),
    but those this run does not read (`TrainConfig.USED_BY`: a shared GRPO option in a PPO run),
    which `marl-grpo train` would refuse."""
    base = base or (cfg.preset if cfg.preset in PRESETS else "2v2")
    default = PRESETS[base]
    unread = {name for row in cfg.USED_BY if not row.used(cfg) for name in row.fields}
    args = ["marl-grpo", "train", "--preset", base]
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if not f.compare or f.name in unread or (value == getattr(default, f.name) and f.name not in (cfg.given or ())):
            continue  # compare=False: not settings; a given setting is written even at the preset's value
        flag = "--" + f.name.replace("_", "-")
        if isinstance(value, bool):
            args.append(flag if value else f"--no-{flag[2:]}")
        elif isinstance(value, tuple):  # --env-kwargs N=3 max_cycles=25
            args += [flag, *map(str, value)]
        else:
            args += [flag, str(value)]
    return shlex.join(args)


def _run_one(cfg: TrainConfig, progress: Any) -> dict[str, Any]:
    """Train one run in a worker process, resuming it if it was cut off (the run writes its result)."""
    run_dir = Path(cfg.log_dir) / cfg.name
    ckpt = run_dir / CHECKPOINT_DIR
    if ckpt.exists():
        # the iterations of the run as it was saved: another env's episode length (and so the
        # iteration's env steps) is known only once the env is made
        if (run_dir / RESULT_FILE).exists() and load_trainer_state(ckpt)["iteration"] >= \
                resume_config(cfg, read_config(ckpt).get("train", {}), cfg.given).iterations:
            result = json.loads((run_dir / RESULT_FILE).read_text())
            progress.put((cfg.name, result["global_step"]))
            return result
        cfg = dataclasses.replace(cfg, resume=True)
    return train(cfg, on_iteration=lambda step: progress.put((cfg.name, step)))


def run_compare(cfg: CompareConfig) -> dict[str, Any]:
    """Train every run (unless `report_only`), then write compare.png and compare.md."""
    runs = run_configs(cfg)
    root = Path(runs[0].log_dir)
    if cfg.dry_run:
        for run in runs:
            print(train_command(run))
        return {}
    if not cfg.report_only:
        root.mkdir(parents=True, exist_ok=True)
        (root / "compare_config.json").write_text(json.dumps(dataclasses.asdict(cfg), indent=1, default=str))
        # another env's episode length, hence its steps per iteration, is known once it is made: its bar
        # counts to the budget in env steps, the runs' last iteration rounding it
        budget = {r.name: r.iterations * r.env_steps_per_iteration if r.env == "soccer" else r.total_env_steps
                  for r in runs}
        done = dict.fromkeys(budget, 0)
        context = multiprocessing.get_context("spawn")
        with context.Manager() as manager, futures.ProcessPoolExecutor(
                max_workers=cfg.jobs, mp_context=context, max_tasks_per_child=1) as pool:
            progress = manager.Queue()
            pending = {pool.submit(_run_one, r, progress): r.name for r in runs}
            bar = tqdm(total=sum(budget.values()), unit="step", unit_scale=True, desc=f"compare-{cfg.name}")
            while pending:
                finished, _ = futures.wait(pending, timeout=1.0, return_when=futures.FIRST_COMPLETED)
                try:
                    while True:
                        name, step = progress.get_nowait()
                        done[name] = min(step, budget[name])
                except queue.Empty:
                    pass
                bar.update(sum(done.values()) - bar.n)
                running = sorted(n for n in pending.values() if 0 < done[n] < budget[n])
                bar.set_postfix_str(", ".join(running), refresh=False)
                for future in finished:
                    name = pending.pop(future)
                    future.result()  # re-raise a failed run's error here
                    done[name] = budget[name]
            bar.update(sum(done.values()) - bar.n)
            bar.close()
    # report only: the runs' own env decides (the command line's --train.env may be left at soccer)
    return write_report(root, cfg.algos, None if cfg.report_only else metric_for(cfg.train.env))


# --------------------------------------------------------------------------- report
def read_scalars(run_dir: Path, tag: str) -> tuple[np.ndarray, np.ndarray]:
    """(steps, values) of one scalar tag of a run's event files ([] if absent)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    accumulator.Reload()
    if tag not in accumulator.Tags()["scalars"]:
        return np.zeros(0), np.zeros(0)
    events = {e.step: e.value for e in accumulator.Scalars(tag)}  # a resumed run may repeat a step
    steps = np.array(sorted(events), dtype=np.float64)
    return steps, np.array([events[s] for s in sorted(events)], dtype=np.float64)


def mean_ci(values: np.ndarray, axis: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Mean and half-width of the two-sided 95% Student t interval over `axis` (0 for one sample)."""
    values = np.asarray(values, dtype=np.float64)
    n = values.shape[axis]
    mean = values.mean(axis)
    if n < 2:
        return mean, np.zeros_like(mean)
    df = n - 1
    t = T_975[max(k for k in T_975 if k <= df)] if df <= 30 else 1.96
    return mean, t * values.std(axis, ddof=1) / np.sqrt(n)


def _on_grid(xs: list[np.ndarray], ys: list[np.ndarray], points: int = 100) -> tuple[np.ndarray, np.ndarray]:
    """Curves of every seed linearly interpolated on a common x grid (up to the shortest run)."""
    end = min(x[-1] for x in xs)
    grid = np.linspace(min(x[0] for x in xs), end, points)
    return grid, np.stack([np.interp(grid, x, y) for x, y in zip(xs, ys)])


def _first_reach(steps: np.ndarray, values: np.ndarray, threshold: float) -> float:
    hit = np.nonzero(values >= threshold)[0]
    return float(steps[hit[0]]) if hit.size else float("nan")


def _finished_runs(root: Path, algos: tuple[str, ...]) -> list[tuple[str, Path]]:
    """(algorithm, folder) of every run under `root` that wrote its result.json, in seed order."""
    return [(algo, run_dir) for algo in algos
            for run_dir in sorted(root.glob(f"{algo}_seed*"), key=lambda p: int(p.name.rsplit("seed", 1)[1]))
            if (run_dir / RESULT_FILE).exists()]


def saved_metric(root: Path, algos: tuple[str, ...]) -> Metric:
    """The metric of the env that the finished runs under `root` name in their result.json
    (`config.env`; soccer where a result has none); an error if they name several."""
    envs = {json.loads((run_dir / RESULT_FILE).read_text()).get("config", {}).get("env", "soccer")
            for _, run_dir in _finished_runs(root, algos)}
    if len(envs) > 1:
        raise ValueError(f"the runs under {str(root)!r} trained on several envs, {sorted(envs)}: "
                         "compare runs of one env (one --name per env)")
    return metric_for(envs.pop() if envs else "soccer")


def load_runs(root: Path, algos: tuple[str, ...],
              metric: Metric = METRICS["win_rate"]) -> dict[str, list[dict[str, Any]]]:
    """Every finished run under `root`, per algorithm: its logged curves (`score`: the metric's) and
    its result.json."""
    found: dict[str, list[dict[str, Any]]] = {}
    for algo, run_dir in _finished_runs(root, algos):
        steps, score = read_scalars(run_dir, metric.tag)
        wall_steps, wall = read_scalars(run_dir, "eval/wall_time")
        ret_steps, ret = read_scalars(run_dir, "charts/episodic_return")
        if steps.size == 0:
            continue
        wall_at = dict(zip(wall_steps, wall))
        found.setdefault(algo, []).append({
            "name": run_dir.name, "steps": steps, "score": score,
            "wall": np.array([wall_at.get(s, np.nan) for s in steps]),
            "ret_steps": ret_steps, "ret": ret,
            "result": json.loads((run_dir / RESULT_FILE).read_text()),
        })
    if not found:
        raise FileNotFoundError(f"no finished runs of {algos} with {metric.tag} logged under {str(root)!r}")
    return found


def _value_at(xs: np.ndarray, ys: np.ndarray, x: float) -> float:
    """`ys` at `x`, linearly interpolated between the two evaluations around it (as the curves are
    drawn); NaN outside the evaluated range, where no value was measured."""
    known = np.isfinite(xs)
    xs, ys = xs[known], ys[known]
    if xs.size == 0 or not xs[0] <= x <= xs[-1]:
        return float("nan")
    return float(np.interp(x, xs, ys))


def aggregate_statistics(runs: dict[str, list[dict[str, Any]]], reps: int = BOOTSTRAP_REPS,
                         seed: int = 0) -> dict[str, dict[str, Any]]:
    """Per algorithm, the scores (win rates or returns: `load_runs`) of its seeds at 25%, 50% and
    100% (`FRACTIONS`) of the common env-step budget (`steps_25%`, ...) and of the common wall time
    (`wall_25%`, ...), where the common budget is the shortest run's last evaluation, so that every
    run has a value there:

    `{"at": {key: {"x", "runs", "mean": {point, low, high}, "iqm": {...}}},
      "improvement": {other_algo: {key: {point, low, high}}}}`

    with 95% stratified-bootstrap intervals (`marl_grpo.tools.stats`, Agarwal et al. 2021);
    `improvement` is P(this algorithm's run > the other's run), ties 1/2. A run without an
    evaluation at a point is left out there (`runs` counts those kept); with none, no interval.
    """
    all_runs = [s for seeds in runs.values() for s in seeds]
    step_end = min(float(s["steps"][-1]) for s in all_runs)
    wall_ends = [s["wall"][np.isfinite(s["wall"])] for s in all_runs]
    # a run that logged no wall time leaves the wall-time points undefined for all
    wall_end = min(float(w[-1]) for w in wall_ends) if all(w.size for w in wall_ends) else float("nan")
    points = {f"{axis}_{fraction:.0%}": (axis, fraction * end)
              for axis, end in (("steps", step_end), ("wall", wall_end)) for fraction in FRACTIONS}
    out: dict[str, dict[str, Any]] = {algo: {"at": {}, "improvement": {b: {} for b in runs if b != algo}}
                                      for algo in runs}
    names = list(runs)
    for key, (axis, x) in points.items():
        scores = {}
        for algo, seeds in runs.items():
            values = np.array([_value_at(s[axis], s["score"], x) for s in seeds])
            scores[algo] = values[np.isfinite(values)]
            entry: dict[str, Any] = {"x": x, "runs": int(scores[algo].size)}
            if scores[algo].size:
                entry["mean"] = stats.stratified_bootstrap_ci(scores[algo], stats.mean, reps, seed=seed).as_dict()
                entry["iqm"] = stats.stratified_bootstrap_ci(scores[algo], stats.iqm, reps, seed=seed).as_dict()
            out[algo]["at"][key] = entry
        for i, first in enumerate(names):
            for second in names[i + 1:]:
                if not (scores[first].size and scores[second].size):
                    out[first]["improvement"][second][key] = out[second]["improvement"][first][key] = None
                    continue
                poi = stats.probability_of_improvement_ci(scores[first], scores[second], reps, seed=seed)
                out[first]["improvement"][second][key] = poi.as_dict()
                # P(Y > X) = 1 - P(X > Y) with ties counted 1/2, replicate by replicate
                out[second]["improvement"][first][key] = {"point": 1.0 - poi.point, "low": 1.0 - poi.high,
                                                          "high": 1.0 - poi.low}
    return out


def _draw_profile(root: Path, finals: dict[str, np.ndarray], metric: Metric, reps: int = BOOTSTRAP_REPS) -> None:
    """`compare_profile.png`: the fraction of runs whose final score is above each threshold
    (the run-score distribution of Agarwal et al. 2021), with 95% stratified-bootstrap bands; the
    thresholds span [0, 1] for a win rate, the observed final values for a return (no fixed scale)."""
    import matplotlib.pyplot as plt

    low, high = 0.0, 1.0
    if metric.ylim is None:
        observed = np.concatenate(list(finals.values()))
        low, high = observed.min(), observed.max()
        if low == high:  # every run ended on one value: a unit range around it shows the step
            low, high = low - 0.5, high + 0.5
    taus = np.linspace(low, high, 101)
    fig, ax = plt.subplots(figsize=(5.5, 4.2))
    for algo, values in finals.items():
        color = LEARNERS[algo].color if algo in LEARNERS else None
        band = stats.performance_profile_bands(values, taus, reps)
        ax.step(taus, band.point, where="post", color=color, label=f"{algo.upper()} ({values.size} runs)")
        ax.fill_between(taus, band.low, band.high, step="post", color=color, alpha=0.2)
    ax.set_xlabel(metric.profile_axis)
    ax.set_ylabel(f"fraction of runs with final {metric.label} > τ")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper right")
    ax.set_title(f"{root.name}: performance profile at the end of the budget", fontsize=10)
    fig.tight_layout()
    fig.savefig(root / "compare_profile.png", dpi=90)
    plt.close(fig)


def write_report(root: Path, algos: tuple[str, ...], metric: Metric | None = None) -> dict[str, Any]:
    """Write `compare.png`, `compare_profile.png`, `compare.md` and `compare.json` into `root`;
    return the table's numbers (per algorithm; `aggregate_statistics` adds `at` and `improvement`).
    `metric`: what the runs are compared on (None: the one of the env the runs name, `saved_metric`)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metric = saved_metric(root, algos) if metric is None else metric
    runs = load_runs(root, algos, metric)
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    summary: dict[str, Any] = {}
    for algo, seeds in runs.items():
        color = LEARNERS[algo].color if algo in LEARNERS else None
        label = f"{algo.upper()} ({len(seeds)} seeds)"
        panels = [
            (axes[0], [s["steps"] for s in seeds], [s["score"] for s in seeds]),
            (axes[1], [s["wall"] / 60 for s in seeds], [s["score"] for s in seeds]),
            (axes[2], [s["ret_steps"] for s in seeds], [s["ret"] for s in seeds]),
        ]
        for ax, xs, ys in panels:
            if any(x.size == 0 for x in xs):
                continue
            grid, values = _on_grid(xs, ys)
            mean, half = mean_ci(values)
            ax.plot(grid, mean, color=color, label=label)
            ax.fill_between(grid, mean - half, mean + half, color=color, alpha=0.2)
        finals = np.array([s["score"][-1] for s in seeds])
        final_mean, final_half = mean_ci(finals)
        final = f"final_{metric.key}"
        row: dict[str, Any] = {"seeds": len(seeds), final: float(final_mean),
                               f"{final}_ci": float(final_half), f"{final}s": finals.tolist(),
                               f"{final}_mean": stats.stratified_bootstrap_ci(finals, stats.mean,
                                                                              BOOTSTRAP_REPS).as_dict(),
                               f"{final}_iqm": stats.stratified_bootstrap_ci(finals, stats.iqm,
                                                                             BOOTSTRAP_REPS).as_dict()}
        for threshold in metric.thresholds:
            steps = np.array([_first_reach(s["steps"], s["score"], threshold) for s in seeds])
            walls = np.array([_first_reach(s["wall"], s["score"], threshold) for s in seeds])
            row[f"steps_to_{threshold:.0%}"] = steps.tolist()
            row[f"wall_to_{threshold:.0%}"] = walls.tolist()
        for key in ("agent_steps_per_s", "peak_memory_mb", "wall_time", "global_step"):
            row[key] = float(np.mean([s["result"][key] for s in seeds]))
        first = seeds[0]["result"]
        row["parameters"] = {k: v for k, v in first.items() if k.endswith("_parameters")}
        summary[algo] = row
    titles = [f"{metric.tag} vs env steps", f"{metric.tag} vs wall-clock time", "charts/episodic_return"]
    steps = "env steps (match-steps)" if metric.key == "win_rate" else "env steps"  # a soccer env step is a match-step
    xlabels = [steps, "wall-clock minutes (evaluation included)", steps]
    for ax, title, xlabel in zip(axes, titles, xlabels):
        ax.set_title(title)
        ax.set_xlabel(xlabel)
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right")
    axes[0].set_ylabel(metric.axis)
    if metric.ylim is not None:
        axes[0].set_ylim(*metric.ylim)
        axes[1].set_ylim(*metric.ylim)
    fig.suptitle(f"{root.name}: mean and 95% interval over seeds")
    fig.tight_layout()
    fig.savefig(root / "compare.png", dpi=90)
    plt.close(fig)
    _draw_profile(root, {algo: np.array(row[f"final_{metric.key}s"]) for algo, row in summary.items()}, metric)
    for algo, extra in aggregate_statistics(runs).items():
        summary[algo].update(extra)
    (root / "compare.md").write_text(_table(summary, metric))
    (root / "compare.json").write_text(json.dumps(summary, indent=1))
    return summary


def final_line(algo: str, row: dict[str, Any]) -> str:
    """One algorithm's final score (mean ± 95% interval) in one line, from its row of `write_report`."""
    metric = next(m for m in METRICS.values() if f"final_{m.key}" in row)
    final = f"final_{metric.key}"
    return f"{algo}: final {metric.label} {row[final]:{metric.fmt}} ± {row[f'{final}_ci']:{metric.fmt}}"


def _reach_cell(values: list[float], scale: float, unit: str) -> str:
    reached = [v for v in values if v == v]
    if not reached:
        return f"not reached (0/{len(values)})"
    return f"{np.mean(reached) / scale:.1f}{unit} ({len(reached)}/{len(values)} seeds)"


def _table(summary: dict[str, Any], metric: Metric = METRICS["win_rate"]) -> str:
    lines = ["| | " + " | ".join(a.upper() for a in summary) + " |", "|---" * (len(summary) + 1) + "|"]

    def add(label: str, cells: list[str]) -> None:
        lines.append(f"| {label} | " + " | ".join(cells) + " |")

    rows = list(summary.values())
    add("seeds", [str(r["seeds"]) for r in rows])
    final, label, fmt = f"final_{metric.key}", f"final {metric.label}", metric.fmt
    add(f"{label} (mean ± 95% CI)", [f"{r[final]:{fmt}} ± {r[f'{final}_ci']:{fmt}}" for r in rows])
    add(f"{label} per seed", [", ".join(f"{v:{metric.seed_fmt}}" for v in r[f"{final}s"]) for r in rows])
    if all(f"{final}_iqm" in r for r in rows):
        add(f"{label}, mean [95% bootstrap CI]", [stats.format_interval(r[f"{final}_mean"], fmt) for r in rows])
        add(f"{label}, IQM [95% bootstrap CI]", [stats.format_interval(r[f"{final}_iqm"], fmt) for r in rows])
    for threshold in metric.thresholds:
        add(f"env steps to {threshold:.0%} wins", [_reach_cell(r[f"steps_to_{threshold:.0%}"], 1e6, "M") for r in rows])
        add(f"wall time to {threshold:.0%} wins", [_reach_cell(r[f"wall_to_{threshold:.0%}"], 60, " min") for r in rows])
    add("env steps per run", [f"{r['global_step'] / 1e6:.1f}M" for r in rows])
    add("wall time per run", [f"{r['wall_time'] / 60:.1f} min" for r in rows])
    add("agent-steps/s (training)", [f"{r['agent_steps_per_s'] / 1e3:.0f}k" for r in rows])
    add("parameters", [", ".join(f"{k.split('_')[0]} {v:,}" for k, v in r["parameters"].items()) for r in rows])
    add("peak memory", [f"{r['peak_memory_mb']:.0f} MB" for r in rows])
    if all("at" in r for r in rows):
        lines += ["", *_aggregate_table(summary, metric)]
    return "\n".join(lines) + "\n"


def _aggregate_table(summary: dict[str, Any], metric: Metric) -> list[str]:
    """The scores' IQM and mean with intervals, and P(A > B) for each pair, at each budget point."""
    names = list(summary)
    pairs = [(a, b) for i, a in enumerate(names) for b in names[i + 1:]]
    header = ["budget point", *(f"{a.upper()} IQM" for a in names), *(f"{a.upper()} mean" for a in names),
              *(f"P({a.upper()} > {b.upper()})" for a, b in pairs)]
    lines = [f"Aggregate statistics (Agarwal et al., NeurIPS 2021): the seeds' {metric.label}s at a fraction of the "
             "common budget (the shortest run's last evaluation), interquartile mean (IQM) and mean with 95% "
             f"stratified-bootstrap intervals ({BOOTSTRAP_REPS} replicates), and the probability that a run of "
             "one algorithm beats a run of the other there (ties 1/2).", "",
             "| " + " | ".join(header) + " |", "|---" * len(header) + "|"]

    def cell(interval: dict[str, float] | None, fmt: str) -> str:
        return stats.format_interval(interval, fmt) if interval else "n/a"

    for key, point in summary[names[0]]["at"].items():
        axis, fraction = key.split("_")
        x = point["x"]
        if axis == "wall":
            where = f"{x / 60:.1f} min" if x == x else "not logged"
            cells = [f"{fraction} of wall time ({where})"]
        else:
            cells = [f"{fraction} of env steps ({x / 1e6:.2f}M)" if x >= 1e6 else f"{fraction} of env steps ({x:,.0f})"]
        for stat in ("iqm", "mean"):
            cells += [cell(summary[a]["at"][key].get(stat), metric.fmt) for a in names]
        cells += [cell(summary[a]["improvement"][b][key], ".2f") for a, b in pairs]
        lines.append("| " + " | ".join(cells) + " |")
    return lines
