"""`Algorithm`, what GRPO and PPO share: the optimiser, the reference policy, and the soccer `UpdateBatch`.

A learner turns a rollout `Segment` into an `UpdateBatch` (`advantages`, algorithm specific);
the run loop then calls the one update step, `marl_grpo.run.update.policy_update`, on it. A
sequence is one player's segment of T steps, a token one step. PPO adds its value loss through
`UpdateBatch.aux_loss`; there is one policy loss and one update in the project.

An `Algorithm` does not learn by itself: it prepares what the one update step learns from. To
add an algorithm: subclass `Algorithm`, implement `advantages`, set the class attributes, and add
it to `marl_grpo.rl.learners.LEARNERS`.
"""

from __future__ import annotations

import copy
from typing import Any, ClassVar, Iterable

import torch

from marl_grpo.agents import SoccerPolicy
from marl_grpo.envs import SoccerConfig
from marl_grpo.rl.rollout import Segment
from marl_grpo.run.update import AuxLoss, UpdateBatch


class Algorithm:
    """A soccer learning algorithm's state and advantages: it holds the optimiser (over the policy
    and any extra modules) and the reference policy of the KL term, and turns a rollout segment
    into the `UpdateBatch` of the run's update step.

    `cfg` is the run's `marl_grpo.rl.config.TrainConfig` (typed `Any`: the config names the
    algorithms in `LEARNERS`, so an algorithm does not import it back).
    """

    uses_groups: ClassVar[bool] = False
    """the rollout forms GRPO groups (`TrainConfig.groups` prepares each segment)"""
    compare_args: ClassVar[str] = ""
    """this algorithm's own `marl-grpo train` options in `marl-grpo compare` by default"""
    color: ClassVar[str] = "tab:gray"
    """its colour in plots"""

    def __init__(self, policy: SoccerPolicy, cfg: Any, env_config: SoccerConfig,
                 extra_parameters: Iterable[torch.nn.Parameter] = ()):
        self.policy, self.cfg, self.env_config = policy, cfg, env_config
        self.parameters = [*policy.parameters(), *extra_parameters]
        self.optimizer = torch.optim.Adam(self.parameters, lr=cfg.learning_rate, eps=1e-5)
        # the reference policy of the KL term: a frozen copy, refreshed by the run loop
        self.ref_policy = copy.deepcopy(policy).requires_grad_(False) if cfg.kl_coef > 0 else None

    @property
    def needs_state(self) -> bool:
        """whether `advantages` reads the global state (`Segment.states`), so the rollout must keep it"""
        return False

    def describe(self) -> str:
        """A few words on how the advantages are formed (for benchmark output)."""
        return ""

    def advantages(self, segment: Segment) -> tuple[UpdateBatch, dict[str, float]]:
        """The update batch of a segment (advantages and all the update needs) and stats to log."""
        raise NotImplementedError

    def policy_batch(self, segment: Segment, advantages: torch.Tensor, aux_loss: AuxLoss | None = None,
                     normalize_advantages: bool = False) -> UpdateBatch:
        """The `UpdateBatch` of a segment's S = B * C sequences with advantages [T, B * C] (only the
        learned ones, `Segment.learned_rows`, when a league plays).

        Everything is laid out [S, T] and contiguous once here, so that a minibatch of sequences is
        a contiguous slice of rows and every tensor of the loss has the same layout.
        """
        T, B, C, D = segment.obs.shape
        obs = segment.obs.reshape(T, B * C, D).transpose(0, 1)  # [S, T, D]
        actions = segment.actions.reshape(T, B * C).T  # [S, T]
        old_logp, advantages = segment.logp.reshape(T, B * C).T, advantages.T
        keep = segment.learned_rows()
        if keep is not None:  # only the learner's own sequences (a league's pool members play red)
            obs, actions, old_logp, advantages = obs[keep], actions[keep], old_logp[keep], advantages[keep]
        obs, actions = obs.contiguous(), actions.contiguous()
        S = obs.shape[0]

        def log_probs(rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            return self.policy.logp_and_entropy(obs[rows], actions[rows])  # [s, T] each

        ref_logp = None
        if self.ref_policy is not None:
            with torch.no_grad():
                ref_logp = self.ref_policy.logp_and_entropy(obs, actions)[0]
        return UpdateBatch(advantages=advantages.contiguous(), log_probs=log_probs, num_units=S,
                           old_logp=old_logp.contiguous(), ref_logp=ref_logp, max_len=T,
                           aux_loss=aux_loss, normalize_advantages=normalize_advantages)

    def refresh_reference(self) -> None:
        if self.ref_policy is not None:
            self.ref_policy.load_state_dict(self.policy.state_dict())

    def num_parameters(self) -> dict[str, int]:
        """Trainable parameters by network (the policy; PPO adds its critic)."""
        return {"actor_parameters": self.policy.num_parameters()}

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
