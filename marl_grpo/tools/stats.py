"""Aggregate statistics over runs: interquartile mean, stratified-bootstrap intervals, probability
of improvement and performance profiles.

These are the statistics of Agarwal et al., "Deep Reinforcement Learning at the Edge of the
Statistical Precipice", NeurIPS 2021 (arXiv 2108.13264), following the definitions of their
reference implementation, rliable (github.com/google-research/rliable, `library.py` and
`metrics.py`):

- `iqm`: the interquartile mean, the mean of the middle 50% of all run x task scores
  (rliable's `aggregate_iqm`, i.e. `scipy.stats.trim_mean(scores, 0.25, axis=None)`);
- `stratified_bootstrap_ci`: a percentile interval from a bootstrap that resamples runs with
  replacement independently within each task (rliable's `StratifiedBootstrap`);
- `probability_of_improvement`: P(X > Y) of a run of X against a run of Y, ties counting 1/2,
  averaged over tasks (the Mann-Whitney U statistic / (n m), rliable's
  `probability_of_improvement`), with its interval from resampling X and Y independently
  (rliable's `StratifiedIndependentBootstrap`);
- `performance_profile`: the run-score distribution, the fraction of runs scoring above each
  threshold tau (rliable's `run_score_distribution`), with optional bootstrap bands.

Why not rliable itself: rliable 1.2.0 installs but `import rliable.library` fails with our stack
(its dependency arch 7.2.0 raises `TypeError: deprecate_kwarg() missing 1 required positional
argument` under pandas 3.1), and it pulls arch, statsmodels, seaborn and scipy. This module needs
numpy only. rliable's default is 50000 bootstrap replicates; ours is 2000, enough for the second
digit of a 95% interval.

Scores are `[runs, tasks]` arrays (a 1-D array is one task); "runs" are seeds, "tasks" are
environments or opponents. Runs may differ in number between algorithms, not between the tasks
of one algorithm.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, NamedTuple, Sequence

import numpy as np

IQM_CUT = 0.25
"""fraction trimmed from each end for the interquartile mean"""


class Interval(NamedTuple):
    """A point estimate and its bootstrap interval (floats, or arrays for a vector statistic)."""

    point: Any
    low: Any
    high: Any

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: floats, or lists for a vector statistic."""
        return {k: (v.tolist() if isinstance(v, np.ndarray) else float(v)) for k, v in self._asdict().items()}


def as_scores(scores: Any, name: str = "scores") -> np.ndarray:
    """`scores` as a float64 `[runs, tasks]` array (1-D input is one task), checked: non-empty,
    finite, at most 2-D."""
    array = np.asarray(scores, dtype=np.float64)
    if array.ndim == 1:
        array = array[:, None]
    if array.ndim != 2:
        raise ValueError(f"{name} has shape {array.shape}: expected [runs] or [runs, tasks]")
    if array.size == 0:
        raise ValueError(f"{name} has shape {array.shape}: expected at least one run and one task")
    if not np.all(np.isfinite(array)):
        bad = array[~np.isfinite(array)][0]
        raise ValueError(f"{name} holds a non-finite value ({bad}): expected finite scores")
    return array


def _check_confidence(confidence: float, reps: int) -> None:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence={confidence!r} is invalid: expected a number in (0, 1)")
    if isinstance(reps, bool) or not isinstance(reps, (int, np.integer)) or reps < 1:
        raise ValueError(f"reps={reps!r} is invalid: expected a positive integer")


def trimmed_mean(values: Any, proportion: float) -> float:
    """Mean of the flattened `values` without `int(proportion * n)` values at each end, as
    `scipy.stats.trim_mean(values, proportion, axis=None)` computes it."""
    if not 0.0 <= proportion < 0.5:
        raise ValueError(f"proportion={proportion!r} is invalid: expected a number in [0, 0.5)")
    flat = as_scores(np.ravel(values), "values")[:, 0]
    cut = int(proportion * flat.size)
    return float(np.sort(flat)[cut:flat.size - cut].mean())


def iqm(scores: Any) -> float:
    """Interquartile mean of all run x task scores: the 25% trimmed mean (Agarwal et al. 2021)."""
    return trimmed_mean(as_scores(scores), IQM_CUT)


def mean(scores: Any) -> float:
    """Mean of all run x task scores."""
    return float(as_scores(scores).mean())


def stratified_resample(scores: np.ndarray, rng: np.random.Generator, reps: int) -> np.ndarray:
    """`reps` bootstrap samples of a `[runs, tasks]` array, `[reps, runs, tasks]`: within each task
    the runs are drawn with replacement from that task's runs only."""
    runs, tasks = scores.shape
    rows = rng.integers(0, runs, size=(reps, runs, tasks))
    return scores[rows, np.arange(tasks)]


def _percentile_interval(point: Any, samples: np.ndarray, confidence: float) -> Interval:
    alpha = 100.0 * (1.0 - confidence) / 2.0
    low, high = np.percentile(samples, [alpha, 100.0 - alpha], axis=0)
    if np.ndim(point) == 0:
        return Interval(float(point), float(low), float(high))
    return Interval(np.asarray(point, dtype=np.float64), low, high)


def stratified_bootstrap_ci(scores: Any, statistic: Callable[[np.ndarray], Any], reps: int = 2000,
                            confidence: float = 0.95, seed: int = 0) -> Any:
    """`statistic` of `scores` and its percentile interval from a stratified bootstrap.

    scores: `[runs, tasks]` (or `[runs]`), or a dict algorithm -> such an array.
    statistic: maps a `[runs, tasks]` array to a float (or a 1-D array, e.g. a profile).
    Returns `Interval(point, low, high)`, or for a dict, a dict algorithm -> Interval.
    """
    if not callable(statistic):
        raise ValueError(f"statistic={statistic!r} is invalid: expected a function of a [runs, tasks] array")
    _check_confidence(confidence, reps)
    if isinstance(scores, Mapping):
        if not scores:
            raise ValueError("scores is an empty dict: expected algorithm -> [runs, tasks] scores")
        return {algo: stratified_bootstrap_ci(s, statistic, reps, confidence, seed) for algo, s in scores.items()}
    array = as_scores(scores)
    rng = np.random.default_rng(seed)
    samples = np.array([statistic(sample) for sample in stratified_resample(array, rng, reps)], dtype=np.float64)
    return _percentile_interval(statistic(array), samples, confidence)


def _improvement(x: np.ndarray, y: np.ndarray) -> float:
    """P(X > Y) + P(X = Y) / 2 per task (over all run pairs), averaged over tasks."""
    diff = x[:, None, :] - y[None, :, :]  # [runs_x, runs_y, tasks]
    per_task = ((diff > 0).sum((0, 1)) + 0.5 * (diff == 0).sum((0, 1))) / (x.shape[0] * y.shape[0])
    return float(per_task.mean())


def _check_pair(x: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
    x, y = as_scores(x, "x"), as_scores(y, "y")
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"x has {x.shape[1]} tasks and y has {y.shape[1]}: expected the same tasks")
    return x, y


def probability_of_improvement(x: Any, y: Any) -> float:
    """Probability that a run of X scores above a run of Y on the same task, ties counting 1/2,
    averaged over tasks: the Mann-Whitney U statistic over n m (Agarwal et al. 2021, rliable).

    x: `[runs_x, tasks]`; y: `[runs_y, tasks]` (the run counts may differ).
    """
    return _improvement(*_check_pair(x, y))


def probability_of_improvement_ci(x: Any, y: Any, reps: int = 2000, confidence: float = 0.95,
                                  seed: int = 0) -> Interval:
    """`probability_of_improvement(x, y)` and its percentile interval, resampling the runs of x
    and of y independently, each stratified by task."""
    x, y = _check_pair(x, y)
    _check_confidence(confidence, reps)
    rng = np.random.default_rng(seed)
    xs, ys = stratified_resample(x, rng, reps), stratified_resample(y, rng, reps)
    samples = np.array([_improvement(a, b) for a, b in zip(xs, ys)])
    return _percentile_interval(_improvement(x, y), samples, confidence)


def _taus(taus: Any) -> np.ndarray:
    array = np.asarray(taus, dtype=np.float64).ravel()
    if array.size == 0 or not np.all(np.isfinite(array)):
        raise ValueError(f"taus={taus!r} is invalid: expected a non-empty sequence of finite thresholds")
    return array


def performance_profile(scores: Any, taus: Any) -> np.ndarray:
    """Fraction of all run x task scores strictly above each threshold, `[len(taus)]`: the
    run-score distribution of Agarwal et al. (2021)."""
    array, thresholds = as_scores(scores), _taus(taus)
    return (array.ravel()[None, :] > thresholds[:, None]).mean(1)


def performance_profile_bands(scores: Any, taus: Any, reps: int = 2000, confidence: float = 0.95,
                              seed: int = 0) -> Interval:
    """`performance_profile` with its pointwise stratified-bootstrap bands: Interval of `[len(taus)]`
    arrays."""
    thresholds = _taus(taus)
    return stratified_bootstrap_ci(scores, lambda s: performance_profile(s, thresholds), reps, confidence, seed)


def summarize(scores_by_algo: Mapping[str, Any], reps: int = 2000, seed: int = 0,
              confidence: float = 0.95) -> dict[str, Any]:
    """The report's numbers, JSON-ready.

    Returns `{"algos": {algo: {"runs", "tasks", "mean": {point, low, high}, "iqm": {...}}},
    "improvement": [{"x", "y", "point", "low", "high"}, ...]}`, where each improvement entry is
    P(x > y) for a pair of algorithms in the given order (x before y; P(y > x) = 1 - P(x > y)).
    """
    if not isinstance(scores_by_algo, Mapping) or not scores_by_algo:
        raise ValueError("scores_by_algo is empty: expected a dict algorithm -> [runs, tasks] scores")
    arrays = {algo: as_scores(s, f"scores of {algo!r}") for algo, s in scores_by_algo.items()}
    out: dict[str, Any] = {"algos": {}, "improvement": [], "confidence": confidence, "reps": reps}
    for algo, array in arrays.items():
        out["algos"][algo] = {
            "runs": array.shape[0], "tasks": array.shape[1],
            "mean": stratified_bootstrap_ci(array, mean, reps, confidence, seed).as_dict(),
            "iqm": stratified_bootstrap_ci(array, iqm, reps, confidence, seed).as_dict(),
        }
    names = list(arrays)
    for i, first in enumerate(names):
        for second in names[i + 1:]:
            interval = probability_of_improvement_ci(arrays[first], arrays[second], reps, confidence, seed)
            out["improvement"].append({"x": first, "y": second, **interval.as_dict()})
    return out


def format_interval(interval: Interval | Mapping[str, float], fmt: str = ".3f") -> str:
    """`point [low, high]` for a table cell, e.g. `0.512 [0.401, 0.620]` (fmt `.1%` for percents)."""
    if isinstance(interval, Mapping):
        interval = Interval(interval["point"], interval["low"], interval["high"])
    return f"{interval.point:{fmt}} [{interval.low:{fmt}}, {interval.high:{fmt}}]"


__all__: Sequence[str] = ["Interval", "as_scores", "trimmed_mean", "iqm", "mean", "stratified_resample",
                          "stratified_bootstrap_ci", "probability_of_improvement",
                          "probability_of_improvement_ci", "performance_profile", "performance_profile_bands",
                          "summarize", "format_interval"]
