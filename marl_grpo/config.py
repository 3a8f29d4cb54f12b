"""Training configuration: one dataclass, a docstring under every field, and named presets.

    marl-grpo train --preset quick --total-env-steps 200000
    marl-grpo train --preset quick --algo ppo          # the PPO-with-critic baseline

GRPO and PPO share this one config: every setting they have in common (env, team size,
opponent, budget, learning rate, epochs, minibatches, seed...) means the same for both. The
GRPO-only fields (group_mode, group_size, supervision, scale) are ignored by PPO and the PPO-only
fields (critic, gae_lambda, vf_coef, ...) by GRPO.

Derived values (segment length, iterations, matches per group) are computed in one place,
`TrainConfig.derived()`, and validated there with clear errors.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from marl_grpo.agents import BOT_NAMES, CRITIC_KINDS

GROUP_BASES = ("team", "branch", "episode")
SUPERVISIONS = ("outcome", "process")
ALGOS = ("grpo", "ppo")


@dataclass
class TrainConfig:
    """Hyperparameters of a GRPO or PPO training run (and of the evaluation it runs as it goes)."""

    # ------------------------------------------------------------------ run
    algo: str = "grpo"
    """grpo: group-relative advantages, no critic; ppo: GAE advantages from a learned critic
    (the MAPPO-style baseline), same policy and same clipped-ratio loss"""
    name: str = "grpo"
    """run name: logs and checkpoints go to `<log_dir>/<name>/`"""
    log_dir: str = "runs"
    """parent folder of run folders"""
    seed: int = 1
    """seed of the env, the policy initialisation and the sampling"""
    device: str = "auto"
    """torch device: auto (CUDA when present), cpu or cuda"""
    threads: int = 2
    """torch CPU threads"""
    resume: bool = False
    """continue from `<log_dir>/<name>/` (its last checkpoint) instead of starting afresh"""

    # ------------------------------------------------------------------ env and opponent
    team_size: int = 2
    """players per team"""
    max_cycles: int = 300
    """match length in steps"""
    opponent: str = "team"
    """who plays red: a scripted bot (random, chaser, team) or `self` (the policy plays both sides and learns from both)"""
    opponent_strength: float = 1.0
    """strength in [0, 1] of the scripted opponent"""
    reward_dist_to_ball: float = 0.001
    """weight of the distance-to-ball shaping term (the other env reward weights keep their defaults)"""

    # ------------------------------------------------------------------ GRPO groups
    group_mode: str = "branch"
    """what a group is: team, branch or episode, or a combination with team such as branch+team
    (DeepSeekMath's GRPO group of G answers to one prompt, transposed to the game)"""
    group_size: int = 8
    """G: copies of a state (branch) or matches from one kickoff seed (episode) per group"""
    branch_horizon: int = 32
    """H: steps per iteration's segment: how long each branch is played before the batch branches
    again (branch mode), the rollout length in team-only mode and for PPO"""
    supervision: str = "process"
    """outcome: one advantage per member (its whole return); process: return-to-go at each step,
    normalised across the group at the same step (DeepSeekMath sec. 4.1.3)"""
    gamma: float = 0.99
    """discount of the returns-to-go (GRPO process supervision) and of GAE (PPO)"""
    scale: str = "group"
    """advantage scaling: group std (GRPO), batch std, or none (Dr. GRPO)"""

    # ------------------------------------------------------------------ PPO critic
    critic: str = "centralized"
    """PPO's value network input: decentralized (the agent's observation) or centralized
    (the global state plus the agent's index, MAPPO)"""
    critic_hidden: int = 128
    """hidden width of the critic"""
    gae_lambda: float = 0.95
    """GAE lambda (Schulman et al. 2016)"""
    vf_coef: float = 0.5
    """weight of the value loss"""
    clip_vloss: bool = True
    """clip the value update around the rollout's values by clip_eps (CleanRL, MAPPO)"""
    norm_value: bool = True
    """value normalisation: the critic predicts returns standardised by a running mean and std
    (MAPPO's ValueNorm)"""
    norm_adv: bool = True
    """normalise PPO advantages per minibatch (CleanRL); GRPO advantages are already group-scaled"""

    # ------------------------------------------------------------------ optimisation
    num_envs: int = 1024
    """matches stepped together (a multiple of group_size in branch / episode mode)"""
    total_env_steps: int = 2_000_000
    """budget in match-steps (one vector-env step of num_envs matches counts num_envs)"""
    max_minutes: float = 0.0
    """stop after this much training time (evaluation included), 0 = no limit; the run then ends as
    if its budget were spent (final evaluation and checkpoint)"""
    learning_rate: float = 1e-3
    """Adam learning rate"""
    anneal_lr: bool = True
    """decay the learning rate linearly towards zero over the env-step budget (a run stopped
    earlier by `max_minutes` ends part-way down the ramp)"""
    update_epochs: int = 2
    """passes over each batch"""
    num_minibatches: int = 8
    """minibatches per pass (split over sequences: one player's segment of steps)"""
    clip_eps: float = 0.2
    """PPO / GRPO ratio clip (Schulman et al. 2017)"""
    clip_eps_high: float | None = None
    """upper clip if different (DAPO's clip-higher, Yu et al. 2025)"""
    loss_type: str = "grpo"
    """aggregation of the per-step losses, with TRL's semantics: grpo, bnpo, dr_grpo, dapo"""
    ent_coef: float = 0.01
    """entropy bonus coefficient"""
    max_grad_norm: float = 0.5
    """gradient clipping norm"""
    kl_coef: float = 0.0
    """weight of the k3 KL to a reference policy (0 = off, as in DeepSeekMath's default here)"""
    ref_refresh: int = 20
    """iterations between refreshes of the reference policy (iterative GRPO)"""

    # ------------------------------------------------------------------ policy
    arch: str = "mlp"
    """policy network: mlp, or entity (DeepSets over teammates and opponents; plays any team size)"""
    hidden: int = 128
    """hidden width of the policy"""

    # ------------------------------------------------------------------ evaluation and logging
    eval_every: int = 20
    """iterations between evaluations against the bot (0 = only at the end)"""
    eval_matches: int = 64
    """matches per evaluation, over a fixed set of seeds"""
    eval_opponent: str = "team"
    """scripted bot used for evaluation"""
    eval_strength: float = 1.0
    """strength of the evaluation bot"""
    save_every: int = 20
    """iterations between checkpoints (a checkpoint is also written at the end)"""
    progress: bool = True
    """show a tqdm progress bar"""

    def derived(self) -> dict[str, Any]:
        """Validate the config and return the values computed from it."""
        if self.algo not in ALGOS:
            raise ValueError(f"algo={self.algo!r} is invalid: expected one of {ALGOS}")
        if self.critic not in CRITIC_KINDS:
            raise ValueError(f"critic={self.critic!r} is invalid: expected one of {CRITIC_KINDS}")
        for name in ("gamma", "gae_lambda"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name}={getattr(self, name)!r} is invalid: expected a value in [0, 1]")
        parts = self.group_mode.split("+")
        unknown = [p for p in parts if p not in GROUP_BASES]
        if unknown or len(set(parts)) != len(parts) or {"branch", "episode"} <= set(parts):
            raise ValueError(
                f"group_mode={self.group_mode!r} is invalid: expected team, branch or episode, "
                "optionally combined with team (e.g. branch+team)"
            )
        if self.supervision not in SUPERVISIONS:
            raise ValueError(f"supervision={self.supervision!r} is invalid: expected one of {SUPERVISIONS}")
        if self.opponent not in (*BOT_NAMES, "self"):
            raise ValueError(f"opponent={self.opponent!r} is invalid: expected one of {(*BOT_NAMES, 'self')}")
        if self.eval_opponent not in BOT_NAMES:
            raise ValueError(f"eval_opponent={self.eval_opponent!r} is invalid: expected one of {BOT_NAMES}")
        ppo = self.algo == "ppo"
        branch, episode = not ppo and "branch" in parts, not ppo and "episode" in parts
        if (branch or episode) and (self.group_size < 2 or self.num_envs % self.group_size):
            raise ValueError(
                f"num_envs={self.num_envs} must be a multiple of group_size={self.group_size} (>= 2) "
                f"in {self.group_mode} mode"
            )
        for name in ("num_envs", "total_env_steps", "branch_horizon", "update_epochs", "num_minibatches", "max_cycles"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)!r} is invalid: expected an int >= 1")
        segment = self.max_cycles if episode else self.branch_horizon
        per_iteration = segment * self.num_envs
        return {
            "team_in_group": not ppo and "team" in parts,
            "branch": branch,
            "episode": episode,
            "segment_len": segment,
            "env_steps_per_iteration": per_iteration,
            "iterations": max(1, self.total_env_steps // per_iteration),
        }

    def env_kwargs(self) -> dict[str, Any]:
        return {"team_size": self.team_size, "max_cycles": self.max_cycles,
                "reward_dist_to_ball": self.reward_dist_to_ball}

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


PRESETS: dict[str, TrainConfig] = {
    # the README's first command: a couple of minutes on 2 CPU cores
    "quick": TrainConfig(name="quick", total_env_steps=3_000_000, eval_every=10, eval_matches=32, save_every=10),
    # the learning benchmark: 2v2 against the positional team bot, 15 minutes on 2 cores
    "2v2": TrainConfig(name="2v2", total_env_steps=100_000_000, max_minutes=15.0, eval_every=50),
    # the PPO-with-critic baseline on the same benchmark (4 epochs: PPO's best in a small sweep)
    "ppo-2v2": TrainConfig(name="ppo-2v2", algo="ppo", update_epochs=4, total_env_steps=100_000_000,
                           max_minutes=15.0, eval_every=50),
    # self-play, both sides learn
    "selfplay": TrainConfig(name="selfplay", opponent="self"),
    # one entity-encoder policy
    "entity": TrainConfig(name="entity", arch="entity"),
    # the smallest real run, for tests
    "tiny": TrainConfig(name="tiny", num_envs=16, group_size=4, branch_horizon=8, max_cycles=40,
                        total_env_steps=16 * 8 * 3, eval_every=2, eval_matches=4, save_every=1,
                        hidden=32, progress=False),
}


def pick_preset(presets: dict[str, Any], name: str) -> Any:
    """A fresh copy of `presets[name]` (train, compare and llm presets alike); a clear error otherwise."""
    if name not in presets:
        raise ValueError(f"unknown preset {name!r}; choose one of: {', '.join(presets)}")
    return dataclasses.replace(presets[name])


def preset(name: str) -> TrainConfig:
    return pick_preset(PRESETS, name)
