"""The training loop of GRPO and PPO: rollout, advantage, update, log, evaluate, checkpoint.

    marl-grpo train --preset quick              # then: tensorboard --logdir runs
    marl-grpo train --preset quick --algo ppo   # the critic baseline, same loop
"""

from __future__ import annotations

import resource
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from tqdm import tqdm

from marl_grpo.agents import SoccerPolicy, make_bot
from marl_grpo.checkpoint import load_policy, load_trainer_state, save_checkpoint
from marl_grpo.config import TrainConfig
from marl_grpo.envs import SoccerVecEnv
from marl_grpo.envs.backend import resolve_device
from marl_grpo.evaluate import evaluate
from marl_grpo.envs.config import SoccerConfig
from marl_grpo.grpo import GRPOLearner
from marl_grpo.learner import PolicyLearner
from marl_grpo.logger import Logger
from marl_grpo.ppo import PPOLearner
from marl_grpo.rollout import Collector

CHECKPOINT_DIR = "checkpoint"


def make_learner(policy: SoccerPolicy, cfg: TrainConfig, env_config: SoccerConfig) -> PolicyLearner:
    """The learner of `cfg.algo`: `GRPOLearner` (no critic) or `PPOLearner` (GAE + critic)."""
    cfg.derived()  # validates algo
    return PPOLearner(policy, cfg, env_config) if cfg.algo == "ppo" else GRPOLearner(policy, cfg)


def make_collector(env: SoccerVecEnv, policy: SoccerPolicy, opponent: Any, learner: PolicyLearner,
                   cfg: TrainConfig) -> Collector:
    derived = learner.derived
    return Collector(env, policy, opponent, cfg.group_size, derived["branch"], derived["episode"], cfg.seed,
                     record_state=learner.needs_state)


def peak_memory_mb(device: torch.device) -> float:
    """Peak memory of this process: CUDA allocations on a GPU, else the peak resident set size."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 2**10  # bytes on macOS, KiB on Linux


def train(cfg: TrainConfig, on_iteration: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Run (or resume) a GRPO or PPO training run; returns the last evaluation and timing figures.

    `on_iteration(global_step)` is called after every iteration (`marl-grpo compare` uses it for
    its progress display).
    """
    derived = cfg.derived()
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    device = resolve_device(cfg.device)
    run_dir = Path(cfg.log_dir) / cfg.name
    ckpt_dir = run_dir / CHECKPOINT_DIR
    if not cfg.resume and ckpt_dir.exists():
        raise FileExistsError(
            f"{str(run_dir)!r} already holds a run: pass --resume to continue it, or choose another --name"
        )

    env = SoccerVecEnv(num_envs=cfg.num_envs, device=device, **cfg.env_kwargs())
    policy = SoccerPolicy(env.config, arch=cfg.arch, hidden=cfg.hidden, device=device)
    opponent = None if cfg.opponent == "self" else make_bot(
        cfg.opponent, env.config, strength=cfg.opponent_strength, seed=cfg.seed, device=device)
    learner = make_learner(policy, cfg, env.config)
    collector = make_collector(env, policy, opponent, learner, cfg)
    iteration, global_step, elapsed, wall_before = 0, 0, 0.0, 0.0
    if cfg.resume:
        saved, _ = load_policy(ckpt_dir, device=device, env_config=env.config)
        policy.load_state_dict(saved.state_dict())
        state = load_trainer_state(ckpt_dir)
        learner.load_state_dict(state["learner"])
        iteration, global_step, elapsed = state["iteration"], state["global_step"], state["elapsed"]
        wall_before = state["wall_time"]
        env.set_state({k: v.to(device) for k, v in state["env"].items()})
        collector.obs = env.engine.observe()
        collector.generator.set_state(state["sampling_rng"])
        collector.episodes_started = state["episodes_started"]
        torch.set_rng_state(state["torch_rng"])

    logger = Logger(run_dir)
    if not cfg.resume:
        counts = learner.num_parameters()
        logger.hyperparameters({**cfg.to_dict(), **derived, **counts, "total_parameters": sum(counts.values())})
    wall_start = time.perf_counter()
    last_eval: dict[str, float] = {}
    recent_returns: list[float] = []
    recent_results: list[float] = []
    bar = tqdm(range(iteration, derived["iterations"]), initial=iteration, total=derived["iterations"],
               disable=not cfg.progress, desc=cfg.name, unit="it")
    try:
        for iteration in bar:
            start = time.perf_counter()
            if cfg.anneal_lr:
                learner.set_learning_rate(cfg.learning_rate * (1.0 - iteration / derived["iterations"]))
            if cfg.kl_coef > 0 and iteration % cfg.ref_refresh == 0:
                learner.refresh_reference()

            # rollout
            segment = collector.collect(derived["segment_len"])
            rollout_time = time.perf_counter() - start
            # advantage
            advantages, group_stats = learner.advantages(segment)
            # update
            update_stats = learner.update(segment, advantages)
            global_step += derived["env_steps_per_iteration"]
            elapsed += time.perf_counter() - start

            # log
            agent_steps = derived["env_steps_per_iteration"] * env.num_agents
            scalars = {**group_stats, **update_stats,
                       "charts/SPS": derived["env_steps_per_iteration"] / (time.perf_counter() - start),
                       "charts/agent_SPS": agent_steps / (time.perf_counter() - start),
                       "charts/rollout_fraction": rollout_time / (time.perf_counter() - start),
                       "charts/learning_rate": learner.optimizer.param_groups[0]["lr"]}
            recent_returns = (recent_returns + segment.episode_returns)[-200:]
            recent_results = (recent_results + segment.episode_results)[-200:]
            if segment.episode_returns:
                scalars["charts/episodic_return"] = float(np.mean(segment.episode_returns))
                scalars["charts/win_rate_train"] = float(np.mean([r > 0 for r in segment.episode_results]))
            logger.scalars(scalars, global_step)

            done = iteration + 1 == derived["iterations"] or (
                cfg.max_minutes > 0 and time.perf_counter() - wall_start + wall_before >= 60 * cfg.max_minutes)
            if (cfg.eval_every and (iteration + 1) % cfg.eval_every == 0) or done:
                last_eval = evaluate(policy, cfg.env_kwargs(), cfg.eval_opponent, cfg.eval_strength,
                                     cfg.eval_matches, seed=10_000)
                logger.scalars(last_eval, global_step)
                logger.scalars({"eval/wall_time": wall_before + time.perf_counter() - wall_start}, global_step)
            if (cfg.save_every and (iteration + 1) % cfg.save_every == 0) or done:
                _save(ckpt_dir, policy, env, cfg, learner, collector, iteration + 1, global_step, elapsed,
                      wall_before + time.perf_counter() - wall_start)
            bar.set_postfix(ret=f"{np.mean(recent_returns) if recent_returns else 0:.2f}",
                            win=f"{last_eval.get('eval/win_rate', float('nan')):.2f}")
            if on_iteration is not None:
                on_iteration(global_step)
            if done:
                break
        memory = peak_memory_mb(device)
        logger.scalars({"charts/peak_memory_mb": memory}, global_step)
    finally:
        logger.close()
    return {"eval": last_eval, "global_step": global_step, "elapsed": elapsed, "run_dir": str(run_dir),
            "wall_time": wall_before + time.perf_counter() - wall_start, "peak_memory_mb": memory,
            "agent_steps_per_s": global_step * env.num_agents / max(elapsed, 1e-9), **learner.num_parameters()}


def _save(ckpt_dir: Path, policy: SoccerPolicy, env: SoccerVecEnv, cfg: TrainConfig, learner: PolicyLearner,
          collector: Collector, iteration: int, global_step: int, elapsed: float, wall_time: float) -> None:
    state = {
        "iteration": iteration, "global_step": global_step, "elapsed": elapsed, "wall_time": wall_time,
        "learner": learner.state_dict(), "env": env.get_state(),
        "sampling_rng": collector.generator.get_state(), "episodes_started": collector.episodes_started,
        "torch_rng": torch.get_rng_state(),
    }
    save_checkpoint(ckpt_dir, policy, env.config, cfg.to_dict(), state)
