"""The GRPO learner for soccer: group-relative advantages, then the shared clipped-ratio update.

No critic anywhere: each player's advantage is measured against its group (DeepSeekMath,
Shao et al. 2024, eq. 3-4), where a group is made of teammates, of G branches continued from one
copied state, or of G matches from one kickoff seed (`marl_grpo.rl.groups`).
"""

from __future__ import annotations

import torch

from marl_grpo.advantages import episode_returns, group_advantages, group_stats, process_group_advantages
from marl_grpo.rl.learner import PolicyLearner
from marl_grpo.rl.rollout import Segment
from marl_grpo.run.update import UpdateBatch


class GRPOLearner(PolicyLearner):
    """Group-relative advantages; the optimiser and reference policy are `PolicyLearner`'s."""

    uses_groups = True
    color = "tab:blue"

    def describe(self) -> str:
        return f"{self.cfg.group_mode} groups"

    def group_ids(self, segment: Segment) -> torch.Tensor:
        """[S] group of each sequence m = b * C + c (match b, controlled agent c)."""
        return self.cfg.groups.group_ids(segment.rewards.shape[1], segment.team.to(segment.rewards.device))

    def advantages(self, segment: Segment) -> tuple[UpdateBatch, dict[str, float]]:
        """The update batch, with advantages [T, S], and the group statistics of a segment."""
        cfg = self.cfg
        T, B, C = segment.rewards.shape
        rewards = segment.rewards.reshape(T, B * C)
        dones = segment.dones.repeat_interleave(C, dim=1)
        ids = self.group_ids(segment)
        returns = rewards.sum(0)
        if cfg.supervision == "outcome":
            # each step's whole-episode return, split where a match ended inside the segment,
            # compared across the group at the same step
            outcomes = episode_returns(rewards, dones)  # [T, S]
            adv = group_advantages(outcomes.T, group_ids=ids, scale=cfg.scale).T
        else:
            adv = process_group_advantages(rewards, group_ids=ids, gamma=cfg.gamma, scale=cfg.scale, dones=dones)
        keep = segment.learned_rows()
        if keep is not None:  # statistics of the learner's own sequences
            returns, ids, learned_adv = returns[keep], ids[keep], adv[:, keep]
        else:
            learned_adv = adv
        stats = {f"grpo/{k}": v for k, v in group_stats(returns, group_ids=ids).items()}
        stats["grpo/group_size"] = torch.unique(ids, return_counts=True)[1].float().mean()
        stats["grpo/reward_mean"] = returns.mean()
        stats["grpo/adv_abs_mean"] = learned_adv.abs().mean()
        values = torch.stack([torch.as_tensor(v, dtype=torch.float32, device=adv.device)
                              for v in stats.values()]).tolist()  # one host sync
        return self.policy_batch(segment, adv), dict(zip(stats, values))
