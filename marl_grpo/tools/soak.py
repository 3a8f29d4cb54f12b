"""`marl-grpo soak`: train for a given time and watch the process's memory for growth (a leak).

    marl-grpo soak --minutes 30 --tolerance-mb 64          # or: python scripts/soak.py ...

It runs an ordinary training run (`--train.*` options; by default the 2v2 preset with no step
limit) and samples the resident set size (and, on a GPU, the allocated CUDA memory) every
`interval` seconds. The baseline is the median of the samples in the second quarter of the run
(after warm-up, caches and the first checkpoint); the end is the median of the last quarter. It
prints the curve and exits non-zero if the end exceeds the baseline by more than the tolerance.
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from marl_grpo.rl import TrainConfig, preset, train


def rss_mb() -> float:
    """The current resident set size of this process (Linux: /proc/self/statm)."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * 4096 / 2**20


@dataclass
class SoakConfig:
    """Settings of `marl-grpo soak`."""

    minutes: float = 30.0
    """how long to train"""
    interval: float = 10.0
    """seconds between two memory samples"""
    tolerance_mb: float = 64.0
    """allowed growth of the end over the baseline (resident set, and CUDA allocations on a GPU)"""
    train: TrainConfig = field(default_factory=lambda: dataclasses.replace(
        preset("2v2"), name="soak", max_minutes=0.0, total_env_steps=10**12, progress=False))
    """the training run (its max_minutes is set to `minutes`)"""

    def validate(self) -> None:
        self.train.validate()
        if not (self.minutes > 0 and self.interval > 0 and self.tolerance_mb >= 0):
            raise ValueError("minutes and interval must be > 0 and tolerance_mb >= 0")


def run_soak(cfg: SoakConfig) -> dict[str, float]:
    """Train, sample memory, print the curve and the verdict; returns the figures."""
    samples: list[tuple[float, float, float]] = []  # (seconds, RSS MB, CUDA MB)
    start = time.perf_counter()
    cuda = torch.cuda.is_available() and cfg.train.device != "cpu"

    def sample(_step: int) -> None:
        now = time.perf_counter() - start
        if not samples or now - samples[-1][0] >= cfg.interval:
            gpu = torch.cuda.memory_allocated() / 2**20 if cuda else 0.0
            samples.append((now, rss_mb(), gpu))
            print(f"{now:7.0f} s  RSS {samples[-1][1]:8.1f} MB  CUDA {gpu:8.1f} MB", flush=True)

    train(dataclasses.replace(cfg.train, max_minutes=cfg.minutes), on_iteration=sample)
    if len(samples) < 8:
        raise ValueError(f"only {len(samples)} samples: run longer or sample more often")
    quarter = len(samples) // 4
    result = {}
    for column, name in ((1, "rss"), (2, "cuda")):
        base = statistics.median(s[column] for s in samples[quarter:2 * quarter])
        end = statistics.median(s[column] for s in samples[-quarter:])
        result |= {f"{name}_baseline_mb": base, f"{name}_end_mb": end, f"{name}_growth_mb": end - base,
                   f"{name}_max_mb": max(s[column] for s in samples)}
    result["samples"] = len(samples)
    print(f"RSS: baseline {result['rss_baseline_mb']:.1f} MB, end {result['rss_end_mb']:.1f} MB, growth "
          f"{result['rss_growth_mb']:+.1f} MB, max {result['rss_max_mb']:.1f} MB over {len(samples)} samples")
    if cuda:
        print(f"CUDA: baseline {result['cuda_baseline_mb']:.1f} MB, end {result['cuda_end_mb']:.1f} MB, growth "
              f"{result['cuda_growth_mb']:+.1f} MB")
    grown = [n for n in ("rss", "cuda") if result[f"{n}_growth_mb"] > cfg.tolerance_mb]
    if grown:
        raise SystemExit(f"marl-grpo soak: memory grew beyond {cfg.tolerance_mb} MB ({', '.join(grown)})")
    print(f"soak: flat within {cfg.tolerance_mb} MB")
    return result
