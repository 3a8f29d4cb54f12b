"""The PPO-with-critic baseline: GAE advantages from a learned value network.

The same shared policy, the same `marl_grpo.losses.policy_loss` and the same update step
(`marl_grpo.run.update.policy_update`) as GRPO; what differs is where the advantage comes from. MAPPO-style options (Yu et
al. 2022, "The Surprising Effectiveness of PPO in Cooperative Multi-Agent Games"):

- `critic`: decentralized (V of the agent's observation, IPPO) or centralized (V of the global
  state plus the agent's index, MAPPO);
- `clip_vloss`: value clipping around the rollout's predictions (`marl_grpo.losses.value_loss`);
- `norm_value`: the critic predicts returns standardised by a running mean and variance (MAPPO's
  ValueNorm; the statistics are gymnasium's `RunningMeanStd`, Chan et al.'s parallel update);
- `norm_adv`: advantages standardised per minibatch (CleanRL's `ppo.py`).

Advantages are GAE(gamma, lambda) (Schulman et al. 2016) over each player's segment, bootstrapped
with V of the observation after the segment. A match's end, at `max_cycles` too, is treated as
terminal: the observation holds the time left, so the time limit is part of the state.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from gymnasium.wrappers.utils import RunningMeanStd

from marl_grpo.advantages import gae
from marl_grpo.agents import SoccerCritic, SoccerPolicy
from marl_grpo.envs.config import SoccerConfig
from marl_grpo.losses import explained_variance, value_loss
from marl_grpo.rl.learner import Algorithm
from marl_grpo.rl.rollout import Segment
from marl_grpo.run import distributed
from marl_grpo.run.update import UpdateBatch


class ValueNormalizer:
    """Running mean and variance of the value targets (MAPPO's ValueNorm, without its EMA)."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self.stats = RunningMeanStd(shape=())

    def update(self, returns: torch.Tensor) -> None:
        """Add a batch of targets (under torchrun: every rank's batch, so the statistics agree)."""
        if self.enabled:
            count, mean, var = (float(v) for v in distributed.moments(returns))
            self.stats.update_from_moments(np.float64(mean), np.float64(var), count)

    def _moments(self) -> tuple[float, float]:
        return float(self.stats.mean), float(np.sqrt(self.stats.var + 1e-8))

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        if not self.enabled:
            return x
        mean, std = self._moments()
        return (x - mean) / std

    def denormalize(self, x: torch.Tensor) -> torch.Tensor:
        if not self.enabled:
            return x
        mean, std = self._moments()
        return x * std + mean

    def state_dict(self) -> dict[str, float]:
        return {"mean": float(self.stats.mean), "var": float(self.stats.var), "count": float(self.stats.count)}

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.stats.mean, self.stats.var, self.stats.count = (np.float64(state[k]) for k in ("mean", "var", "count"))


class PPOLearner(Algorithm):
    """GAE advantages from `SoccerCritic`; policy and value trained together by one Adam (CleanRL)."""

    compare_args = "--update-epochs 4"  # PPO's best in a small sweep, where GRPO keeps the shared 2
    color = "tab:orange"

    def __init__(self, policy: SoccerPolicy, cfg: Any, env_config: SoccerConfig):
        self.critic = SoccerCritic(env_config, kind=cfg.critic, hidden=cfg.critic_hidden, device=policy.device)
        super().__init__(policy, cfg, env_config, extra_parameters=self.critic.parameters())
        self.value_norm = ValueNormalizer(cfg.norm_value)

    @property
    def needs_state(self) -> bool:
        return self.critic.kind == "centralized"

    def describe(self) -> str:
        return f"no groups, {self.critic.kind} critic"

    @torch.no_grad()
    def advantages(self, segment: Segment) -> tuple[UpdateBatch, dict[str, float]]:
        """The update batch, with GAE advantages [T, S] (S = B * C sequences, as GRPO's) and the
        value loss of the critic on the segment's targets, and value statistics."""
        T, B, C = segment.rewards.shape
        inputs = self.critic.inputs(segment.obs, segment.states, segment.agents)  # [T, B, C, D_in]
        values = self.critic(inputs)  # [T, B, C], normalised space
        last = self.critic(self.critic.inputs(segment.next_obs, segment.next_state, segment.agents))
        dones = segment.dones[:, :, None].expand(T, B, C)
        raw_values = self.value_norm.denormalize(values)
        advantages, returns = gae(segment.rewards, raw_values, dones, self.value_norm.denormalize(last),
                                  gamma=self.cfg.gamma, lam=self.cfg.gae_lambda)
        stats = {"losses/explained_variance": float(explained_variance(raw_values, returns)),
                 "ppo/value_mean": float(raw_values.mean()),
                 "ppo/return_mean": float(returns.mean()),
                 "ppo/reward_mean": float(segment.rewards.sum(0).mean())}
        self.value_norm.update(returns)
        S = B * C
        inputs, old_values = inputs.reshape(T, S, -1), values.reshape(T, S)
        targets = self.value_norm.normalize(returns).reshape(T, S)
        keep = segment.learned_rows()
        if keep is not None:  # the critic learns the learner's own sequences, as the policy
            inputs, old_values, targets = inputs[:, keep], old_values[:, keep], targets[:, keep]
        clip = self.cfg.clip_eps if self.cfg.clip_vloss else None

        def critic_loss(rows: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
            """`vf_coef` x the (clipped) value loss of the sequences `rows`, in the normalised space."""
            loss, value_stats = value_loss(self.critic(inputs[:, rows]), old_values[:, rows], targets[:, rows],
                                           clip_eps=clip)
            value_stats.pop("explained_variance")  # logged once per iteration from the rollout's values (CleanRL)
            return self.cfg.vf_coef * loss, value_stats

        batch = self.policy_batch(segment, advantages.reshape(T, S), aux_loss=critic_loss,
                                  normalize_advantages=self.cfg.norm_adv)
        return batch, stats

    def num_parameters(self) -> dict[str, int]:
        return {**super().num_parameters(), "critic_parameters": self.critic.num_parameters()}

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "critic": self.critic.state_dict(), "value_norm": self.value_norm.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.critic.load_state_dict(state["critic"])
        self.value_norm.load_state_dict(state["value_norm"])

