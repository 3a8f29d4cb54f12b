"""Soccer training with GRPO or PPO: what the shared run loop needs from the game.

    marl-grpo train --preset quick              # then: tensorboard --logdir runs
    marl-grpo train --preset quick --algo ppo   # the critic baseline, same loop

`SoccerTrainer` supplies the rollout (`Collector`), the advantages (the learner of `cfg.algo`),
the evaluation against a bot and the checkpoint files; `marl_grpo.run.loop.run_training` does the
rest (budget, cadence, logging, resume, the update step).
"""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from marl_grpo.agents import PolicyOpponent, SoccerPolicy, make_bot
from marl_grpo.agents.checkpoint import load_policy, read_config, write_policy
from marl_grpo.envs import SoccerVecEnv
from marl_grpo.rl.config import TrainConfig
from marl_grpo.envs.team import make_team_env, parse_env_kwargs
from marl_grpo.rl.evaluate import mean_return, play_matches
from marl_grpo.rl.exploiters import MainExploiter, exploiter_turn
from marl_grpo.rl.groups import Groups
from marl_grpo.rl.league import League
from marl_grpo.rl.learner import Algorithm
from marl_grpo.rl.opponent import OPPONENT_SEED_OFFSET, is_checkpoint_opponent, load_opponent
from marl_grpo.rl.rollout import Collector, Segment
from marl_grpo.run.distributed import World
from marl_grpo.run.files import EVAL_SEED, LEAGUE_DIR
from marl_grpo.run.loop import Trainer, run_training
from marl_grpo.run.update import UpdateBatch

EXPLOITER_SEED_OFFSET = 104729
"""main exploiter k's matches and draws are seeded `seed + EXPLOITER_SEED_OFFSET * (k + 1)`"""


def make_learner(policy: SoccerPolicy, cfg: TrainConfig, env: SoccerVecEnv) -> Algorithm:
    """The learner of `cfg.algo` (`marl_grpo.rl.learners.LEARNERS`)."""
    return cfg.learner(policy, cfg, env.config)


def make_collector(env: SoccerVecEnv, policy: SoccerPolicy, opponent: Any, learner: Algorithm,
                   cfg: TrainConfig, world: World = World(), seed: int | None = None) -> Collector:
    """The rollout of `learner`: with GRPO groups if it uses them, with the global state if it
    reads it; `env` holds this rank's share of the matches. `seed`: of its matches and draws
    (default: the run's)."""
    seed = cfg.seed if seed is None else seed
    groups = None
    if learner.uses_groups:
        groups = Groups(cfg.group_mode, cfg.group_size, seed, first_match=world.rank * env.num_envs)
    return Collector(env, policy, opponent, groups, seed, record_state=learner.needs_state,
                     shard=(world.rank, world.world_size),
                     record_components=learner.uses_groups and cfg.reward_aggregation == "normalize_then_sum")


def process_envs(cfg: TrainConfig, world: World) -> int:
    """This process's share of `num_envs`, refused when it would split a GRPO group of copies."""
    num_envs = world.split(cfg.num_envs, "num_envs")
    if cfg.learner.uses_groups and cfg.groups.copies_matches and num_envs % cfg.group_size:
        raise ValueError(f"num_envs={cfg.num_envs} over {world.world_size} processes gives {num_envs} matches "
                         f"each, not a multiple of group_size={cfg.group_size}: a group must stay on one process")
    return num_envs


class SoccerTrainer(Trainer):
    """The game's side of a run: vector env, shared policy, opponent, learner and rollout."""

    def __init__(self, cfg: TrainConfig, device: torch.device, checkpoint: Path | None, world: World = World()):
        self.cfg = cfg
        num_envs = process_envs(cfg, world)
        # cpu_threads="auto": the eager rules of a big batch run faster on fewer threads (SoccerEngine)
        self.env = env = SoccerVecEnv(num_envs=num_envs, device=device, compile=cfg.compile_env, cpu_threads="auto",
                                      **cfg.soccer_kwargs())
        # the fewest sequences a batch can have (a league's batch has blue's, plus red's against itself)
        sequences = num_envs * (env.num_agents if cfg.opponent == "self" else env.config.n_blue)
        if cfg.num_minibatches > sequences:
            raise ValueError(f"num_minibatches={cfg.num_minibatches} is more than the {sequences} sequences (players' "
                             f"segments) of a process's batch: use at most {sequences}")
        self.policy = SoccerPolicy(env.config, arch=cfg.arch, hidden=cfg.hidden, device=device)
        self.learner = make_learner(self.policy, cfg, env)
        self.league = None
        if cfg.opponent == "league":
            block = cfg.group_size if self.learner.uses_groups and cfg.groups.copies_matches else 1
            folder = Path(cfg.log_dir) / cfg.name / LEAGUE_DIR if world.is_main else None
            self.league = League(cfg, env, self.policy, block, folder, rank=world.rank)
        if cfg.opponent in ("self", "league"):
            opponent = self.league
        elif is_checkpoint_opponent(cfg.opponent):
            opponent = load_opponent(cfg.opponent, env.config, seed=cfg.seed, device=device)
        else:
            opponent = make_bot(cfg.opponent, env.config, strength=cfg.opponent_strength, seed=cfg.seed,
                                device=device, compile=cfg.compile_bots)
        self._start(opponent, world, checkpoint, env.config)
        self.exploiters = [self._make_exploiter(k, world) for k in range(cfg.league_exploiters)] \
            if self.league is not None else []

    def _start(self, opponent: Any, world: World, checkpoint: Path | None, env_config: Any = None) -> None:
        """The rollout of the learner against `opponent`, and the saved weights of `checkpoint` (resume;
        with `env_config`, checked to fit the soccer env's observations)."""
        self.opponent = opponent
        self.collector = make_collector(self.env, self.policy, opponent, self.learner, self.cfg, world)
        self.optimizer, self.parameters = self.learner.optimizer, self.learner.parameters
        if checkpoint is not None:
            saved, _ = load_policy(checkpoint, device=self.env.device, env_config=env_config)
            self.policy.load_state_dict(saved.state_dict())
        self.recent_returns: list[float] = []

    def _make_exploiter(self, index: int, world: World) -> MainExploiter:
        """Main exploiter `index`: a branch of the learner with its own matches, learner and seeds,
        against a frozen copy of the learner (`marl_grpo.rl.exploiters`)."""
        cfg, device = self.cfg, self.env.device
        seed = cfg.seed + EXPLOITER_SEED_OFFSET * (index + 1)
        env = SoccerVecEnv(num_envs=self.env.num_envs, device=device, compile=cfg.compile_env, cpu_threads="auto",
                           **cfg.soccer_kwargs())
        policy = copy.deepcopy(self.policy)
        learner = make_learner(policy, cfg, env)
        target = PolicyOpponent(copy.deepcopy(self.policy), seed + OPPONENT_SEED_OFFSET, name="learner")
        collector = make_collector(env, policy, target, learner, cfg, world, seed=seed)
        return MainExploiter(index, policy, learner, collector, target, cfg.league_window)

    @property
    def num_iterations(self) -> int:
        return self.cfg.iterations

    @property
    def steps_per_iteration(self) -> int:
        return self.cfg.env_steps_per_iteration

    def collect(self) -> Segment:
        return self.collector.collect(self.cfg.segment_len)

    def advantages(self, segment: Segment) -> tuple[UpdateBatch, dict[str, float]]:
        return self.learner.advantages(segment)

    def batch_scalars(self, segment: Segment, seconds: float, collect_seconds: float) -> dict[str, float]:
        env_steps = self.cfg.env_steps_per_iteration  # of every rank together: a global rate
        scalars = {"charts/SPS": env_steps / seconds,
                   "charts/agent_SPS": env_steps * self.env.num_agents / seconds,
                   "charts/rollout_fraction": collect_seconds / seconds,
                   "charts/learning_rate": self.optimizer.param_groups[0]["lr"]}
        self.recent_returns = (self.recent_returns + segment.episode_returns)[-200:]
        if segment.episode_returns:
            scalars["charts/episodic_return"] = float(np.mean(segment.episode_returns))
        if segment.episode_results:  # soccer
            scalars["charts/win_rate_train"] = float(np.mean([r > 0 for r in segment.episode_results]))
            # win + draw / 2 against the training opponent (a frozen checkpoint: the exploiter's score)
            scalars["charts/score_train"] = float(np.mean([(r + 1) / 2 for r in segment.episode_results]))
        return scalars

    def end_iteration(self, iteration: int) -> dict[str, float]:
        if self.league is None:
            return {}
        cfg = self.cfg
        scalars = self.league.end_iteration()
        turn = exploiter_turn(iteration, cfg.league_exploiter_every, len(self.exploiters))
        if turn is not None:
            exploiter = self.exploiters[turn]
            if exploiter.step(self.policy, self.optimizer.param_groups[0]["lr"], cfg):
                self.league.add_member(f"{exploiter.name}-{iteration + 1:06d}", exploiter.policy, iteration + 1,
                                       cfg.to_dict())
                exploiter.joined += 1
                exploiter.branch(self.policy)
        for exploiter in self.exploiters:
            score = exploiter.score()
            if score is not None:
                scalars[f"league/{exploiter.name}_score"] = score
        if self.exploiters:
            scalars["league/exploiters_joined"] = float(sum(e.joined for e in self.exploiters))
            scalars["league/exploiter_env_steps"] = float(sum(e.env_steps for e in self.exploiters))
        if (iteration + 1) % cfg.league_snapshot_every == 0:
            self.league.add_snapshot(iteration + 1, cfg.to_dict())
        return scalars

    def refresh_reference(self) -> None:
        self.learner.refresh_reference()

    def evaluate(self) -> dict[str, float]:
        cfg = self.cfg
        return play_matches(self.policy, cfg.soccer_kwargs(), cfg.eval_opponent, cfg.eval_strength, cfg.eval_matches,
                            seed=EVAL_SEED, compile_bot=cfg.compile_bots)

    def progress(self, scalars: dict[str, float], last_eval: dict[str, float]) -> dict[str, str]:
        ret = np.mean(self.recent_returns) if self.recent_returns else 0.0
        return {"ret": f"{ret:.2f}", "win": f"{last_eval.get('eval/win_rate', float('nan')):.2f}"}

    def hyperparameters(self) -> dict[str, Any]:
        cfg, counts = self.cfg, self.learner.num_parameters()
        derived = {"segment_len": cfg.segment_len, "env_steps_per_iteration": cfg.env_steps_per_iteration,
                   "iterations": cfg.iterations}
        return {**cfg.to_dict(), **derived, **counts, "total_parameters": sum(counts.values())}

    def write_checkpoint(self, folder: Path) -> None:
        write_policy(folder, self.policy, self.env.config, self.cfg.to_dict())

    @classmethod
    def saved_config(cls, checkpoint: Path) -> dict[str, Any]:
        return read_config(checkpoint).get("train", {})

    def state_dict(self) -> dict[str, Any]:
        return {"learner": self.learner.state_dict(),
                "league": None if self.league is None else self.league.state_dict(),
                "exploiters": [e.state_dict() for e in self.exploiters]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.learner.load_state_dict(state["learner"])
        if self.league is not None:
            self.league.load_state_dict(state["league"])
        for exploiter, saved in zip(self.exploiters, state.get("exploiters", []), strict=True):
            exploiter.load_state_dict(saved)

    def rank_state_dict(self) -> dict[str, Any]:
        return {"rollout": self.collector.state_dict(),
                "exploiter_rollouts": [e.collector.state_dict() for e in self.exploiters]}

    def load_rank_state_dict(self, state: dict[str, Any]) -> None:
        self.collector.load_state_dict(state["rollout"])
        for exploiter, saved in zip(self.exploiters, state.get("exploiter_rollouts", []), strict=True):
            exploiter.collector.load_state_dict(saved)

    def summary(self, global_step: int, elapsed: float) -> dict[str, Any]:
        return {"agent_steps_per_s": global_step * self.env.num_agents / max(elapsed, 1e-9),
                **self.learner.num_parameters()}


class EnvTrainer(SoccerTrainer):
    """A run on another env than soccer (`--env vmas:<scenario>` or `pettingzoo:<module>:<function>`,
    `marl_grpo.envs.team`): the same rollout, learners, update, checkpoints and logs, with the
    policy controlling every agent (no opponent) and an MLP sized for the env; the evaluation is
    the mean episode return on held-out seeds (`eval/return`), from the first iteration on."""

    evaluate_first = True

    def __init__(self, cfg: TrainConfig, device: torch.device, checkpoint: Path | None, world: World = World()):
        num_envs = process_envs(cfg, world)
        kwargs = parse_env_kwargs(cfg.env_kwargs)
        # the episodes' time limit: --max-cycles if given, else the task's own (the adapter's default)
        max_steps = cfg.max_cycles if "max_cycles" in cfg.user_fields() else None
        self.env = env = make_team_env(cfg.env, num_envs, device, cfg.seed, max_steps=max_steps, **kwargs)
        self.cfg = cfg = dataclasses.replace(cfg, max_cycles=env.max_steps)
        self.eval_env = make_team_env(cfg.env, cfg.eval_matches, device, EVAL_SEED, max_steps=env.max_steps, **kwargs)
        if cfg.learner.uses_groups:
            check_groups(cfg, env)
        self.policy = SoccerPolicy(env.obs_dim, hidden=cfg.hidden, num_actions=env.num_actions, device=device)
        self.learner = cfg.learner(self.policy, cfg, env)  # the critic reads the env's widths
        self.league, self.exploiters = None, []
        self._start(None, world, checkpoint)  # the policy plays every agent
        self.env_meta = {"name": cfg.env, "kwargs": kwargs, "num_agents": env.num_agents, "num_actions": env.num_actions,
                         "max_steps": env.max_steps}

    def evaluate(self) -> dict[str, float]:
        return mean_return(self.policy, self.eval_env, seed=EVAL_SEED)

    def progress(self, scalars: dict[str, float], last_eval: dict[str, float]) -> dict[str, str]:
        ret = np.mean(self.recent_returns) if self.recent_returns else 0.0
        return {"ret": f"{ret:.2f}", "eval": f"{last_eval.get('eval/return', float('nan')):.2f}"}

    def write_checkpoint(self, folder: Path) -> None:
        write_policy(folder, self.policy, self.env_meta, self.cfg.to_dict())


def check_groups(cfg: TrainConfig, env: Any) -> None:
    """Refuse, in one line, a GRPO group mode that `env` cannot form: branch without a state copy,
    team with one agent per team (every advantage 0)."""
    groups = cfg.groups
    if groups.copies_matches and not groups.whole_matches and not env.can_branch:
        raise ValueError(f"group_mode={cfg.group_mode!r} needs copies of an env's state, which env={cfg.env!r} "
                         "cannot make: use team or episode (or their combination, episode+team)")
    sizes = np.bincount(np.asarray(env.teams))
    if groups.pools_teammates and not groups.copies_matches and sizes.max() < 2:
        raise ValueError(f"group_mode={cfg.group_mode!r} with env={cfg.env!r}, whose teams have one agent each, gives "
                         "one-member groups (every advantage 0): use episode, or branch where the env can copy")


def train(cfg: TrainConfig, on_iteration: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Run (or resume) a GRPO or PPO training run; returns the last evaluation and timing figures."""
    return run_training(SoccerTrainer if cfg.env == "soccer" else EnvTrainer, cfg, on_iteration)
