"""Loss core: the policy losses shared by PPO and the GRPO family (every TRL 1.16 ``loss_type``:
GRPO, BNPO, Dr. GRPO, DAPO, CISPO, SAPO, LUSPO, VESPO; GSPO's sequence ratio), the KL penalty to a
reference policy, and the PPO critic's value loss.

Pure functions on tensors: no env, model or logger is imported here. Soccer and language
models call the same code. For soccer a *sequence* is one player's segment of steps and a
*token* is one step; for an LLM they are a completion and its tokens.

Shape letters used below:

- ``S``: sequences in the batch (rows);
- ``T``: tokens / steps per sequence, right-padded; ``mask`` marks the real ones.

Stats convention
----------------
Every function that returns ``(loss, stats)`` fills ``stats`` with **detached 0-dim tensors**
on the input's device (never python floats), so a training loop can accumulate them over
minibatches without a host-device sync. Call ``float(v)`` or ``v.item()`` when logging.

Padding convention
------------------
Positions where ``mask == 0`` may hold any value, even ``-inf`` or NaN (for example the
log-prob of a pad token): they are replaced by zeros before any arithmetic, so they can
never leak NaN into the loss or the gradient.
"""

from __future__ import annotations

import math
import numbers
import warnings
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch

__all__ = [
    "CLIPPED_LOSS_TYPES",
    "KL_ESTIMATORS",
    "LOSS_RATIO_LEVELS",
    "LOSS_TYPES",
    "RATIO_LEVELS",
    "CispoTerms",
    "ClippedTerms",
    "PolicyLossOptions",
    "Ratio",
    "SapoTerms",
    "VespoTerms",
    "aggregate",
    "check_loss_options",
    "cispo_surrogate",
    "clipped_surrogate",
    "explained_variance",
    "importance_ratio",
    "kl_penalty",
    "off_policy_mask",
    "policy_loss",
    "sapo_surrogate",
    "value_loss",
    "vespo_surrogate",
]

LOSS_TYPES = ("grpo", "bnpo", "dr_grpo", "dapo", "cispo", "sapo", "luspo", "vespo")
"""The policy losses, named and defined as TRL 1.16's ``GRPOConfig.loss_type`` (see :func:`policy_loss`)."""

CLIPPED_LOSS_TYPES = ("grpo", "bnpo", "dr_grpo", "dapo", "luspo")
"""Loss types built on PPO's clipped surrogate (they differ in aggregation); ``delta`` and
``dual_clip`` apply to these only."""

RATIO_LEVELS = ("token", "sequence")
"""``token``: PPO/GRPO per-token ratio. ``sequence``: GSPO sequence-level ratio."""

LOSS_RATIO_LEVELS = {"luspo": ("sequence",), "vespo": ("token",)}
"""The one ratio level at which a loss type's paper defines it (every other type allows both):
``vespo`` refuses the other level; ``luspo`` at token level computes TRL 1.16's result, with a
warning (see :func:`check_loss_options`)."""

KL_ESTIMATORS = ("k1", "k2", "k3")
"""Schulman's (2020) single-sample estimators of KL(pi || pi_ref)."""


# --------------------------------------------------------------------------- validation


def _check_choice(name: str, value: object, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {allowed}, got {value!r}")


def _check_shape(name: str, tensor: torch.Tensor, expected: tuple[int, ...], hint: str) -> None:
    if tuple(tensor.shape) != expected:
        raise ValueError(
            f"{name} must have shape {hint} = {list(expected)}, got {list(tensor.shape)}"
        )


def _as_float(x: torch.Tensor) -> torch.Tensor:
    """Compute in at least float32: bf16/fp16 log-ratios lose the precision exp() needs."""
    if not x.is_floating_point():
        return x.to(torch.get_default_dtype())
    return x.to(torch.promote_types(x.dtype, torch.float32))


def _prepare_mask(
    mask: torch.Tensor | None, like: torch.Tensor, like_name: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return ``(weights, valid)``: the mask as float weights and as a bool, both shaped like ``like``."""
    if mask is None:
        return torch.ones_like(like), torch.ones_like(like, dtype=torch.bool)
    _check_shape("mask", mask, tuple(like.shape), f"like {like_name}")
    weights = mask.to(like.dtype)
    return weights, weights != 0


def _masked_mean(x: torch.Tensor, weights: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Masked mean; an all-masked slice gives 0 (TRL's ``clamp(min=1)`` convention)."""
    if dim is None:
        return (x * weights).sum() / weights.sum().clamp(min=1.0)
    return (x * weights).sum(dim) / weights.sum(dim).clamp(min=1.0)


# --------------------------------------------------------------------------- KL


def kl_penalty(logp: torch.Tensor, ref_logp: torch.Tensor, estimator: str = "k3") -> torch.Tensor:
    """Per-token single-sample estimate of KL(pi_theta || pi_ref), for tokens sampled from pi.

    With ``x = logp - ref_logp`` (Schulman, "Approximating KL divergence", 2020):

    - ``k1 = x``: unbiased, high variance, can be negative;
    - ``k2 = x**2 / 2``: biased, low variance, always >= 0;
    - ``k3 = exp(-x) - (-x) - 1 = exp(ref - logp) - (ref - logp) - 1``: unbiased, low variance,
      always >= 0. DeepSeekMath's GRPO (Shao et al. 2024, eq. 4) and TRL use k3.

    Args:
        logp: ``[S, T]`` log-probs under the current policy (carries the gradient).
        ref_logp: ``[S, T]`` log-probs under the reference policy.
        estimator: one of :data:`KL_ESTIMATORS`.

    Returns:
        ``[S, T]`` per-token KL estimate; identical inputs give exactly 0 for every estimator.
    """
    _check_choice("kl_estimator", estimator, KL_ESTIMATORS)
    log_ratio = logp - ref_logp
    if estimator == "k1":
        return log_ratio
    if estimator == "k2":
        return 0.5 * log_ratio.square()
    return torch.exp(-log_ratio) + log_ratio - 1.0


# --------------------------------------------------------------------------- options


def check_loss_options(
    loss_type: str, ratio_level: str, *, delta: float | None = None, dual_clip: float | None = None
) -> None:
    """Raise a ``ValueError`` for an unknown ``loss_type``/``ratio_level`` or a refused combination.

    The combination rules of :class:`PolicyLossOptions`, which calls this once on construction:

    - ``vespo`` needs ``ratio_level="token"`` (:data:`LOSS_RATIO_LEVELS`): it builds its sequence
      weight from the token log-ratios itself, and its paper defines it there only.
    - ``luspo`` at ``ratio_level="token"`` computes what TRL 1.16 computes (the clipped surrogate
      with token ratios, each sequence's token losses summed, then the mean over sequences) and
      warns, as TRL's ``GRPOTrainer.__init__`` does: the LUSPO paper defines it with sequence
      ratios. TRL also only warns for ``vespo`` at sequence level, and for
      ``bnpo``/``dr_grpo``/``dapo``/``cispo`` with sequence ratios; we refuse the first and
      allow the others (GSPO with DAPO's token-level loss is a preset of the LLM mode).
    - ``delta`` and ``dual_clip`` bound PPO's clipped surrogate, so they need a loss type that
      has one (:data:`CLIPPED_LOSS_TYPES`); TRL silently ignores ``delta`` for the others.
    """
    _check_choice("loss_type", loss_type, LOSS_TYPES)
    _check_choice("ratio_level", ratio_level, RATIO_LEVELS)
    paper_level = LOSS_RATIO_LEVELS.get(loss_type, RATIO_LEVELS)
    if ratio_level not in paper_level and loss_type == "vespo":
        raise ValueError(
            f"loss_type='vespo' needs ratio_level={paper_level[0]!r}, got ratio_level={ratio_level!r} "
            "(VESPO computes its own sequence-level weight from the token log-ratios)"
        )
    if ratio_level not in paper_level:  # luspo at token level
        warnings.warn(
            f"loss_type={loss_type!r} with ratio_level={ratio_level!r} computes TRL 1.16's result (token "
            f"ratios, each sequence's token losses summed); the LUSPO paper uses ratio_level={paper_level[0]!r}",
            UserWarning,
            stacklevel=4,  # the code that built the PolicyLossOptions (through __init__, __post_init__)
        )
    for name, value in (("delta", delta), ("dual_clip", dual_clip)):
        if value is not None and loss_type not in CLIPPED_LOSS_TYPES:
            raise ValueError(
                f"{name}={value!r} bounds the clipped surrogate of the loss types {CLIPPED_LOSS_TYPES}; "
                f"loss_type={loss_type!r} has none: set {name}=None"
            )


def _is_number(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _check_optional(name: str, value: float | None, low: float, low_open: bool) -> None:
    if value is None:
        return
    ok = _is_number(value) and math.isfinite(value) and (value > low if low_open else value >= low)
    if not ok:
        raise ValueError(f"{name} must be a finite number {'>' if low_open else '>='} {low} or None, got {value!r}")


@dataclass(frozen=True)
class PolicyLossOptions:
    """Every option of :func:`policy_loss`, validated once, when built.

    The names and defaults are TRL 1.16's ``GRPOConfig`` ones where TRL has the option, under our
    names: ``clip_eps``/``clip_eps_high`` are TRL's ``epsilon``/``epsilon_high``, ``kl_coef`` its
    ``beta`` and ``ratio_level`` its ``importance_sampling_level``. A run builds the options once
    from its config (``RunConfig.loss_options``) and passes them to every call: a call given
    options does not check them again. The object is frozen; ``dataclasses.replace`` makes a
    checked copy.

    Attributes:
        loss_type: one of :data:`LOSS_TYPES` (see :func:`policy_loss`)
        ratio_level: one of :data:`RATIO_LEVELS`: ``token`` (PPO, GRPO) or ``sequence`` (GSPO)
        clip_eps: lower clip, ``> 0``: the ratio is kept above ``1 - clip_eps``
        clip_eps_high: upper clip, ``> 0``: the ratio is kept below ``1 + clip_eps_high`` (``cispo``: below
            ``clip_eps_high`` itself); ``None``: ``clip_eps``
        dual_clip: ``c > 1`` bounds a negative advantage's clipped loss at ``-c A`` (Ye et al. 2020);
            clipped loss types only; ``None``: off
        delta: ``> 1``: the unclipped branch uses ``min(r, delta)`` (INTELLECT-2); clipped loss types only;
            ``None``: off
        off_policy_mask_threshold: ``>= 0``: drop a negative advantage's loss where the sequence drifted
            further than this (DeepSeek-V3.2); ``None``: off
        kl_coef: weight ``beta >= 0`` of the KL term; ``> 0`` needs ``ref_logp``
        kl_estimator: one of :data:`KL_ESTIMATORS` (see :func:`kl_penalty`)
        use_bias_correction_kl: multiply the per-token KL by the importance ratio (DeepSeek-V3.2's unbiased
            estimate)
        sapo_temperature_pos: SAPO's gate temperature where ``A > 0``, ``> 0``
        sapo_temperature_neg: SAPO's gate temperature where ``A <= 0``, ``> 0``
        vespo_k_pos: VESPO's power ``k`` where ``A >= 0``, ``>= 0``
        vespo_lambda_pos: VESPO's decay ``lambda`` where ``A >= 0``, ``> 0``
        vespo_k_neg: VESPO's power ``k`` where ``A < 0``, ``>= 0``
        vespo_lambda_neg: VESPO's decay ``lambda`` where ``A < 0``, ``> 0``
        max_len: ``dr_grpo``'s normaliser: the longest possible sequence, an int ``>= T`` (checked per
            call); ``None``: the batch's ``T``. The other loss types ignore it
    """

    loss_type: str = "grpo"
    ratio_level: str = "token"
    clip_eps: float = 0.2
    clip_eps_high: float | None = None
    dual_clip: float | None = None
    delta: float | None = None
    off_policy_mask_threshold: float | None = None
    kl_coef: float = 0.0
    kl_estimator: str = "k3"
    use_bias_correction_kl: bool = False
    sapo_temperature_pos: float = 1.0
    sapo_temperature_neg: float = 1.05
    vespo_k_pos: float = 2.0
    vespo_lambda_pos: float = 3.0
    vespo_k_neg: float = 3.0
    vespo_lambda_neg: float = 2.0
    max_len: int | None = None

    def __post_init__(self) -> None:
        check_loss_options(self.loss_type, self.ratio_level, delta=self.delta, dual_clip=self.dual_clip)
        _check_choice("kl_estimator", self.kl_estimator, KL_ESTIMATORS)
        if not (_is_number(self.clip_eps) and self.clip_eps > 0):
            raise ValueError(f"clip_eps must be > 0, got {self.clip_eps!r}")
        if self.clip_eps_high is not None and not (_is_number(self.clip_eps_high) and self.clip_eps_high > 0):
            raise ValueError(f"clip_eps_high must be > 0 or None, got {self.clip_eps_high!r}")
        if self.dual_clip is not None and not (_is_number(self.dual_clip) and self.dual_clip > 1):
            raise ValueError(f"dual_clip must be > 1 or None, got {self.dual_clip!r}")
        _check_optional("delta", self.delta, 1.0, low_open=True)
        _check_optional("off_policy_mask_threshold", self.off_policy_mask_threshold, 0.0, low_open=False)
        for name, low_open in (("sapo_temperature_pos", True), ("sapo_temperature_neg", True),
                               ("vespo_k_pos", False), ("vespo_k_neg", False),
                               ("vespo_lambda_pos", True), ("vespo_lambda_neg", True)):
            value = getattr(self, name)
            if value is None:
                raise ValueError(f"{name} must be a number, got None")
            _check_optional(name, value, 0.0, low_open=low_open)
        if not (_is_number(self.kl_coef) and self.kl_coef >= 0):
            raise ValueError(f"kl_coef must be >= 0, got {self.kl_coef!r}")
        if not isinstance(self.use_bias_correction_kl, bool):
            raise ValueError(f"use_bias_correction_kl must be True or False, got {self.use_bias_correction_kl!r}")
        if self.max_len is not None and (
                isinstance(self.max_len, bool) or not isinstance(self.max_len, numbers.Integral) or self.max_len < 1):
            raise ValueError(f"max_len must be an int >= 1 (the longest possible sequence) or None, "
                             f"got {self.max_len!r}")

    @property
    def eps_high(self) -> float:
        """The upper clip in use: ``clip_eps_high``, or ``clip_eps`` when that is ``None`` (as TRL)."""
        return self.clip_eps if self.clip_eps_high is None else self.clip_eps_high


# --------------------------------------------------------------------------- ratio and aggregation


class Ratio(NamedTuple):
    """The importance ratio of :func:`importance_ratio`."""

    log_ratio: torch.Tensor
    """``[S, T]`` ``logp - old_logp`` per token, with the gradient of ``logp``"""
    ratio: torch.Tensor
    """``[S, T]`` the ratio the loss uses, with its gradient"""
    value: torch.Tensor
    """detached value of the ratio: ``[S, T]`` per token, or ``[S, 1]`` per sequence"""


def importance_ratio(
    logp: torch.Tensor, old_logp: torch.Tensor, weights: torch.Tensor, ratio_level: str = "token"
) -> Ratio:
    """The importance ratio ``r_t`` at ``ratio_level``.

    - ``"token"``: ``exp(logp_t - old_logp_t)`` (PPO, Schulman et al. 2017; GRPO).
    - ``"sequence"``: GSPO (Zheng et al. 2025, "Group Sequence Policy Optimization"),
      ``s_i = exp(mean_t (logp - old_logp))`` over the real tokens of sequence ``i``, in the
      GSPO-token form (GSPO eq. 13) ``r_t = sg[s_i] * exp(logp_t - sg[logp_t])``: its value is
      ``s_i`` at every token, so a clip acts on whole sequences, and its gradient is
      ``s_i * grad logp_t``. With ``[S]`` advantages this has the value and gradient of
      broadcasting ``s_i`` (TRL's form); with ``[S, T]`` advantages each token's gradient is
      weighted by its own advantage, as GSPO-token intends.

    Args:
        logp: ``[S, T]`` current log-probs (with grad), zero on padding.
        old_logp: ``[S, T]`` behaviour log-probs, detached, zero on padding.
        weights: ``[S, T]`` the mask as float.
        ratio_level: one of :data:`RATIO_LEVELS`.
    """
    log_ratio = logp - old_logp  # [S, T]
    if ratio_level == "token":
        ratio = torch.exp(log_ratio)  # [S, T]
        return Ratio(log_ratio, ratio, ratio.detach())
    seq_ratio = torch.exp(_masked_mean(log_ratio.detach(), weights, dim=-1))[:, None]  # [S, 1]
    return Ratio(log_ratio, seq_ratio * torch.exp(logp - logp.detach()), seq_ratio)


def aggregate(per_token: torch.Tensor, weights: torch.Tensor, loss_type: str, max_len: int) -> torch.Tensor:
    """Reduce a ``[S, T]`` per-token loss to a scalar, exactly as TRL's ``GRPOTrainer._compute_loss``.

    - ``grpo``, ``sapo``: mean over tokens of each sequence, then mean over sequences
      (DeepSeekMath, Shao et al. 2024, eq. 3: ``1/G sum_i 1/|o_i| sum_t``).
    - ``bnpo``: mean over all real tokens of the batch (TRL's batch-normalised variant).
    - ``dapo``, ``cispo``, ``vespo``: same token-level mean (DAPO, Yu et al. 2025, sec. 3.3
      "Token-Level Policy Gradient Loss": ``1/sum_i |o_i| sum_i sum_t``). TRL divides by the
      token count of the whole generation batch across processes; for one local batch that is
      ``mask.sum()``.
    - ``dr_grpo``: sum over real tokens divided by the constant ``S * max_len``
      (Dr. GRPO, Liu et al. 2025, "Understanding R1-Zero-Like Training", sec. 3.1), which
      removes GRPO's length normalisation bias.
    - ``luspo``: sum over the tokens of each sequence, then mean over sequences: each
      sequence's loss weighted by its length (LUSPO).

    Args:
        per_token: ``[S, T]`` loss per token.
        weights: ``[S, T]`` the mask as float.
        loss_type: one of :data:`LOSS_TYPES`.
        max_len: ``dr_grpo``'s normaliser (ignored by the others).
    """
    if loss_type in ("grpo", "sapo"):
        return _masked_mean(per_token, weights, dim=-1).mean()
    if loss_type in ("bnpo", "dapo", "cispo", "vespo"):
        return _masked_mean(per_token, weights)
    if loss_type == "luspo":
        return (per_token * weights).sum(-1).mean()
    return (per_token * weights).sum() / (per_token.shape[0] * max_len)


def off_policy_mask(
    logp: torch.Tensor, old_logp: torch.Tensor, weights: torch.Tensor, advantages: torch.Tensor, threshold: float
) -> torch.Tensor:
    """Where a loss is kept under DeepSeek-V3.2's off-policy sequence mask (DeepSeek-AI 2025,
    "DeepSeek-V3.2", arXiv 2512.02556, eq. 9; TRL's ``get_off_policy_mask``).

    A sequence's loss is dropped where ``A < 0`` and ``mean_t (old_logp - logp) > threshold``: the
    sampling policy was on average that many nats per token more likely to pick its tokens.

    Args:
        logp: ``[S, T]`` current log-probs, zero on padding (read detached).
        old_logp: ``[S, T]`` the sampling policy's log-probs, zero on padding.
        weights: ``[S, T]`` the mask as float.
        advantages: ``[S, 1]`` or ``[S, T]``; with per-token advantages the ``A < 0`` test is per token.

    Returns:
        bool ``[S, 1]`` or ``[S, T]``: True where the loss is kept.
    """
    seq_kl = _masked_mean(old_logp - logp.detach(), weights, dim=-1)[:, None]  # [S, 1]
    return (advantages >= 0) | (seq_kl <= threshold)


# --------------------------------------------------------------------------- loss families
#
# Each family maps the ratio and the advantages ([S, 1] or [S, T], detached) to a per-token loss,
# before the off-policy mask, the KL term and the aggregation, which `policy_loss` applies. The
# inputs are already checked (by `PolicyLossOptions`) and sanitised (zero on padding). Each
# returns its named terms; `unreduced_stats()` gives the quantities `policy_loss` averages into
# its stats, [S, T] per token or [S, 1] per sequence.


class ClippedTerms(NamedTuple):
    """The terms of :func:`clipped_surrogate`."""

    per_token: torch.Tensor
    """``[S, T]`` loss per token, with grad"""
    clipped_low: torch.Tensor
    """bool: ``r < 1 - clip_eps`` where ``A < 0`` (TRL's ``is_low_clipped``)"""
    clipped_high: torch.Tensor
    """bool: ``r > 1 + clip_eps_high`` where ``A > 0`` (TRL's ``is_high_clipped``)"""
    dual_clipped: torch.Tensor | None
    """bool: where the dual clip binds; ``None`` without a dual clip"""

    def unreduced_stats(self) -> dict[str, torch.Tensor]:
        """``clip_frac`` (either side), ``clip_frac_low``, ``clip_frac_high`` and, with a dual
        clip, ``dual_clip_frac`` (TRL's ``clip_ratio/region_mean``, ``low_mean``, ``high_mean``)."""
        stats = {"clip_frac": self.clipped_low | self.clipped_high, "clip_frac_low": self.clipped_low,
                 "clip_frac_high": self.clipped_high}
        if self.dual_clipped is not None:
            stats["dual_clip_frac"] = self.dual_clipped
        return stats


def clipped_surrogate(
    ratio: torch.Tensor,
    advantages: torch.Tensor,
    *,
    clip_eps: float = 0.2,
    clip_eps_high: float | None = None,
    delta: float | None = None,
    dual_clip: float | None = None,
    ratio_value: torch.Tensor | None = None,
) -> ClippedTerms:
    """PPO's clipped surrogate per token, the core of ``grpo``, ``bnpo``, ``dr_grpo``, ``dapo`` and
    ``luspo`` (which differ only in :func:`aggregate`).

    PPO (Schulman et al. 2017, eq. 7) and GRPO (Shao et al. 2024, eq. 3), as TRL 1.16's
    ``GRPOTrainer._compute_loss``::

        l_t = -min(min(r_t, delta) A, clip(r_t, 1 - clip_eps, 1 + clip_eps_high) A)

    - ``delta`` (two-sided clipping; Prime Intellect 2025, "INTELLECT-2", arXiv 2505.07291,
      sec. 4.1; TRL's ``delta``): the unclipped branch uses ``min(r_t, delta)``, so for ``A < 0``
      a huge ratio cannot give an unbounded loss (with ``delta > 1 + clip_eps_high`` this is the
      dual clip with ``c = delta``). As TRL, the clip indicators then see the capped ratio.
    - ``dual_clip = c > 1`` (Ye et al. 2020, "Mastering Complex Control in MOBA Games with Deep
      RL", eq. 5): for ``A_t < 0`` the loss is further bounded, ``l_t = min(l_t, -c A_t)``.

    Args:
        ratio: ``[S, T]`` importance ratio with grad (:func:`importance_ratio`).
        advantages: ``[S, 1]`` or ``[S, T]``, detached.
        clip_eps: as :class:`PolicyLossOptions`.
        clip_eps_high: as :class:`PolicyLossOptions`.
        delta: as :class:`PolicyLossOptions`.
        dual_clip: as :class:`PolicyLossOptions`.
        ratio_value: the detached ratio the indicators count, ``[S, T]`` or ``[S, 1]`` (per
            sequence); ``None``: ``ratio.detach()``.
    """
    adv = advantages
    eps_high = clip_eps if clip_eps_high is None else clip_eps_high
    ratio_clipped = ratio.clamp(1.0 - clip_eps, 1.0 + eps_high)
    unclipped = ratio if delta is None else ratio.clamp(max=delta)
    per_token = -torch.min(unclipped * adv, ratio_clipped * adv)  # [S, T]
    if dual_clip is not None:
        per_token = torch.where(adv < 0, torch.minimum(per_token, -dual_clip * adv), per_token)
    with torch.no_grad():
        value = ratio.detach() if ratio_value is None else ratio_value
        capped = value if delta is None else value.clamp(max=delta)
        low = (capped < 1.0 - clip_eps) & (adv < 0)
        high = (capped > 1.0 + eps_high) & (adv > 0)
        dual = None
        if dual_clip is not None:
            undual = -torch.min(capped * adv, value.clamp(1.0 - clip_eps, 1.0 + eps_high) * adv)
            dual = (adv < 0) & (undual > -dual_clip * adv)
    return ClippedTerms(per_token, low, high, dual)


class CispoTerms(NamedTuple):
    """The terms of :func:`cispo_surrogate`."""

    per_token: torch.Tensor
    """``[S, T]`` loss per token, with grad"""
    weight: torch.Tensor
    """the detached, capped importance weight ``min(r, eps_max)``"""
    capped: torch.Tensor
    """bool: ``r > eps_max`` where ``A > 0`` (TRL's ``is_cispo_clipped``)"""

    def unreduced_stats(self) -> dict[str, torch.Tensor]:
        """``cispo_clip_ratio`` (TRL's name), also logged as ``clip_frac``."""
        return {"cispo_clip_ratio": self.capped, "clip_frac": self.capped}


def cispo_surrogate(
    ratio_value: torch.Tensor, advantages: torch.Tensor, logp: torch.Tensor, *, eps_max: float
) -> CispoTerms:
    """CISPO (MiniMax 2025, "MiniMax-M1: Scaling Test-Time Compute Efficiently with Lightning
    Attention", arXiv 2506.13585): ``l_t = -sg[min(r_t, eps_max)] * A * logp_t``, aggregated like
    ``dapo``.

    The importance weight is capped and detached instead of the update, so every token keeps a
    gradient. TRL 1.16 passes ``epsilon_high`` as ``eps_max``, a cap on the ratio itself (ScaleRL's
    ``eps_max``; "The Art of Scaling Reinforcement Learning Compute for LLMs", arXiv 2510.13786,
    recommends 5.0), not ``1 + eps``: :attr:`PolicyLossOptions.eps_high`.

    Args:
        ratio_value: detached ratio, ``[S, T]`` or ``[S, 1]`` (sequence level).
        advantages: ``[S, 1]`` or ``[S, T]``, detached.
        logp: ``[S, T]`` current log-probs, with grad.
        eps_max: the cap, ``> 0``.
    """
    weight = ratio_value.clamp(max=eps_max)
    per_token = -weight * advantages * logp
    return CispoTerms(per_token, weight, (ratio_value > eps_max) & (advantages > 0))


class SapoTerms(NamedTuple):
    """The terms of :func:`sapo_surrogate`."""

    per_token: torch.Tensor
    """``[S, T]`` loss per token, with grad"""
    gate: torch.Tensor
    """``[S, T]`` detached soft gate ``sigmoid(tau (r - 1)) * 4 / tau``"""

    def unreduced_stats(self) -> dict[str, torch.Tensor]:
        """None: a soft gate clips nothing."""
        return {}


def sapo_surrogate(
    ratio: torch.Tensor, advantages: torch.Tensor, *, temperature_pos: float = 1.0, temperature_neg: float = 1.05
) -> SapoTerms:
    """SAPO ("Soft Adaptive Policy Optimization", Qwen 2025, arXiv 2511.20347): a soft gate instead
    of the clip, ``l_t = -sigmoid(tau (r_t - 1)) * 4 / tau * A`` with ``tau = temperature_pos``
    where ``A > 0`` and ``temperature_neg`` elsewhere (TRL 1.16's ``sapo_temperature_pos/neg``);
    aggregated like ``grpo``. On-policy the gate's gradient is exactly that of ``r_t``.

    Args:
        ratio: ``[S, T]`` importance ratio with grad.
        advantages: ``[S, 1]`` or ``[S, T]``, detached.
    """
    adv = advantages
    tau = torch.where(adv > 0, adv.new_full((), temperature_pos), adv.new_full((), temperature_neg))
    gate = torch.sigmoid(tau * (ratio - 1.0)) * 4.0 / tau
    return SapoTerms(-gate * adv, gate.detach())


class VespoTerms(NamedTuple):
    """The terms of :func:`vespo_surrogate`."""

    per_token: torch.Tensor
    """``[S, T]`` loss per token, with grad"""
    phi: torch.Tensor
    """detached gamma weight, ``[S, 1]`` (or ``[S, T]`` with per-token advantages)"""

    def unreduced_stats(self) -> dict[str, torch.Tensor]:
        """``vespo/phi_seq_mean`` (TRL's name): the mean gamma weight."""
        return {"vespo/phi_seq_mean": self.phi}


def vespo_surrogate(
    log_ratio: torch.Tensor,
    advantages: torch.Tensor,
    logp: torch.Tensor,
    weights: torch.Tensor,
    *,
    k_pos: float = 2.0,
    lambda_pos: float = 3.0,
    k_neg: float = 3.0,
    lambda_neg: float = 2.0,
) -> VespoTerms:
    """VESPO ("VESPO: Variational Sequence-Level Soft Policy Optimization for Stable Off-Policy LLM
    Training", arXiv 2602.10693): ``l_t = -sg[phi(w_i)] * A * logp_t``, aggregated like ``dapo``.

    ``phi`` is the gamma weight of the sequence's product ratio ``w_i`` (see ``_gamma_weights``,
    TRL 1.16's ``get_gamma_weights``), so VESPO needs token ratios: it builds ``w`` itself.

    Args:
        log_ratio: ``[S, T]`` ``logp - old_logp``, zero on padding (read detached).
        advantages: ``[S, 1]`` or ``[S, T]``, detached.
        logp: ``[S, T]`` current log-probs, with grad.
        weights: ``[S, T]`` the mask as float.
        k_pos: the weight's power ``k`` where ``A >= 0``.
        lambda_pos: its decay ``lambda`` where ``A >= 0``.
        k_neg: the power where ``A < 0``.
        lambda_neg: the decay where ``A < 0``.
    """
    phi = _gamma_weights(log_ratio, weights, advantages, k_pos, lambda_pos, k_neg, lambda_neg)
    return VespoTerms(-phi * advantages * logp, phi)


def _gamma_weights(
    log_ratio: torch.Tensor,
    weights: torch.Tensor,
    adv: torch.Tensor,
    k_pos: float,
    lambda_pos: float,
    k_neg: float,
    lambda_neg: float,
) -> torch.Tensor:
    """VESPO's detached gamma weight ``phi(w) = exp(lambda) * w**k * exp(-lambda * w)``, ``phi(1) = 1``.

    As TRL's ``GRPOTrainer.get_gamma_weights``: ``w = exp(sum_t log r_t)`` is the *sequence*
    importance ratio (a product over tokens, not GSPO's geometric mean), each token log-ratio
    clamped to ``[-20, 20]`` and the sum to ``[log 1e-8, 20]``, computed in log space;
    ``(k, lambda)`` are the ``_pos`` values where ``A >= 0`` and the ``_neg`` ones elsewhere,
    ``lambda`` clamped to ``>= 1e-4``; a non-finite weight becomes 0.

    Args:
        log_ratio: ``[S, T]`` detached ``logp - old_logp``, zero on padding.
        weights: ``[S, T]`` mask as float.
        adv: ``[S, 1]`` or ``[S, T]`` advantages.

    Returns:
        ``[S, 1]`` (or ``[S, T]`` with per-token advantages), detached.
    """
    log_floor = math.log(1e-8)
    seq_log_ratio = (log_ratio.detach().clamp(-20.0, 20.0) * weights).sum(-1, keepdim=True)  # [S, 1]
    log_w = seq_log_ratio.clamp(log_floor, 20.0)
    w = torch.exp(log_w)
    nonneg = adv >= 0
    k = torch.where(nonneg, adv.new_full((), k_pos), adv.new_full((), k_neg))
    lam = torch.where(nonneg, adv.new_full((), lambda_pos), adv.new_full((), lambda_neg)).clamp(min=1e-4)
    log_phi = lam + k * log_w - lam * w
    return torch.exp(log_phi).nan_to_num(nan=0.0, posinf=0.0, neginf=0.0)


def _surrogate(
    ratio: Ratio, adv: torch.Tensor, logp: torch.Tensor, weights: torch.Tensor, options: PolicyLossOptions
) -> ClippedTerms | CispoTerms | SapoTerms | VespoTerms:
    """The loss family of ``options.loss_type``."""
    loss_type = options.loss_type
    if loss_type in CLIPPED_LOSS_TYPES:
        return clipped_surrogate(ratio.ratio, adv, clip_eps=options.clip_eps, clip_eps_high=options.eps_high,
                                 delta=options.delta, dual_clip=options.dual_clip, ratio_value=ratio.value)
    if loss_type == "cispo":
        return cispo_surrogate(ratio.value, adv, logp, eps_max=options.eps_high)
    if loss_type == "sapo":
        return sapo_surrogate(ratio.ratio, adv, temperature_pos=options.sapo_temperature_pos,
                              temperature_neg=options.sapo_temperature_neg)
    return vespo_surrogate(ratio.log_ratio, adv, logp, weights, k_pos=options.vespo_k_pos,
                           lambda_pos=options.vespo_lambda_pos, k_neg=options.vespo_k_neg,
                           lambda_neg=options.vespo_lambda_neg)


# --------------------------------------------------------------------------- policy loss


def policy_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor | None = None,
    options: PolicyLossOptions | None = None,
    *,
    ref_logp: torch.Tensor | None = None,
    **fields: Any,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Policy-gradient loss of every TRL 1.16 ``loss_type``, with optional KL penalty; one core for
    PPO and the GRPO family.

    Semantics are those of TRL 1.16.0's ``GRPOTrainer._compute_loss`` (``trl/trainer/grpo_trainer.py``,
    with ``get_off_policy_mask`` and ``get_gamma_weights``) and TRL's ``GRPOConfig`` parameter
    names and defaults (see :class:`PolicyLossOptions`). The steps, each a named function:

    1. the ratio ``r_t`` at ``ratio_level`` (:func:`importance_ratio`: per token, or GSPO's
       per sequence);
    2. the per-token loss ``l_t`` of the loss family (``A`` the advantage):

       - ``"grpo"``, ``"bnpo"``, ``"dr_grpo"``, ``"dapo"``, ``"luspo"``: PPO's clipped surrogate
         (:func:`clipped_surrogate`: Schulman et al. 2017, eq. 7; GRPO, Shao et al. 2024,
         eq. 3), ``l_t = -min(r_t A, clip(r_t, 1 - clip_eps, 1 + clip_eps_high) A)``, with
         ``delta`` and ``dual_clip``;
       - ``"cispo"``: ``-sg[min(r_t, clip_eps_high)] A logp_t`` (:func:`cispo_surrogate`,
         MiniMax-M1, arXiv 2506.13585). Left at None, ``clip_eps_high`` falls back to
         ``clip_eps`` (0.2) as in TRL, which caps every weight at 0.2;
       - ``"sapo"``: ``-sigmoid(tau (r_t - 1)) 4 / tau A`` (:func:`sapo_surrogate`, "Soft
         Adaptive Policy Optimization", arXiv 2511.20347);
       - ``"vespo"``: ``-sg[phi(w_i)] A logp_t`` with the gamma weight of the sequence's product
         ratio (:func:`vespo_surrogate`, "VESPO: Variational Sequence-Level Soft Policy
         Optimization for Stable Off-Policy LLM Training", arXiv 2602.10693); token ratios only;

    3. with ``off_policy_mask_threshold``, DeepSeek-V3.2's mask (:func:`off_policy_mask`) drops
       the loss (not the KL) of drifted sequences with ``A < 0``;
    4. the KL term: when ``ref_logp`` is given, ``kl_t = kl_penalty(logp, ref_logp, kl_estimator)``
       is logged; when also ``kl_coef > 0`` it is added per token as ``kl_coef * kl_t`` before the
       aggregation, as in DeepSeekMath eq. 3 and TRL. ``use_bias_correction_kl`` (DeepSeek-V3.2's
       unbiased KL estimate) multiplies ``kl_t`` by the importance ratio, with its gradient
       (TRL's ``coef_1``: the token ratio, or ``exp(mean_t log r)`` at sequence level); TRL's
       default is True, ours False so existing runs keep their loss;
    5. the aggregation of the loss type (:func:`aggregate`): ``grpo``, ``sapo`` per sequence then
       over sequences; ``bnpo``, ``dapo``, ``cispo``, ``vespo`` over all real tokens; ``dr_grpo``
       over ``S * max_len``; ``luspo`` ("Length-Unbiased Sequence Policy Optimization: Revealing
       and Controlling Response Length Variation in RLVR", arXiv 2602.05261) sums each
       sequence's tokens, then averages over sequences: GSPO with each sequence weighted by its
       length. LUSPO is defined with sequence ratios; with token ratios we compute TRL's
       result and warn, as TRL does (:func:`check_loss_options`).

    In soccer a sequence is one player's segment and a token one of its steps, and every
    sequence has all its T steps, so the aggregations differ only by constants there:
    ``grpo``/``sapo`` average each player's steps and then the players; ``bnpo``/``dapo``/
    ``cispo``/``vespo`` average all player-steps (the same value when no step is masked);
    ``dr_grpo`` divides by ``S * max_len``; ``luspo`` sums a player's steps (T times ``grpo``).
    What changes between types is the per-step weight: the clip (``grpo`` family), a capped
    detached weight (``cispo``), a soft gate (``sapo``), or one weight per player-segment from
    the product of its step ratios (``vespo``); at ``ratio_level="sequence"`` one ratio per
    player-segment replaces the step ratios (GSPO).

    Args:
        logp: ``[S, T]`` log-probs of the taken actions under the current policy (with grad).
        old_logp: ``[S, T]`` log-probs under the behaviour policy (treated as a constant).
        advantages: ``[S]`` (one per sequence, broadcast over its tokens) or ``[S, T]``.
            Treated as a constant.
        mask: ``[S, T]`` bool or float; 1 marks real tokens. ``None`` means all real.
        options: the checked options, built once (a training run passes the same object to
            every call); they are not checked again here.
        ref_logp: ``[S, T]`` log-probs under the reference policy (treated as a constant);
            needed when ``kl_coef > 0``.
        **fields: instead of ``options``, the fields of :class:`PolicyLossOptions` as keywords
            (``clip_eps=0.1, loss_type="dapo"``), checked on every call.

    Returns:
        ``(loss, stats)``: ``loss`` is a 0-dim tensor to minimise. ``stats`` holds detached
        0-dim tensors:

        - ``policy_loss``: the aggregated policy term, without the KL term;
        - ``clip_frac_low``, ``clip_frac_high``, ``clip_frac`` (clipped loss types): share with
          ``r < 1 - clip_eps`` and ``A < 0``, with ``r > 1 + clip_eps_high`` and ``A > 0``,
          and in either (TRL ``clip_ratio/low_mean``, ``high_mean``, ``region_mean``);
        - ``cispo_clip_ratio`` (``cispo``, TRL's name): share with ``r > clip_eps_high`` and
          ``A > 0``; also logged as ``clip_frac``. ``sapo`` and ``vespo`` have no hard clip
          and no ``clip_frac``;
        - ``vespo/phi_seq_mean`` (``vespo``, TRL's name): mean gamma weight;
        - ``dual_clip_frac`` (only with ``dual_clip``): share where the dual clip binds;
        - ``approx_kl``: ``mean((r - 1) - log r)`` over real tokens with the *token* ratio,
          an estimate of KL(old || new) (Schulman 2020; CleanRL's ``approx_kl``);
        - ``ratio_mean``: mean of the ratio (before ``delta``);
        - ``kl`` (only with ``ref_logp``): mean per-token KL to the reference (bias-corrected
          with ``use_bias_correction_kl``, as TRL logs it).

        "Share" and "mean" follow TRL's units: over real tokens, except when the quantity is
        per sequence (``ratio_level="sequence"`` with ``[S]`` advantages; VESPO's weight with
        ``[S]`` advantages), where they are over sequences that have at least one real token.
    """
    if options is None:
        options = PolicyLossOptions(**fields)
    elif fields:
        raise ValueError(f"policy_loss takes its options either as `options` or as keywords, not both: got "
                         f"options and {', '.join(sorted(fields))}")
    elif not isinstance(options, PolicyLossOptions):
        raise ValueError(f"options must be a PolicyLossOptions, got {type(options).__name__}")
    max_len = _check_inputs(logp, old_logp, advantages, ref_logp, options)

    # ---- sanitise: zero padded positions so -inf/NaN there never reach loss or gradient
    logp = _as_float(logp)
    weights, valid = _prepare_mask(mask, logp, "logp")
    zero = logp.new_zeros(())
    logp = torch.where(valid, logp, zero)
    old_logp = torch.where(valid, _as_float(old_logp).detach(), zero)
    adv = _as_float(advantages).detach()
    adv = adv[:, None] if adv.dim() == 1 else torch.where(valid, adv, zero)  # [S, 1] or [S, T]

    ratio = importance_ratio(logp, old_logp, weights, options.ratio_level)
    terms = _surrogate(ratio, adv, logp, weights, options)
    per_token = terms.per_token  # [S, T]
    if options.off_policy_mask_threshold is not None:
        keep = off_policy_mask(logp, old_logp, weights, adv, options.off_policy_mask_threshold)
        per_token = per_token * keep.to(per_token.dtype)
    surrogate = aggregate(per_token, weights, options.loss_type, max_len)

    per_token_kl = None
    if ref_logp is not None:
        per_token_kl = _reference_kl(logp, torch.where(valid, _as_float(ref_logp).detach(), zero), ratio,
                                     weights, options)  # [S, T]
    if options.kl_coef > 0:
        loss = aggregate(per_token + options.kl_coef * per_token_kl, weights, options.loss_type, max_len)
    else:
        loss = surrogate
    return loss, _policy_stats(surrogate, terms, ratio, adv, weights, per_token_kl)


def _check_inputs(logp: torch.Tensor, old_logp: torch.Tensor, advantages: torch.Tensor,
                  ref_logp: torch.Tensor | None, options: PolicyLossOptions) -> int:
    """Check the shapes (and what the options need of this batch); return ``dr_grpo``'s ``max_len``."""
    if logp.dim() != 2:
        raise ValueError(f"logp must have shape [S, T], got {list(logp.shape)}")
    num_seqs, num_tokens = logp.shape
    if num_seqs == 0 or num_tokens == 0:
        raise ValueError(f"policy_loss needs at least one sequence of at least one token, got logp of shape "
                         f"{list(logp.shape)}")
    _check_shape("old_logp", old_logp, (num_seqs, num_tokens), "[S, T] like logp")
    if tuple(advantages.shape) not in ((num_seqs,), (num_seqs, num_tokens)):
        raise ValueError(
            f"advantages must have shape [S] = {[num_seqs]} or [S, T] = {[num_seqs, num_tokens]}, "
            f"got {list(advantages.shape)}"
        )
    if ref_logp is not None:
        _check_shape("ref_logp", ref_logp, (num_seqs, num_tokens), "[S, T] like logp")
    if options.kl_coef > 0 and ref_logp is None:
        raise ValueError(f"kl_coef={options.kl_coef!r} > 0 needs ref_logp, got ref_logp=None")
    if options.max_len is None:
        return num_tokens
    if options.max_len < num_tokens:
        raise ValueError(f"max_len must be an int >= T = {num_tokens} (the longest possible sequence) "
                         f"or None, got {options.max_len!r}")
    return int(options.max_len)


def _reference_kl(logp: torch.Tensor, ref_logp: torch.Tensor, ratio: Ratio, weights: torch.Tensor,
                  options: PolicyLossOptions) -> torch.Tensor:
    """``[S, T]`` per-token KL to the reference, bias-corrected with ``use_bias_correction_kl``."""
    kl = kl_penalty(logp, ref_logp, options.kl_estimator)
    if not options.use_bias_correction_kl:
        return kl
    # TRL's coef_1, with its gradient: the token ratio, or the sequence ratio through the mean
    log_ratio = ratio.log_ratio
    importance = (torch.exp(log_ratio) if options.ratio_level == "token"
                  else torch.exp(_masked_mean(log_ratio, weights, dim=-1))[:, None])
    return kl * importance


@torch.no_grad()
def _policy_stats(surrogate: torch.Tensor, terms: ClippedTerms | CispoTerms | SapoTerms | VespoTerms,
                  ratio: Ratio, adv: torch.Tensor, weights: torch.Tensor,
                  per_token_kl: torch.Tensor | None) -> dict[str, torch.Tensor]:
    """The stats of :func:`policy_loss`, in TRL's units: over real tokens, or over sequences with a
    real token for a quantity that is one per sequence (``[S, 1]``)."""
    seq_weights = (weights.sum(-1, keepdim=True) > 0).to(weights.dtype)  # [S, 1]

    def batch_mean(x: torch.Tensor, per_sequence: bool) -> torch.Tensor:
        if per_sequence:
            return _masked_mean(x.to(weights.dtype), seq_weights)
        return _masked_mean(x.to(weights.dtype).expand_as(weights), weights)

    stats = {"policy_loss": surrogate.detach()}
    for name, value in terms.unreduced_stats().items():
        stats[name] = batch_mean(value, per_sequence=value.shape[-1] == 1)
    stats["approx_kl"] = _masked_mean(torch.expm1(ratio.log_ratio) - ratio.log_ratio, weights).detach()
    stats["ratio_mean"] = batch_mean(ratio.value, per_sequence=ratio.value.shape[-1] == 1 and adv.shape[-1] == 1)
    if per_token_kl is not None:
        stats["kl"] = _masked_mean(per_token_kl, weights).detach()
    return stats


# --------------------------------------------------------------------------- critic


def value_loss(
    values: torch.Tensor,
    old_values: torch.Tensor,
    returns: torch.Tensor,
    mask: torch.Tensor | None = None,
    clip_eps: float | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Squared-error critic loss with optional PPO value clipping.

    Without clipping: ``0.5 * mean((v - R)^2)``. With ``clip_eps``, as in CleanRL's
    ``ppo.py`` (``clip_vloss``) and MAPPO (Yu et al. 2022, "The Surprising Effectiveness of PPO
    in Cooperative Multi-Agent Games")::

        v_clip = old + clip(v - old, -clip_eps, clip_eps)
        loss   = 0.5 * mean(max((v - R)^2, (v_clip - R)^2))

    Args:
        values: ``[*]`` current critic predictions (with grad), any shape.
        old_values: ``[*]`` predictions at rollout time (treated as a constant).
        returns: ``[*]`` regression targets, e.g. GAE returns (treated as a constant).
        mask: ``[*]`` bool or float; 1 marks real entries. ``None`` means all real.
        clip_eps: ``> 0`` or ``None`` (no clipping).

    Returns:
        ``(loss, stats)`` with detached 0-dim tensors ``value_loss``, ``explained_variance``
        and, with clipping, ``value_clip_frac`` (share where the clipped term is the larger
        one, i.e. where the clip cuts the gradient).
    """
    shape = tuple(values.shape)
    _check_shape("old_values", old_values, shape, "like values")
    _check_shape("returns", returns, shape, "like values")
    if clip_eps is not None and not clip_eps > 0:
        raise ValueError(f"clip_eps must be > 0 or None, got {clip_eps!r}")
    values = _as_float(values)
    weights, _ = _prepare_mask(mask, values, "values")
    returns = _as_float(returns).detach()
    old_values = _as_float(old_values).detach()

    squared_error = (values - returns).square()
    stats: dict[str, torch.Tensor] = {}
    if clip_eps is None:
        per_element = squared_error
    else:
        values_clipped = old_values + (values - old_values).clamp(-clip_eps, clip_eps)
        squared_error_clipped = (values_clipped - returns).square()
        per_element = torch.maximum(squared_error, squared_error_clipped)
        stats["value_clip_frac"] = _masked_mean(
            (squared_error_clipped > squared_error).to(weights.dtype), weights
        ).detach()
    loss = 0.5 * _masked_mean(per_element, weights)
    stats["value_loss"] = loss.detach()
    stats["explained_variance"] = explained_variance(values, returns, mask=mask)
    return loss, stats


def explained_variance(
    y_pred: torch.Tensor, y_true: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """``1 - Var[y_true - y_pred] / Var[y_true]`` over (masked) entries, as CleanRL logs it.

    1 is a perfect critic, 0 is no better than predicting the mean, negative is worse.

    Args:
        y_pred: ``[*]`` predictions.
        y_true: ``[*]`` targets, same shape.
        mask: ``[*]`` optional; 1 marks entries to include.

    Returns:
        Detached 0-dim tensor; NaN when ``Var[y_true] == 0`` (CleanRL's convention: undefined).
    """
    _check_shape("y_true", y_true, tuple(y_pred.shape), "like y_pred")
    y_pred = _as_float(y_pred).detach()
    y_true = _as_float(y_true).detach()
    weights, _ = _prepare_mask(mask, y_pred, "y_pred")

    def variance(x: torch.Tensor) -> torch.Tensor:
        return _masked_mean((x - _masked_mean(x, weights)).square(), weights)

    var_true = variance(y_true)
    ratio = variance(y_true - y_pred) / var_true
    return torch.where(var_true == 0, torch.full_like(var_true, float("nan")), 1.0 - ratio)
