"""Confidence intervals of match results: a rate (wins out of matches) and a mean over matches.

Both the soccer scoring API (`marl_grpo.rl.score`) and the LLM line-up evaluation
(`marl_grpo.llm.matches`) report them, so they live here, below both modes. Aggregates over runs
(IQM, stratified bootstrap over seeds x tasks) are `marl_grpo.tools.stats`.
"""

from __future__ import annotations

import math
from statistics import NormalDist
from typing import Any

import numpy as np

Z95 = 1.959963984540054
"""the 97.5% quantile of the standard normal: two-sided 95% intervals"""
BOOTSTRAP_RESAMPLES = 2000
"""resamples of a bootstrap interval of a mean"""


def z_value(confidence: float) -> float:
    """The two-sided normal quantile of `confidence` (0.95 -> 1.95996...)."""
    if isinstance(confidence, bool) or not isinstance(confidence, (int, float)) or not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence={confidence!r} is invalid: expected a number in (0, 1), e.g. 0.95")
    return Z95 if confidence == 0.95 else NormalDist().inv_cdf(0.5 + confidence / 2.0)


def wilson_interval(successes: int, trials: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of a binomial proportion (Wilson 1927, "Probable inference, the law
    of succession, and statistical inference", JASA 22(158)), as recommended over the normal
    (Wald) interval by Brown, Cai & DasGupta 2001 ("Interval estimation for a binomial
    proportion", Statist. Sci. 16(2)): it stays inside [0, 1] and keeps its coverage near 0 and 1.

        centre = (p + z^2 / 2n) / (1 + z^2 / n),  half = z / (1 + z^2 / n) sqrt(p (1 - p) / n + z^2 / 4n^2)
    """
    if trials < 1 or not 0 <= successes <= trials:
        raise ValueError(f"successes={successes}, trials={trials}: expected 0 <= successes <= trials and trials >= 1")
    p, n = successes / trials, trials
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z / denom * math.sqrt(p * (1.0 - p) / n + z * z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def bootstrap_mean_interval(values: Any, seed: int, resamples: int = BOOTSTRAP_RESAMPLES,
                            level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of `values` [M] (Efron & Tibshirani 1993, "An
    Introduction to the Bootstrap", ch. 13): the matches are resampled with replacement
    `resamples` times and the (1 - level) / 2 tails of the resampled means cut off."""
    values = np.asarray(values, dtype=float)
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), (resamples, len(values)))].mean(1)
    low, high = np.percentile(means, [50 * (1 - level), 50 * (1 + level)])
    return float(low), float(high)


__all__ = ["BOOTSTRAP_RESAMPLES", "Z95", "bootstrap_mean_interval", "wilson_interval", "z_value"]
