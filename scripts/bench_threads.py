"""How the OpenMP wait policy and the torch thread count change the speed of a training iteration,
on an idle machine and next to one competing CPU-bound process.

    python scripts/bench_threads.py                        # ~5 minutes on 2 cores
    python scripts/bench_threads.py --reps 3 --policies ACTIVE,PASSIVE,unset,auto
    python scripts/bench_threads.py --policies ACTIVE,spin=30k,spin=3M --threads 2

Each measurement is a fresh subprocess (libgomp reads OMP_WAIT_POLICY and GOMP_SPINCOUNT once, when
torch loads it) that builds the `quick` preset's GRPO trainer and times `--iterations` whole
iterations (rollout, advantages, update) after one warm-up iteration. The configurations run
interleaved, in a new random order each repetition; "busy" runs `--competitors` (default 1)
`while True: pass` Python processes beside the worker for the whole measurement. The table gives, per configuration, the
median seconds per iteration over all timed iterations, the spread (lowest and highest per-run
median), the ratio to the best policy of the same threads x contention column, and the share of a
core the process burns while it sleeps after a parallel op (about 1.0 = workers spin, 0 = they
sleep: it shows that the policy really took effect). The machines this runs on are shared: the
1-minute load average is printed for every run; compare ratios measured side by side.

Policies (`--policies`, comma-separated):
    ACTIVE, PASSIVE         OMP_WAIT_POLICY set by hand
    unset                   neither variable: the OpenMP runtime's default
    spin=N                  GOMP_SPINCOUNT=N only (e.g. 30k, 3M; GNU libgomp only)
    auto, active, passive, default
                            `marl-grpo --omp-wait <value>`: the worker chooses the policy as the
                            command does (`marl_grpo.cli.set_thread_policy`), before it imports torch
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

OMP_VARS = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "MARL_GRPO_OMP_WAIT")
MARL_OPTIONS = ("auto", "active", "passive", "default")


def policy_env(policy: str) -> tuple[dict[str, str], bool]:
    """(extra environment, whether marl_grpo applies it) for a `--policies` entry."""
    if policy in ("ACTIVE", "PASSIVE"):
        return {"OMP_WAIT_POLICY": policy}, False
    if policy == "unset":
        return {}, False
    if policy.startswith("spin="):
        return {"GOMP_SPINCOUNT": policy.split("=", 1)[1]}, False
    if policy in MARL_OPTIONS:
        return {}, True
    raise SystemExit(f"unknown policy {policy!r}: ACTIVE, PASSIVE, unset, spin=N or one of {', '.join(MARL_OPTIONS)}")


# ---------------------------------------------------------------------------------------- worker
def worker(threads: int, iterations: int, max_seconds: float, policy: str | None) -> None:
    """Time whole GRPO iterations of the quick preset; print one JSON line. `policy`: the
    `--omp-wait` value to choose before torch loads, as the command does (None: none)."""
    import dataclasses

    from marl_grpo.cli import set_thread_policy

    chosen = set_thread_policy(policy) if policy is not None else None
    import torch

    from marl_grpo.rl import PRESETS, SoccerTrainer
    from marl_grpo.run.update import policy_update

    seen = {k: os.environ.get(k) for k in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    cfg = dataclasses.replace(PRESETS["quick"], device="cpu", progress=False, threads=threads, seed=0)
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    trainer = SoccerTrainer(cfg, torch.device("cpu"), None)
    times: list[float] = []
    for i in range(iterations + 1):  # the first one warms up
        start = time.perf_counter()
        segment = trainer.collect()
        batch, _ = trainer.advantages(segment)
        policy_update(batch, trainer.optimizer, trainer.parameters, cfg, generator=trainer.update_generator)
        trainer.end_iteration(i)
        if i:
            times.append(time.perf_counter() - start)
            if sum(times) > max_seconds:
                break
    # do the OpenMP workers spin while the process sleeps? (CPU seconds per second of sleep)
    x = torch.randn(1 << 20)
    for _ in range(3):
        x.sqrt()
    cpu = time.process_time()
    time.sleep(0.3)
    spin = (time.process_time() - cpu) / 0.3
    print(json.dumps({"times": times, "spin": spin, "env_after_torch": seen, "chosen": chosen}))


# ------------------------------------------------------------------------------------------ main
def run_one(policy: str, threads: int, busy: bool, args: argparse.Namespace) -> dict:
    extra, via_marl = policy_env(policy)
    env = {k: v for k, v in os.environ.items() if k not in OMP_VARS}
    env.update(extra)
    competitors = [subprocess.Popen([sys.executable, "-c", "while True: pass"], env=env)
                   for _ in range(args.competitors if busy else 0)]
    if competitors:
        time.sleep(0.3)
    load = os.getloadavg()[0]
    try:
        proc = subprocess.run([sys.executable, __file__, "--worker", "--threads", str(threads),
                               "--iterations", str(args.iterations), "--max-seconds", str(args.max_seconds)]
                              + (["--omp-wait", policy] if via_marl else []),
                              env=env, capture_output=True, text=True, timeout=600)
    finally:
        for competitor in competitors:
            competitor.kill()
            competitor.wait()
    if proc.returncode != 0:
        raise SystemExit(f"worker {policy} threads={threads} busy={busy} failed:\n{proc.stderr[-3000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["load"] = load
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--policies", default="ACTIVE,PASSIVE,unset,auto")
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--contention", default="idle,busy")
    parser.add_argument("--competitors", type=int, default=1, help="busy-loop processes beside a busy run")
    parser.add_argument("--reps", type=int, default=2, help="runs of every configuration (interleaved)")
    parser.add_argument("--iterations", type=int, default=2, help="timed iterations per run (after a warm-up)")
    parser.add_argument("--max-seconds", type=float, default=15.0, help="stop timing a run after this long")
    parser.add_argument("--seed", type=int, default=0, help="seed of the configuration order")
    parser.add_argument("--json", type=Path, help="also write every run's raw result here")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--omp-wait", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(int(args.threads), args.iterations, args.max_seconds, args.omp_wait)
        return

    policies = args.policies.split(",")
    for p in policies:
        policy_env(p)  # checks the names before anything runs
    configs = [(p, int(t), c == "busy") for p in policies for t in args.threads.split(",")
               for c in args.contention.split(",")]
    rng = random.Random(args.seed)
    runs: dict[tuple, list[dict]] = {c: [] for c in configs}
    start = time.perf_counter()
    print(f"{len(configs)} configurations x {args.reps} repetitions on {len(os.sched_getaffinity(0))} CPUs; "
          f"{args.competitors} competing process(es) in busy runs; load average at start {' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
    for rep in range(args.reps):
        order = configs[:]
        rng.shuffle(order)
        for policy, threads, busy in order:
            r = run_one(policy, threads, busy, args)
            runs[(policy, threads, busy)].append(r)
            print(f"  rep {rep + 1} {policy:>8} threads={threads} {'busy' if busy else 'idle'}: "
                  f"{statistics.median(r['times']):.2f} s/it ({len(r['times'])} it), spin {r['spin']:.2f}, "
                  f"load {r['load']:.2f}", flush=True)

    medians = {c: statistics.median([t for r in rs for t in r["times"]]) for c, rs in runs.items()}
    best = {}
    for (p, t, b), m in medians.items():
        best[(t, b)] = min(best.get((t, b), m), m)
    print(f"\nseconds per iteration (quick preset, 1024 matches x 32 steps), "
          f"{time.perf_counter() - start:.0f} s in all; load average now "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"{'policy':>8} {'threads':>7} {'contention':>10} {'median':>7} {'spread (run medians)':>21} "
          f"{'x best':>6} {'spin':>5} {'load 1-min':>11}")
    for c in sorted(configs, key=lambda c: (c[2], c[1], medians[c])):
        p, t, b = c
        per_run = [statistics.median(r["times"]) for r in runs[c]]
        loads = [r["load"] for r in runs[c]]
        spins = statistics.median(r["spin"] for r in runs[c])
        print(f"{p:>8} {t:>7} {'busy' if b else 'idle':>10} {medians[c]:>7.2f} "
              f"{min(per_run):>10.2f} - {max(per_run):<8.2f} {medians[c] / best[(t, b)]:>6.2f} {spins:>5.2f} "
              f"{min(loads):>5.2f}-{max(loads):<5.2f}")
    chosen = {json.dumps(r["chosen"]) for (p, _, _), rs in runs.items() if p in MARL_OPTIONS for r in rs}
    seen = {json.dumps(r["env_after_torch"]) for (p, _, _), rs in runs.items() if p in MARL_OPTIONS for r in rs}
    if chosen:
        print(f"--omp-wait chose: {', '.join(sorted(chosen))}; variables torch loaded with in those runs: "
              f"{', '.join(sorted(seen))}")
    if args.json:
        args.json.write_text(json.dumps([{"policy": p, "threads": t, "busy": b, **r}
                                         for (p, t, b), rs in runs.items() for r in rs], indent=1))


if __name__ == "__main__":
    main()
