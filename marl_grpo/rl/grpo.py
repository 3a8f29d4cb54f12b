"""The GRPO learner for soccer: group-relative advantages, then the shared clipped-ratio update.

No critic anywhere: each player's advantage is measured against its group (DeepSeekMath,
Shao et al. 2024, eq. 3-4), where a group is made of teammates, of G branches continued from one
copied state, or of G matches from one kickoff seed (`marl_grpo.rl.groups`).
"""

from __future__ import annotations

import torch

from marl_grpo.advantages import episode_returns, group_advantages, group_stats, process_group_advantages
from marl_grpo.rl.learner import Algorithm
from marl_grpo.rl.rollout import Segment
from marl_grpo.run.update import UpdateBatch


class GRPOLearner(Algorithm):
    """Group-relative advantages; the optimiser and reference policy are `Algorithm`'s."""

    uses_groups = True
    color = "tab:blue"

    def describe(self) -> str:
        return f"{self.cfg.group_mode} groups"

    def group_ids(self, segment: Segment) -> torch.Tensor:
        """[S] group of each sequence m = b * C + c (match b, controlled agent c)."""
        return self.cfg.groups.group_ids(segment.rewards.shape[1], segment.team.to(segment.rewards.device))

    def advantages(self, segment: Segment) -> tuple[UpdateBatch, dict[str, float]]:
        """The update batch, with advantages [T, S], and the group statistics of a segment.

        `advantage_baseline` (mean, or RLOO's leave-one-out) and `reward_aggregation` apply as in
        `marl_grpo.advantages.group_advantages`; with `normalize_then_sum` the rollout keeps the
        env's reward components (goal, ball touch, progress, shot, distance: `Segment.reward_components`)
        and each is normalised within its group before the weighted sum (GDPO)."""
        cfg = self.cfg
        T, B, C = segment.rewards.shape
        dones = segment.dones.repeat_interleave(C, dim=1)
        ids = self.group_ids(segment)
        returns = segment.rewards.reshape(T, B * C).sum(0)
        options = {"baseline": cfg.advantage_baseline, "aggregation": cfg.reward_aggregation}
        if segment.reward_components is not None:  # [T, B, C, F]: each component against its group first
            rewards = segment.reward_components.reshape(T, B * C, -1)
            # the components come weighted (w c): normalising w c gives sign(w) times normalised c, so
            # |w| makes the sum GDPO's sum of w times normalised c
            options.update(components=True, reward_weights=[abs(w) for w in self.env_config.reward_weights.values()])
        else:
            rewards = segment.rewards.reshape(T, B * C)
        if cfg.supervision == "outcome":
            # each step's whole-episode return, split where a match ended inside the segment,
            # compared across the group at the same step
            outcome_dones = dones if rewards.ndim == 2 else dones[..., None].expand_as(rewards)
            outcomes = episode_returns(rewards, outcome_dones)  # [T, S] ([T, S, F])
            adv = group_advantages(outcomes.transpose(0, 1), group_ids=ids, scale=cfg.scale, **options).T
        else:
            adv = process_group_advantages(rewards, group_ids=ids, gamma=cfg.gamma, scale=cfg.scale, dones=dones,
                                           **options)
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
