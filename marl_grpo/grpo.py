"""The GRPO learner for soccer: group-relative advantages, then the shared clipped-ratio update.

No critic anywhere: each player's advantage is measured against its group (DeepSeekMath,
Shao et al. 2024, eq. 3-4), where a group is made of teammates, of G branches continued from one
copied state, or of G matches from one kickoff seed (`marl_grpo.config.TrainConfig.group_mode`).
"""

from __future__ import annotations

import copy
from typing import Any

import torch

from marl_grpo.advantages import group_advantages, group_stats, process_group_advantages
from marl_grpo.agents import SoccerPolicy
from marl_grpo.config import TrainConfig
from marl_grpo.losses import policy_loss
from marl_grpo.rollout import Segment


class GRPOLearner:
    """Advantages and updates for one policy; holds the optimiser and the reference policy."""

    def __init__(self, policy: SoccerPolicy, cfg: TrainConfig):
        self.policy, self.cfg = policy, cfg
        self.derived = cfg.derived()
        self.optimizer = torch.optim.Adam(policy.parameters(), lr=cfg.learning_rate, eps=1e-5)
        # iterative GRPO's reference policy: a frozen copy, refreshed every `ref_refresh` iterations
        self.ref_policy = copy.deepcopy(policy).requires_grad_(False) if cfg.kl_coef > 0 else None

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

    # ------------------------------------------------------------------ update
    def refresh_reference(self) -> None:
        if self.ref_policy is not None:
            self.ref_policy.load_state_dict(self.policy.state_dict())

    def set_learning_rate(self, lr: float) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def update(self, segment: Segment, advantages: torch.Tensor) -> dict[str, float]:
        """`update_epochs` passes of `num_minibatches` clipped-ratio steps over the segment's sequences."""
        cfg, policy = self.cfg, self.policy
        T, B, C, D = segment.obs.shape
        M = B * C
        obs = segment.obs.reshape(T, M, D)
        actions = segment.actions.reshape(T, M)
        old_logp = segment.logp.reshape(T, M)
        mb_size = max(1, M // cfg.num_minibatches)
        totals: dict[str, float] = {}
        count = 0
        for _ in range(cfg.update_epochs):
            order = torch.randperm(M, device=obs.device)
            for start in range(0, M, mb_size):
                idx = order[start : start + mb_size]
                logp, entropy = policy.evaluate(obs[:, idx], actions[:, idx])  # [T, m]
                ref_logp = None
                if self.ref_policy is not None:
                    with torch.no_grad():
                        ref_logp = self.ref_policy.evaluate(obs[:, idx], actions[:, idx])[0].T
                # sequences are players' segments: [S = m, T]
                loss, stats = policy_loss(
                    logp.T, old_logp[:, idx].T, advantages[:, idx].T,
                    clip_eps=cfg.clip_eps, clip_eps_high=cfg.clip_eps_high, loss_type=cfg.loss_type,
                    max_len=T, ref_logp=ref_logp, kl_coef=cfg.kl_coef, kl_estimator="k3",
                )
                entropy_mean = entropy.mean()
                total = loss - cfg.ent_coef * entropy_mean
                self.optimizer.zero_grad(set_to_none=True)
                total.backward()
                grad_norm = torch.nn.utils.clip_grad_norm_(policy.parameters(), cfg.max_grad_norm)
                self.optimizer.step()
                stats = {**stats, "entropy": entropy_mean.detach(), "grad_norm": grad_norm, "loss": total.detach()}
                for key, value in stats.items():
                    totals[key] = totals.get(key, 0.0) + float(value)
                count += 1
        names = {"policy_loss": "losses/policy_loss", "entropy": "losses/entropy", "approx_kl": "losses/approx_kl",
                 "clip_frac": "losses/clipfrac", "kl": "losses/kl", "ratio_mean": "losses/ratio_mean",
                 "clip_frac_low": "losses/clipfrac_low", "clip_frac_high": "losses/clipfrac_high",
                 "grad_norm": "losses/grad_norm", "loss": "losses/total_loss"}
        return {names.get(k, f"losses/{k}"): v / count for k, v in totals.items()}

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        return {
            "optimizer": self.optimizer.state_dict(),
            "ref_policy": None if self.ref_policy is None else self.ref_policy.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        if self.ref_policy is not None and state.get("ref_policy") is not None:
            self.ref_policy.load_state_dict(state["ref_policy"])
