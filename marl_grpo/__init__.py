"""marl-grpo: a multi-agent soccer simulator (PettingZoo API) and group-relative trainers.

Shape letters: one meaning in every file (docstrings and comments write shapes as `[B, N, D]`).

=====  =====================================================================================
B      matches stepped together (the vector env's batch)
N      players per match, blue then red
C      players the learning policy controls per match (the blue team, or all N in self-play)
D      observation width (`D_in`: the critic's input width)
T      steps of a segment (soccer) or tokens of a completion (LLM): the length of a sequence
S      sequences, the rows of the loss core and of the advantage maths (soccer: B * C
       player-segments; LLM: P * G completions)
G      group size: members of one GRPO group (copies, matches or completions)
P      prompts of an LLM batch
A      answers of a task (the 10 actions in soccer)
V      vocabulary size; W: prompt width in tokens
M      the larger team size (the observation has M - 1 teammate and M opponent slots)
K      entities in a set the entity encoder pools (M - 1 teammates or M opponents)
R      rows of one policy forward pass; E: entity embedding width; H: attention heads
F      reward components (soccer: goal, ball touch, progress, shot, distance; LLM: answer, format)
=====  =====================================================================================
"""

import os
import sys
from collections.abc import Mapping

# --------------------------------------------------------------------------- OpenMP wait policy
# torch's CPU thread pool is libgomp's. Between two parallel ops its idle workers spin (burning a
# core) for a while, then sleep, and a sleeping worker is slow to wake on small virtual machines: an
# earlier measurement here had 2-thread torch ops up to 1000x slower (a 4096-element sqrt: 8 ms
# with 2 threads, 3 us with 1), hence OMP_WAIT_POLICY=ACTIVE, the old setting here (spin for good).
# But when another CPU-bound process shares the cores, spinning workers fight it for them: `marl-grpo
# train --preset quick` went from 1.2 s to 5-9 s per iteration with ACTIVE. scripts/bench_threads.py
# measures it; seconds per iteration of the quick preset with 2 threads on a shared 2-core VM, idle /
# beside 1 / beside 3 CPU-bound processes:
#     ACTIVE               0.68-0.83 / 2.1-2.5 / 6.5
#     libgomp's default    0.68-0.74 / 2.6     / 6.2    (300k spins, ~10 ms here)
#     GOMP_SPINCOUNT=3000  0.70-0.83 / 1.3-1.5 / 2.2
#     PASSIVE              0.86-1.22 / 1.0-1.2 / 2.2
# With 1 thread there is no worker and the policy does not matter (0.9-1.1 s, idle or not). On an
# idle machine the bounded spin can still cost 20-25%: `marl-grpo bench train` gave 146-173k
# agent-steps/s against 198-207k with ACTIVE, and 15 minutes of `--preset 2v2` played 30M steps
# instead of 39M (79.5% wins against the team bot instead of 87%).
#
# MARL_GRPO_OMP_WAIT, read at `import marl_grpo`, chooses:
#   auto     (the default) ACTIVE when the machine is idle as torch loads (this process may use 2 or
#            more CPUs and the 1-minute load average is below CPUs - 1.5, i.e. 0.5 on 2 CPUs), else
#            GOMP_SPINCOUNT=3000: workers spin ~3000 pause instructions (~0.1 ms here) after an op,
#            then sleep (1.3x the best policy beside a busy process, ACTIVE 2.2x). Contention that is
#            there at the start is caught; contention that starts later, with ACTIVE chosen, costs
#            up to ~2.2x until it ends (set `passive` on a machine you share).
#   active   OMP_WAIT_POLICY=ACTIVE: workers spin for good (a machine of your own, all cores idle)
#   passive  OMP_WAIT_POLICY=PASSIVE: workers sleep at once (cores shared with other work)
#   default  set nothing: libgomp's default
# A user's own OMP_WAIT_POLICY or GOMP_SPINCOUNT always wins: then marl_grpo sets nothing.
#
# libgomp reads these variables once, when torch loads it. So `import marl_grpo` sets nothing and
# does not import torch: it installs an import hook that sets the chosen variable only while
# `import torch` runs and removes it afterwards, so that child processes (Ray workers, subprocess
# envs, compile workers) do not inherit it. It takes effect only if marl_grpo is imported before
# torch; `OMP_WAIT_ENV` holds what is (or was) set.
OMP_WAIT_OPTIONS = ("auto", "active", "passive", "default")
_OMP_VARIABLES = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")
_AUTO_SPINCOUNT = "3000"
IDLE_CORES = 1.5
"""`auto` spins for good only while the 1-minute load average leaves this many CPUs idle (and the
process may use 2 or more): below 0.5 on 2 CPUs"""


def omp_wait_env(option: str | None, environ: Mapping[str, str] | None = None,
                 cpus: int | None = None, load: float | None = None) -> dict[str, str]:
    """The OpenMP variables to set while torch loads, for MARL_GRPO_OMP_WAIT=`option` (None or
    empty: auto), given the environment `environ` (default: os.environ), the CPUs this process may
    use (`cpus`, default: its affinity) and the 1-minute load average (`load`, default: the OS's)."""
    value = "auto" if option is None or not option.strip() else option.strip().lower()
    if value not in OMP_WAIT_OPTIONS:
        raise ValueError(f"MARL_GRPO_OMP_WAIT={option!r} is not a valid value: choose one of "
                         f"{', '.join(OMP_WAIT_OPTIONS)}")
    environ = os.environ if environ is None else environ
    if value == "default" or any(environ.get(name) for name in _OMP_VARIABLES):
        return {}  # libgomp's default, or the user's own setting
    if value == "auto":
        if cpus is None:
            cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        if load is None:
            load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
        if cpus >= 2 and load < cpus - IDLE_CORES:
            return {"OMP_WAIT_POLICY": "ACTIVE"}
        return {"GOMP_SPINCOUNT": _AUTO_SPINCOUNT}
    return {"OMP_WAIT_POLICY": value.upper()}


class _SetWhileTorchLoads:
    """A `sys.meta_path` finder that, once, sets `env` while torch's `__init__` runs (libgomp is
    loaded and reads its variables then) and removes it afterwards, unless the user set an OpenMP
    variable in the meantime or changed ours."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env

    def find_spec(self, name, path=None, target=None):  # noqa: ANN001, ANN201 (importlib's protocol)
        if name != "torch":
            return None
        if self in sys.meta_path:
            sys.meta_path.remove(self)
        for finder in sys.meta_path:  # the spec the import would have found without us
            spec = finder.find_spec(name, path, target) if hasattr(finder, "find_spec") else None
            if spec is not None:
                break
        else:
            return None
        loader, env = spec.loader, self.env

        def exec_module(module) -> None:  # noqa: ANN001
            del loader.exec_module  # back to the loader's own method
            if any(os.environ.get(k) for k in _OMP_VARIABLES):  # the user set one since
                return loader.exec_module(module)
            os.environ.update(env)  # none of them is set (checked just above)
            try:
                return loader.exec_module(module)
            finally:
                for k, v in env.items():
                    if os.environ.get(k) == v:  # still ours: unset it again
                        del os.environ[k]

        try:
            loader.exec_module = exec_module
        except AttributeError:  # a loader without instance attributes: leave the import alone
            pass
        return spec


OMP_WAIT_ENV = omp_wait_env(os.environ.get("MARL_GRPO_OMP_WAIT"))
if OMP_WAIT_ENV and "torch" not in sys.modules and not any(
        type(f).__name__ == "_SetWhileTorchLoads" for f in sys.meta_path):  # (also after a reload)
    sys.meta_path.insert(0, _SetWhileTorchLoads(OMP_WAIT_ENV))

__version__ = "0.1.0"

ENV_ID = "marl_grpo/soccer-v0"


def _register_env() -> None:
    """Register `marl_grpo/soccer-v0` with PettingZoo (AEC and parallel), so that
    `pettingzoo.make("parallel", "marl_grpo/soccer-v0")` works after `import marl_grpo`.

    Entry points are strings: nothing of ours (torch, pygame) is imported until an env is made.
    """
    try:
        from pettingzoo import aec_registry, parallel_registry, register
    except ImportError:  # an older PettingZoo without a registry
        return
    if ENV_ID not in aec_registry:
        register("aec", ENV_ID, entry_point="marl_grpo.envs.soccer_v0:env")
    if ENV_ID not in parallel_registry:
        register("parallel", ENV_ID, entry_point="marl_grpo.envs.soccer_v0:parallel_env")


_register_env()
