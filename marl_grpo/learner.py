"""What GRPO and PPO share: the optimiser, the reference policy and the clipped-ratio update.

A learner turns a rollout `Segment` into advantages (`advantages`, algorithm specific) and then
runs `update_epochs` passes of `num_minibatches` steps of `marl_grpo.losses.policy_loss` over the
segment's sequences (one player's stretch of steps is one sequence). PPO adds its value loss
through `_auxiliary_loss`; there is one policy loss in the project.
"""

from __future__ import annotations

import copy
from typing import Any, Iterable

import torch

from marl_grpo.agents import SoccerPolicy
from marl_grpo.config import TrainConfig
from marl_grpo.losses import policy_loss
from marl_grpo.rollout import Segment

LOSS_TAGS = {"policy_loss": "losses/policy_loss", "entropy": "losses/entropy", "approx_kl": "losses/approx_kl",
             "clip_frac": "losses/clipfrac", "kl": "losses/kl", "ratio_mean": "losses/ratio_mean",
             "clip_frac_low": "losses/clipfrac_low", "clip_frac_high": "losses/clipfrac_high",
             "grad_norm": "losses/grad_norm", "loss": "losses/total_loss"}
"""stats keys of `policy_loss` (and the update) -> TensorBoard tags (CleanRL's names where they exist)"""


class PolicyLearner:
    """Holds the optimiser (over the policy and any extra modules) and the reference policy."""

    normalize_advantages = False
    """standardise the advantages of each minibatch (PPO's option; GRPO's are already group-scaled)"""
    needs_state = False
    """whether `advantages` reads the global state (`Segment.states`), so the rollout must keep it"""

    def __init__(self, policy: SoccerPolicy, cfg: TrainConfig, extra_parameters: Iterable[torch.nn.Parameter] = ()):
        self.policy, self.cfg = policy, cfg
        self.derived = cfg.derived()
        self.parameters = [*policy.parameters(), *extra_parameters]
        self.optimizer = torch.optim.Adam(self.parameters, lr=cfg.learning_rate, eps=1e-5)
        # iterative GRPO's reference policy: a frozen copy, refreshed every `ref_refresh` iterations
        self.ref_policy = copy.deepcopy(policy).requires_grad_(False) if cfg.kl_coef > 0 else None

    def advantages(self, segment: Segment) -> tuple[torch.Tensor, dict[str, float]]:
        """Advantages `[T, M]` of a segment's M = B * C sequences, and stats to log."""
        raise NotImplementedError

    def _auxiliary_loss(self, idx: torch.Tensor) -> tuple[torch.Tensor | float, dict[str, torch.Tensor]]:
        """An extra loss term on the minibatch of sequences `idx` (PPO: the value loss)."""
        return 0.0, {}

    def refresh_reference(self) -> None:
        if self.ref_policy is not None:
            self.ref_policy.load_state_dict(self.policy.state_dict())

    def num_parameters(self) -> dict[str, int]:
        """Trainable parameters by network (the policy; PPO adds its critic)."""
        return {"actor_parameters": self.policy.num_parameters()}

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
        totals: dict[str, torch.Tensor] = {}
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
                adv = advantages[:, idx]
                if self.normalize_advantages:
                    adv = (adv - adv.mean()) / (adv.std() + 1e-8)
                # sequences are players' segments: [S = m, T]
                loss, stats = policy_loss(
                    logp.T, old_logp[:, idx].T, adv.T,
                    clip_eps=cfg.clip_eps, clip_eps_high=cfg.clip_eps_high, loss_type=cfg.loss_type,
                    max_len=T, ref_logp=ref_logp, kl_coef=cfg.kl_coef, kl_estimator="k3",
                )
                aux_loss, aux_stats = self._auxiliary_loss(idx)
                entropy_mean = entropy.mean()
                total = loss - cfg.ent_coef * entropy_mean + aux_loss
                self.optimizer.zero_grad(set_to_none=True)
                total.backward()
                grad_norm = torch.nn.utils.clip_grad_norm_(self.parameters, cfg.max_grad_norm)
                self.optimizer.step()
                stats = {**stats, **aux_stats, "entropy": entropy_mean.detach(), "grad_norm": grad_norm,
                         "loss": total.detach()}
                for key, value in stats.items():  # summed on the device: one sync at the end
                    totals[key] = totals[key] + value if key in totals else value.detach().clone()
                count += 1
        return {LOSS_TAGS.get(k, f"losses/{k}"): float(v) / count for k, v in totals.items()}

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
