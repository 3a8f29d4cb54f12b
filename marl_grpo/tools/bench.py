"""Throughput benchmarks: the env (with peers measured in the same run when installed) and the
training iteration.

    marl-grpo bench env          # or: python scripts/bench_env.py
    marl-grpo bench train --algo ppo

Figures are medians of `repeats` timed runs after a warm-up. The machines this runs on are
shared and noisy: compare the ratios printed here, not absolute times. Against a peer the runs are
INTERLEAVED (ours, peer, ours, peer, ...), so that both sides see the same load, and the figure is
the median of the per-pair ratios, with its spread (the lowest and highest pair ratio).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import statistics
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
import tyro

from marl_grpo.envs import NUM_ACTIONS, SoccerVecEnv, soccer_v0
from marl_grpo.envs.backend import resolve_device
from marl_grpo.rl import SoccerTrainer, TrainConfig
from marl_grpo.run.config import check_int
from marl_grpo.run.threads import torch_threads
from marl_grpo.run.update import policy_update


@dataclass
class EnvBenchConfig:
    """Settings of `marl-grpo bench env`."""

    threads: int = 2
    """torch CPU threads (the project's reference machine has 2 cores)"""
    device: str = "cpu"
    """device of the vector env: cpu, cuda or auto"""
    num_envs: int = 4096
    """matches in the headline vector-env figure (3v3)"""
    sweep_envs: int = 1024
    """matches in the 1v1 / 5v5 / 11v11 sweep"""
    steps: int = 100
    """timed vector-env steps per run"""
    pz_steps: int = 5000
    """timed PettingZoo env steps per run"""
    repeats: int = 5
    """timed runs per figure (pairs of runs, ours then the peer's, against a peer); the median is reported"""
    peers: bool = True
    """also measure VMAS football and MPE2 simple_spread when they are installed"""
    compile: bool = True
    """also measure the 3v3 vector env with compile=True (torch.compile; tens of seconds to build)"""
    sweep: bool = True
    """also measure 1v1, 5v5 and 11v11 at sweep_envs matches"""
    pettingzoo: bool = True
    """also measure the single PettingZoo env (numpy, on the CPU)"""


def _median_rate(run: Callable[[], float], repeats: int) -> float:
    run()  # warm-up
    return statistics.median(run() for _ in range(repeats))


def interleaved_ratio(ours: Callable[[], float], peer: Callable[[], float], repeats: int) -> dict[str, float]:
    """Time `ours` and `peer` alternately: one warm-up run of each, then `repeats` pairs (ours, peer).

    Each call returns a rate (higher is faster). Returns the medians of each side (`ours`, `peer`)
    and the median, lowest and highest of the per-pair ratios ours / peer (`ratio_median`,
    `ratio_min`, `ratio_max`): a pair sees the same machine load on both sides, so the ratio
    varies much less between runs than either rate.
    """
    if repeats < 1:
        raise ValueError(f"repeats={repeats!r} is invalid: expected an int >= 1")
    ours()  # warm-ups
    peer()
    pairs = []
    for _ in range(repeats):
        mine = ours()
        theirs = peer()
        pairs.append((mine, theirs))
    ratios = [mine / theirs for mine, theirs in pairs]
    return {
        "ours": statistics.median(mine for mine, _ in pairs),
        "peer": statistics.median(theirs for _, theirs in pairs),
        "ratio_median": statistics.median(ratios),
        "ratio_min": min(ratios),
        "ratio_max": max(ratios),
    }


MEGA = (1e6, "M agent-steps/s")
KILO = (1e3, "k env-steps/s")


def _measure(results: dict[str, float], repeats: int, key: str, label: str, ours: Callable[[], float],
             unit: tuple[float, str], peer: tuple[str, str, str, Callable[[], Callable[[], float]]] | None = None,
             missing: str | None = None) -> None:
    """Measure the runner `ours` into `results[key]` and print one line. With `peer = (peer_key, prefix,
    peer_label, make_runner)` the peer's runner is built and timed interleaved with ours
    (`interleaved_ratio`): also `results[peer_key]` and `<prefix>_ratio_median|min|max`. Without a peer,
    `missing` (if any) is printed after the figure."""
    scale, suffix = unit
    if peer is None:
        results[key] = rate = _median_rate(ours, repeats)
        print(f"{label}: {rate / scale:.2f}{suffix}")
        if missing:
            print(missing)
        return
    peer_key, prefix, peer_label, make_runner = peer
    stats = interleaved_ratio(ours, make_runner(), repeats)
    results.update({key: stats["ours"], peer_key: stats["peer"]},
                   **{f"{prefix}_{name}": value for name, value in stats.items() if name.startswith("ratio")})
    print(f"{label} vs {peer_label}, {repeats} interleaved pairs: {stats['ours'] / scale:.2f} vs "
          f"{stats['peer'] / scale:.2f}{suffix} (medians)  -> ratio {stats['ratio_median']:.2f}x median of pairs "
          f"(spread {stats['ratio_min']:.2f}x - {stats['ratio_max']:.2f}x)")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def vec_env_runner(team_size: int, num_envs: int, steps: int, device: str = "cpu",
                   compile: bool = False) -> Callable[[], float]:
    """A timed run of `steps` steps of `SoccerVecEnv` (with `cpu_threads="auto"`, as the trainer
    builds it) under uniformly random actions (auto-reset included), returning agent-steps per
    second; compilation (if any) is done before it returns."""
    env = SoccerVecEnv(num_envs=num_envs, device=device, team_size=team_size, compile=compile, cpu_threads="auto")
    env.reset(seed=0)
    gen = torch.Generator(device=env.device).manual_seed(0)
    actions = torch.randint(0, NUM_ACTIONS, (16, num_envs, env.num_agents), generator=gen, device=env.device)

    def run() -> float:
        _sync(env.device)
        start = time.perf_counter()
        for i in range(steps):
            env.step(actions[i % 16])
        _sync(env.device)
        return steps * num_envs * env.num_agents / (time.perf_counter() - start)

    for i in range(3):  # compilation (if any) happens here, outside the timed runs
        env.step(actions[i])
    return run


def vec_env_rate(team_size: int, num_envs: int, steps: int, repeats: int, device: str = "cpu",
                 compile: bool = False) -> float:
    """Agent-steps per second of `SoccerVecEnv` under uniformly random actions (auto-reset included)."""
    return _median_rate(vec_env_runner(team_size, num_envs, steps, device, compile), repeats)


def pettingzoo_runner(make_env: Callable[[], object], steps: int) -> Callable[[], float]:
    """A timed run of `steps` steps of a PettingZoo ParallelEnv under random actions, resets
    included, returning env-steps per second."""
    env = make_env()
    rng = np.random.default_rng(0)

    def run() -> float:
        env.reset(seed=0)
        spaces = {a: env.action_space(a).n for a in env.possible_agents}
        start = time.perf_counter()
        for _ in range(steps):
            env.step({a: int(rng.integers(spaces[a])) for a in env.agents})
            if not env.agents:
                env.reset()
        return steps / (time.perf_counter() - start)

    return run


def vmas_football_runner(num_envs: int, steps: int, device: str = "cpu") -> Callable[[], float]:
    """A timed run of VMAS `football`, 3v3 with all six players policy-driven, random actions,
    returning agent-steps per second."""
    import vmas

    env = vmas.make_env("football", num_envs=num_envs, device=device, continuous_actions=True,
                        n_blue_agents=3, n_red_agents=3, ai_red_agents=False, ai_blue_agents=False,
                        dict_spaces=False, seed=0)
    env.reset()
    actions = [env.get_random_action(agent) for agent in env.agents]

    def run() -> float:
        _sync(torch.device(device))
        start = time.perf_counter()
        for _ in range(steps):
            env.step(actions)
        _sync(torch.device(device))
        return steps * num_envs * len(env.agents) / (time.perf_counter() - start)

    return run


def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def _mpe2_simple_spread() -> object:
    from mpe2 import simple_spread_v3

    return simple_spread_v3.parallel_env()


def run_env_bench(cfg: EnvBenchConfig) -> dict[str, float]:
    """Print and return every figure of the env benchmark (on `cfg.threads` torch threads; the
    caller's count is back afterwards)."""
    with torch_threads(cfg.threads):
        return _env_bench(cfg)


def _env_bench(cfg: EnvBenchConfig) -> dict[str, float]:
    results: dict[str, float] = {}
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {cfg.device}")

    vmas = cfg.peers and _installed("vmas")
    _measure(results, cfg.repeats, "vec_3v3", f"SoccerVecEnv 3v3, {cfg.num_envs} envs, random actions",
             vec_env_runner(3, cfg.num_envs, cfg.steps, cfg.device), MEGA,
             peer=("vmas_football_3v3", "vmas", "VMAS football 3v3 (all policy-driven)",
                   lambda: vmas_football_runner(cfg.num_envs, max(cfg.steps // 4, 10), cfg.device)) if vmas else None,
             missing="VMAS not installed (pip install vmas) - peer figure skipped" if cfg.peers else None)
    if cfg.pettingzoo:
        mpe2 = cfg.peers and _installed("mpe2")
        _measure(results, cfg.repeats, "pz_2v2", "soccer_v0.parallel_env 2v2, one env",
                 pettingzoo_runner(lambda: soccer_v0.parallel_env(team_size=2), cfg.pz_steps), KILO,
                 peer=("mpe2_simple_spread", "mpe2", "MPE2 simple_spread_v3",
                       lambda: pettingzoo_runner(_mpe2_simple_spread, cfg.pz_steps)) if mpe2 else None,
                 missing="MPE2 not installed (make bench, or pip install --no-deps mpe2 scipy) - peer figure skipped"
                 if cfg.peers else None)

    for team_size in (1, 5, 11) if cfg.sweep else ():
        rate = vec_env_rate(team_size, cfg.sweep_envs, cfg.steps, cfg.repeats, cfg.device)
        results[f"vec_{team_size}v{team_size}"] = rate
        print(f"SoccerVecEnv {team_size}v{team_size}, {cfg.sweep_envs} envs: {rate / 1e6:.2f}M agent-steps/s")
    if cfg.compile:  # last: compilation leaves threads and caches behind
        start = time.perf_counter()
        compiled = vec_env_rate(3, cfg.num_envs, cfg.steps, cfg.repeats, cfg.device, compile=True)
        results["vec_3v3_compiled"] = compiled
        line = f"SoccerVecEnv 3v3, {cfg.num_envs} envs, compile=True: {compiled / 1e6:.2f}M agent-steps/s"
        if "vmas_football_3v3" in results:
            line += f"  -> ratio {compiled / results['vmas_football_3v3']:.1f}x VMAS"
        print(f"{line}  (build + timing {time.perf_counter() - start:.0f} s)")
    _print_peak_memory(torch.device(cfg.device) if cfg.device != "auto" else resolve_device("auto"))
    return results


def _print_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        print(f"peak GPU memory: {torch.cuda.max_memory_allocated(device) / 2**20:.0f} MB")


def _bench_train_config() -> TrainConfig:
    return TrainConfig(update_epochs=1, device="cpu", seed=0, progress=False)


@dataclass
class TrainBenchConfig:
    """Settings of `marl-grpo bench train`: the full GRPO or PPO loop (rollout, advantages, update)
    on a batch of num_envs matches x one segment; every `marl-grpo train` option applies."""

    iterations: int = 5
    """timed iterations (after one warm-up iteration); the figures are their medians"""
    versus_eager: bool = False
    """also time the same loop with the bots and the env eager (a before/after of --compile-bots /
    --compile-env), alternating iterations with the main one so that the machine's drift hits both"""
    train: tyro.conf.OmitArgPrefixes[TrainConfig] = field(default_factory=_bench_train_config)
    """the training settings (default: 1 epoch, CPU)"""

    def validate(self) -> None:
        self.train.validate()
        check_int(self, "iterations")
        if self.versus_eager and not (self.train.compile_bots or self.train.compile_env):
            raise ValueError("versus_eager compares against the eager bots and env: turn on --compile-bots "
                             "and/or --compile-env")


def _timed_iteration(trainer: SoccerTrainer, cfg: TrainConfig) -> dict[str, float]:
    """Seconds of one iteration's rollout, advantages and update."""
    marks = [time.perf_counter()]
    segment = trainer.collect()
    marks.append(time.perf_counter())
    batch, _ = trainer.advantages(segment)
    marks.append(time.perf_counter())
    policy_update(batch, trainer.optimizer, trainer.parameters, cfg)
    _sync(trainer.env.device)
    marks.append(time.perf_counter())
    return {key: b - a for key, a, b in zip(("rollout", "advantages", "update"), marks, marks[1:])}


def run_train_bench(cfg: TrainBenchConfig) -> dict[str, float]:
    """Print and return agent-steps/s of the whole GRPO or PPO iteration, its parts, and the time
    of one update (advantages + all minibatch steps) for the batch: medians over the iterations.
    With `versus_eager`, also those of the same loop with eager bots and env, interleaved. Runs on
    `cfg.train.threads` torch threads; the caller's count is back afterwards."""
    with torch_threads(cfg.train.threads):
        return _train_bench(cfg)


def _train_bench(cfg: TrainBenchConfig) -> dict[str, float]:
    train_cfg = cfg.train
    torch.manual_seed(train_cfg.seed)
    device = resolve_device(train_cfg.device)
    configs = {"main": train_cfg}
    if cfg.versus_eager:
        configs["eager"] = dataclasses.replace(train_cfg, compile_bots=False, compile_env=False)
    trainers = {name: SoccerTrainer(c, device, None) for name, c in configs.items()}
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in trainers}
    for i in range(cfg.iterations + 1):
        for name, trainer in trainers.items():  # interleaved: main, eager, main, eager, ...
            timed = _timed_iteration(trainer, configs[name])
            if i:  # the first iteration is the warm-up (and the compiled builds)
                runs[name].append(timed)
    trainer, env = trainers["main"], trainers["main"].env
    agent_steps = train_cfg.env_steps_per_iteration * env.num_agents
    learner_steps = train_cfg.env_steps_per_iteration * trainer.collector.controlled.numel()

    def medians(name: str) -> dict[str, float]:
        return {key: statistics.median(run[key] for run in runs[name]) for key in runs[name][0]}

    times = medians("main")
    total = sum(times.values())
    update_ms = 1e3 * (times["advantages"] + times["update"])
    counts = trainer.learner.num_parameters()
    result = {"agent_steps_per_s": agent_steps / total, "learner_agent_steps_per_s": learner_steps / total,
              "update_ms": update_ms, **counts, **{f"{k}_fraction": v / total for k, v in times.items()}}
    print(f"{train_cfg.algo.upper()} loop, {train_cfg.team_size}v{train_cfg.team_size} vs {train_cfg.opponent}, "
          f"{train_cfg.num_envs} matches x {train_cfg.segment_len} steps, {trainer.learner.describe()}, "
          f"{train_cfg.update_epochs} epoch(s), {torch.get_num_threads()} threads, {train_cfg.arch}, "
          f"bots {'compiled' if train_cfg.compile_bots else 'eager'}, env {'compiled' if train_cfg.compile_env else 'eager'} "
          f"(medians of {cfg.iterations} iterations):")
    print(f"  {result['agent_steps_per_s'] / 1e3:.0f}k agent-steps/s (all {env.num_agents} players), "
          f"{result['learner_agent_steps_per_s'] / 1e3:.0f}k learner agent-steps/s; time split: "
          + ", ".join(f"{k} {v / total:.0%}" for k, v in times.items()))
    print(f"  update (advantages + {train_cfg.update_epochs * train_cfg.num_minibatches} minibatch steps): "
          f"{update_ms:.0f} ms per iteration; parameters: "
          + ", ".join(f"{k.split('_')[0]} {v}" for k, v in counts.items()))
    if cfg.versus_eager:
        eager = medians("eager")
        result["eager_agent_steps_per_s"] = agent_steps / sum(eager.values())
        print(f"  the same loop with eager bots and env, interleaved: {result['eager_agent_steps_per_s'] / 1e3:.0f}k "
              f"agent-steps/s (rollout {1e3 * eager['rollout']:.0f} ms against {1e3 * times['rollout']:.0f} ms): "
              f"{result['agent_steps_per_s'] / result['eager_agent_steps_per_s']:.2f}x")
    _print_peak_memory(env.device)
    return result
