"""The GRPO learner for soccer: group-relative advantages, then the shared clipped-ratio update.

No critic anywhere: each player's advantage is measured against its group (DeepSeekMath,
Shao et al. 2024, eq. 3-4), where a group is made of teammates, of G branches continued from one
copied state, or of G matches from one kickoff seed (`marl_grpo.config.TrainConfig.group_mode`).
"""

from __future__ import annotations

import torch

from marl_grpo.advantages import group_advantages, group_stats, process_group_advantages
from marl_grpo.learner import PolicyLearner
from marl_grpo.rollout import Segment


class GRPOLearner(PolicyLearner):
    """Group-relative advantages; the update, optimiser and reference policy are `PolicyLearner`'s."""

    # ------------------------------------------------------------------ advantages
    def group_ids(self, segment: Segment) -> torch.Tensor:
        """[M] group of each sequence m = b * C + c (match b, controlled agent c)."""
        T, B, C = segment.rewards.shape
        device = segment.rewards.device
        match = torch.arange(B, device=device).repeat_interleave(C)
        slot = torch.arange(C, device=device).repeat(B)
        team = segment.team.to(device)[slot]
        if self.derived["branch"] or self.derived["episode"]:
            block = match // self.cfg.group_size  # the G copies of one state / one kickoff
            if self.derived["team_in_group"]:
                return block * 2 + team  # every teammate in every copy
            return block * C + slot  # the same player across the copies
        return match * 2 + team  # team mode: the teammates at the same step of the same match

    def advantages(self, segment: Segment) -> tuple[torch.Tensor, dict[str, float]]:
        """Advantages [T, M] and group statistics of a segment."""
        cfg = self.cfg
        T, B, C = segment.rewards.shape
        rewards = segment.rewards.reshape(T, B * C)
        dones = segment.dones.repeat_interleave(C, dim=1)
        ids = self.group_ids(segment)
        returns = rewards.sum(0)
        if cfg.supervision == "outcome":
            adv = group_advantages(returns, group_ids=ids, scale=cfg.scale).expand(T, -1)
        else:
            adv = process_group_advantages(rewards, group_ids=ids, gamma=cfg.gamma, scale=cfg.scale, dones=dones)
        stats = {f"grpo/{k}": float(v) for k, v in group_stats(returns, group_ids=ids).items()}
        stats["grpo/group_size"] = float(torch.unique(ids, return_counts=True)[1].float().mean())
        stats["grpo/reward_mean"] = float(returns.mean())
        stats["grpo/adv_abs_mean"] = float(adv.abs().mean())
        return adv, stats
