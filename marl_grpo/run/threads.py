"""CPU thread settings of a run: the OpenMP wait policy that the `marl-grpo` command chooses once,
at start (`omp_wait_env`), and torch's thread count held for the length of a call (`torch_threads`).

The OpenMP wait policy decides what torch's idle pool workers do between two parallel ops: spin (a
core burnt, but the next op starts at once) or sleep (the core is free, but waking is slow on small
virtual machines). Spinning wins on a machine of your own and loses badly when another CPU-bound
process wants the same cores. The runtime reads its variables once, when torch loads it, so only
a command that has not imported torch yet can choose; the library never does.

This module imports no torch at its top: the command imports it before torch.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

OMP_WAIT_OPTIONS = ("auto", "active", "passive", "default")
"""the values of `marl-grpo --omp-wait` and of the MARL_GRPO_OMP_WAIT variable"""
OMP_VARIABLES = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")
"""the OpenMP variables a user may set by hand; either one set means `omp_wait_env` sets nothing"""
AUTO_SPINCOUNT = "3000"
"""`auto` on a busy machine: workers spin this many pause instructions after an op, then sleep
(GNU libgomp's GOMP_SPINCOUNT; its own default is 300000)"""
IDLE_CORES = 1.5
"""`auto` spins for good only while the 1-minute load average leaves this many CPUs idle (and the
process may use 2 or more): below 0.5 on 2 CPUs"""


def omp_wait_env(option: str | None, environ: Mapping[str, str] | None = None, cpus: int | None = None,
                 load: float | None = None, name: str = "--omp-wait") -> dict[str, str]:
    """The OpenMP variables to set before torch loads for the wait policy `option` (None or empty:
    `auto`), given the environment `environ` (default: os.environ), the CPUs this process may use
    (`cpus`, default: its affinity) and the 1-minute load average (`load`, default: the OS's).

        auto      OMP_WAIT_POLICY=ACTIVE while the machine is idle, else GOMP_SPINCOUNT=3000: the
                  load is read once, so contention that starts later is not seen
        active    OMP_WAIT_POLICY=ACTIVE: workers spin for good (a machine of your own)
        passive   OMP_WAIT_POLICY=PASSIVE: workers sleep at once (cores shared with other work)
        default   nothing: the OpenMP runtime's own default

    A user's own OMP_WAIT_POLICY or GOMP_SPINCOUNT always wins: then nothing is returned. A bad
    `option` raises ValueError naming it as `name` and the allowed values.
    """
    value = "auto" if option is None or not option.strip() else option.strip().lower()
    if value not in OMP_WAIT_OPTIONS:
        raise ValueError(f"{name} {option!r} is not a valid value: choose one of {', '.join(OMP_WAIT_OPTIONS)}")
    environ = os.environ if environ is None else environ
    if value == "default" or any(environ.get(variable) for variable in OMP_VARIABLES):
        return {}
    if value == "auto":
        if cpus is None:
            cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        if load is None:
            load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
        if cpus >= 2 and load < cpus - IDLE_CORES:
            return {"OMP_WAIT_POLICY": "ACTIVE"}
        return {"GOMP_SPINCOUNT": AUTO_SPINCOUNT}
    return {"OMP_WAIT_POLICY": value.upper()}


@contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """Run the block with torch's CPU thread count set to `threads`, and put the caller's count back
    afterwards: a library call (`train(cfg)`, a benchmark) leaves the process as it found it."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
