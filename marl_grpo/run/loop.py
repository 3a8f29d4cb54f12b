"""The one training loop of the project, for soccer (GRPO, PPO) and LLM runs alike.

    result = run_training(SoccerTrainer, cfg)     # marl_grpo.rl
    result = run_training(LLMTrainer, cfg)        # marl_grpo.llm

The loop owns what every run shares: the run folder and its guard against overwriting, resume,
the iteration and time budget, the evaluation and checkpoint cadence, the reference-policy
refresh and learning-rate schedule, TensorBoard logging, the progress bar, atomic checkpoint
writing and, under torchrun, the ranks (`marl_grpo.run.distributed`). A mode supplies a
`Trainer` with only what differs. One iteration reads top to bottom:

    batch = trainer.collect()                          # rollout / prompts, generation and rewards
    update_batch, stats = trainer.advantages(batch)    # GRPO groups, GAE, ...
    stats |= policy_update(update_batch, ...)          # the one update step (marl_grpo.run.update)
    stats |= trainer.end_iteration(iteration)          # e.g. a league's ratings and snapshots
    log, evaluate, checkpoint
"""

from __future__ import annotations

import json
import resource
import sys
import time
from pathlib import Path
from typing import Any, Callable, ClassVar

import torch
from tqdm import tqdm

from marl_grpo.run import distributed
from marl_grpo.run.checkpoint import atomic_directory, load_trainer_state, recover
from marl_grpo.run.config import RunConfig, resume_config
from marl_grpo.run.files import CHECKPOINT_DIR, RESULT_FILE, STATE_FILE
from marl_grpo.run.logger import Logger
from marl_grpo.run.threads import torch_threads
from marl_grpo.run.update import UpdateBatch, policy_update


class Trainer:
    """What a training mode supplies to `run_training`.

    Built by the loop as `Trainer(cfg, device, checkpoint, world)`, where `checkpoint` is the
    folder to resume from (None for a fresh run; the trainer loads its weights from there, the loop
    then restores the states and the counters) and `world` this process's rank (it plays its
    share of the global batch: `world.split(cfg.num_envs, "num_envs")`).
    """

    evaluate_first: ClassVar[bool] = False
    """also evaluate after the first iteration (a baseline point for the curves)"""
    history_tags: ClassVar[tuple[str, ...]] = ()
    """scalars whose per-iteration values the result's `history` keeps"""

    cfg: RunConfig
    optimizer: torch.optim.Optimizer
    parameters: list[torch.nn.Parameter]
    """what the optimiser trains (and the update clips)"""
    update_generator: torch.Generator | None = None
    """random stream of the minibatch order (None: torch's global stream, saved by the loop)"""

    def __init__(self, cfg: RunConfig, device: torch.device, checkpoint: Path | None, world: distributed.World):
        raise NotImplementedError

    @property
    def num_iterations(self) -> int:
        """iterations of the whole budget"""
        raise NotImplementedError

    @property
    def steps_per_iteration(self) -> int:
        """units of the logs' x axis per iteration (soccer: env steps; LLM: 1, the iteration)"""
        return 1

    def collect(self) -> Any:
        """Play or generate one batch of experience (no gradients)."""
        raise NotImplementedError

    def advantages(self, batch: Any) -> tuple[UpdateBatch, dict[str, float]]:
        """What the update needs, and scalars to log about the advantages."""
        raise NotImplementedError

    def batch_scalars(self, batch: Any, seconds: float, collect_seconds: float) -> dict[str, float]:
        """Scalars to log about the batch and its timing (rewards, episodes, throughput)."""
        return {}

    def end_iteration(self, iteration: int) -> dict[str, float]:
        """Bookkeeping after the update of `iteration` (0-based), before the logs and the checkpoint
        (a league's ratings and snapshots); scalars to log."""
        return {}

    def refresh_reference(self) -> None:
        """Copy the policy into the reference policy of the KL term (if there is one)."""

    def evaluate(self) -> dict[str, float]:
        """`eval/*` scalars."""
        return {}

    def progress(self, scalars: dict[str, float], last_eval: dict[str, float]) -> dict[str, str]:
        """The progress bar's postfix."""
        return {}

    def hyperparameters(self) -> dict[str, Any]:
        """The run's text summary in TensorBoard (config and derived values)."""
        return self.cfg.to_dict()

    def texts(self) -> dict[str, str]:
        """Other text to log once at the start of a run (tag -> markdown)."""
        return {}

    def eval_texts(self) -> dict[str, str]:
        """Text to log at every evaluation, after `evaluate` (tag -> markdown; the LLM's completions)."""
        return {}

    def write_checkpoint(self, folder: Path) -> None:
        """Write the weights and configs of the checkpoint into `folder`."""
        raise NotImplementedError

    @classmethod
    def saved_config(cls, checkpoint: Path) -> dict[str, Any]:
        """The config a checkpoint was written with (a resumed run keeps it, `RunConfig.RESUMABLE` aside)."""
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        """What exact resume needs beyond the weights, the same on every rank (optimiser, reference)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass

    def rank_state_dict(self) -> dict[str, Any]:
        """What exact resume needs of this rank alone (its matches, its random streams)."""
        return {}

    def load_rank_state_dict(self, state: dict[str, Any]) -> None:
        pass

    def summary(self, global_step: int, elapsed: float) -> dict[str, Any]:
        """Entries the mode adds to the run's result."""
        return {}


def peak_memory_mb(device: torch.device) -> float:
    """Peak memory of this process: CUDA allocations on a GPU, else the peak resident set size."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 2**10  # bytes on macOS, KiB on Linux


def run_training(trainer_cls: Callable[..., Trainer], cfg: RunConfig,
                 on_iteration: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Run (or, with `cfg.resume`, continue) a training run; returns the last evaluation, the
    counters, timings and the trainer's summary (on rank 0; on other ranks, their own view).

    `on_iteration(global_step)` is called after every iteration (`marl-grpo compare` uses it for
    its progress display).
    """
    with torch_threads(cfg.threads):  # the caller's thread count is back when the run returns
        torch.manual_seed(cfg.seed)
        world, device, created = distributed.setup(cfg.device)
        try:
            return _run(trainer_cls, cfg, on_iteration, world, device)
        finally:
            distributed.teardown(created)


def _load_state(ckpt_dir: Path, world: distributed.World) -> dict[str, Any]:
    state = load_trainer_state(ckpt_dir)
    if "ranks" not in state:
        raise ValueError(f"{str(ckpt_dir / STATE_FILE)!r} was written by marl-grpo 0.1 before the shared run "
                         "engine: its policy still loads for eval and watch, but the run cannot be resumed")
    if len(state["ranks"]) != world.world_size:
        raise ValueError(f"{str(ckpt_dir)!r} was written by {len(state['ranks'])} process(es) and this run has "
                         f"{world.world_size}: resume with the same number of processes (each rank continues "
                         "its own matches and random streams)")
    return state


def _run(trainer_cls: Callable[..., Trainer], cfg: RunConfig, on_iteration: Callable[[int], None] | None,
         world: distributed.World, device: torch.device) -> dict[str, Any]:
    run_dir = Path(cfg.log_dir) / cfg.name
    ckpt_dir = run_dir / CHECKPOINT_DIR
    if world.is_main:
        recover(ckpt_dir)  # a save cut off by a crash: put the last whole checkpoint back
    distributed.barrier()
    if not cfg.resume and ckpt_dir.exists():
        raise FileExistsError(
            f"{str(run_dir)!r} already holds a run: pass --resume to continue it, or choose another --name")
    if cfg.resume and not ckpt_dir.exists():
        raise FileNotFoundError(f"--resume: no checkpoint at {str(ckpt_dir)!r} to continue from")
    if cfg.resume:
        cfg = resume_config(cfg, trainer_cls.saved_config(ckpt_dir), cfg.given)

    trainer = trainer_cls(cfg, device, ckpt_dir if cfg.resume else None, world)
    distributed.broadcast_parameters(trainer.parameters)  # every rank starts from rank 0's weights
    total, per_iteration = trainer.num_iterations, trainer.steps_per_iteration
    iteration, elapsed, wall_before = 0, 0.0, 0.0
    if cfg.resume:
        state = _load_state(ckpt_dir, world)
        trainer.load_state_dict(state["trainer"])
        trainer.load_rank_state_dict(state["ranks"][world.rank]["trainer"])
        iteration, elapsed, wall_before = state["iteration"], state["elapsed"], state["wall_time"]
        torch.set_rng_state(state["ranks"][world.rank]["torch_rng"])

    # after a crash, the steps logged since the last checkpoint are logged again: drop the old ones
    purge_step = iteration * per_iteration + 1 if cfg.resume else None
    logger = Logger(run_dir, enabled=world.is_main, purge_step=purge_step)
    if not cfg.resume and world.is_main:
        logger.hyperparameters({**trainer.hyperparameters(), "world_size": world.world_size})
        for tag, text in trainer.texts().items():
            logger.text(tag, text)
    history: dict[str, list[float]] = {tag: [] for tag in trainer.history_tags}
    last_eval: dict[str, float] = {}
    wall_start = time.perf_counter()
    completed = iteration

    def wall_time() -> float:
        return wall_before + time.perf_counter() - wall_start

    def time_spent() -> float:
        """the share of the time budget spent (0 without one)"""
        return wall_time() / (60 * cfg.max_minutes) if cfg.max_minutes > 0 else 0.0

    time_fraction = time_spent()  # rank 0's, as of the last iteration's end

    bar = tqdm(range(iteration, total), initial=iteration, total=total,
               disable=not (cfg.progress and world.is_main), desc=cfg.name, unit="it")
    try:
        for iteration in bar:
            start = time.perf_counter()
            if cfg.anneal_lr:  # down the ramp of whichever budget, steps or minutes, is further spent
                for group in trainer.optimizer.param_groups:
                    group["lr"] = cfg.learning_rate * max(0.0, 1.0 - max(iteration / total, time_fraction))
            if cfg.kl_coef > 0 and cfg.ref_refresh and iteration > 0 and iteration % cfg.ref_refresh == 0:
                trainer.refresh_reference()

            # rollout
            batch = trainer.collect()
            collect_seconds = time.perf_counter() - start
            # advantage
            update_batch, scalars = trainer.advantages(batch)
            # update
            try:
                scalars |= policy_update(update_batch, trainer.optimizer, trainer.parameters, cfg,
                                         generator=trainer.update_generator)
            except FloatingPointError as err:
                raise FloatingPointError(f"iteration {iteration + 1}: {err}") from None
            scalars |= trainer.end_iteration(iteration)
            seconds = time.perf_counter() - start
            elapsed += seconds

            # log
            step = (iteration + 1) * per_iteration
            scalars = distributed.mean_scalars(scalars | trainer.batch_scalars(batch, seconds, collect_seconds))
            logger.scalars(scalars, step)
            for tag, values in history.items():
                values.append(scalars[tag])

            # rank 0's clock decides when the time budget is spent, and the time-annealed lr, for every rank
            time_fraction = distributed.broadcast(time_spent())
            done = iteration + 1 == total or time_fraction >= 1.0
            if world.is_main and ((cfg.eval_every and (iteration + 1) % cfg.eval_every == 0) or done or (
                    trainer.evaluate_first and iteration == 0)):
                last_eval = {**trainer.evaluate(), "eval/wall_time": wall_time()}
                logger.scalars(last_eval, step)
                for tag, text in trainer.eval_texts().items():
                    logger.text(tag, text, step)
            if (cfg.save_every and (iteration + 1) % cfg.save_every == 0) or done:
                ranks = distributed.all_gather(distributed.to_cpu(
                    {"torch_rng": torch.get_rng_state(), "trainer": trainer.rank_state_dict()}))
                if world.is_main:
                    with atomic_directory(ckpt_dir) as tmp:
                        trainer.write_checkpoint(tmp)
                        torch.save({"iteration": iteration + 1, "global_step": step, "elapsed": elapsed,
                                    "wall_time": wall_time(), "trainer": trainer.state_dict(), "ranks": ranks},
                                   tmp / STATE_FILE)
            bar.set_postfix(trainer.progress(scalars, last_eval))
            completed = iteration + 1
            if on_iteration is not None and world.is_main:
                on_iteration(step)
            if done:
                break
        memory = peak_memory_mb(device)
        logger.scalars({"charts/peak_memory_mb": memory}, completed * per_iteration)
    finally:
        logger.close()
    global_step = completed * per_iteration
    result = {"eval": last_eval, "iteration": completed, "global_step": global_step, "elapsed": elapsed,
              "run_dir": str(run_dir), "wall_time": wall_time(), "peak_memory_mb": memory, "history": history,
              "world_size": world.world_size, **trainer.summary(global_step, elapsed)}
    if world.is_main:  # the run's summary beside its logs (`marl-grpo compare --report-only` reads it)
        (run_dir / RESULT_FILE).write_text(json.dumps({**result, "config": cfg.to_dict()}, indent=1))
    return result
