"""Loss core: the clipped policy surrogate shared by GRPO, GSPO, DAPO, Dr. GRPO and PPO,
the KL penalty to a reference policy, and the PPO critic's value loss.

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

import numbers

import torch

__all__ = [
    "KL_ESTIMATORS",
    "LOSS_TYPES",
    "RATIO_LEVELS",
    "explained_variance",
    "kl_penalty",
    "policy_loss",
    "value_loss",
]

LOSS_TYPES = ("grpo", "bnpo", "dr_grpo", "dapo")
"""Aggregations of the per-token loss, named and defined as TRL's ``GRPOConfig.loss_type``."""

RATIO_LEVELS = ("token", "sequence")
"""``token``: PPO/GRPO per-token ratio. ``sequence``: GSPO sequence-level ratio."""

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


# --------------------------------------------------------------------------- policy loss


def _aggregate(
    per_token: torch.Tensor, weights: torch.Tensor, loss_type: str, max_len: int
) -> torch.Tensor:
    """Reduce a ``[S, T]`` per-token loss to a scalar, exactly as TRL's ``GRPOTrainer``.

    - ``grpo``: mean over tokens of each sequence, then mean over sequences
      (DeepSeekMath, Shao et al. 2024, eq. 3: ``1/G sum_i 1/|o_i| sum_t``).
    - ``bnpo``: mean over all real tokens of the batch (TRL's batch-normalised variant).
    - ``dapo``: same token-level mean (DAPO, Yu et al. 2025, sec. 3.3 "Token-Level Policy
      Gradient Loss": ``1/sum_i |o_i| sum_i sum_t``). TRL divides by the token count of the
      whole generation batch across processes; for one local batch that is ``mask.sum()``.
    - ``dr_grpo``: sum over real tokens divided by the constant ``S * max_len``
      (Dr. GRPO, Liu et al. 2025, "Understanding R1-Zero-Like Training", sec. 3.1), which
      removes GRPO's length normalisation bias.
    """
    if loss_type == "grpo":
        return _masked_mean(per_token, weights, dim=-1).mean()
    if loss_type in ("bnpo", "dapo"):
        return _masked_mean(per_token, weights)
    return (per_token * weights).sum() / (per_token.shape[0] * max_len)


def policy_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor | None = None,
    *,
    clip_eps: float = 0.2,
    clip_eps_high: float | None = None,
    ratio_level: str = "token",
    loss_type: str = "grpo",
    max_len: int | None = None,
    dual_clip: float | None = None,
    ref_logp: torch.Tensor | None = None,
    kl_coef: float = 0.0,
    kl_estimator: str = "k3",
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Clipped policy-gradient loss with optional KL penalty; one core for PPO and the GRPO family.

    Per token (PPO, Schulman et al. 2017, eq. 7; GRPO, Shao et al. 2024, eq. 3)::

        loss_t = -min(r_t * A_t, clip(r_t, 1 - clip_eps, 1 + clip_eps_high) * A_t)
                 [+ kl_coef * kl_t]

    then aggregated over tokens and sequences according to ``loss_type`` (see below).

    Ratio ``r_t`` (``ratio_level``):

    - ``"token"``: ``exp(logp_t - old_logp_t)`` (PPO / GRPO).
    - ``"sequence"``: GSPO (Zheng et al. 2025, "Group Sequence Policy Optimization"),
      ``s_i = exp(mean_t (logp - old_logp))`` over the real tokens of sequence ``i``. We use
      the GSPO-token form (GSPO eq. 13) ``r_t = sg[s_i] * exp(logp_t - sg[logp_t])``: its
      value is ``s_i`` at every token, so clipping acts on whole sequences, and its gradient is
      ``s_i * grad logp_t``. With per-sequence advantages (``[S]``) this gives exactly the same
      loss and gradient as broadcasting ``s_i`` (which is what TRL does), for every
      ``loss_type``; with per-token advantages (``[S, T]``) each token's gradient is weighted
      by its own advantage, as GSPO-token intends.

    Clipping: ``clip_eps_high`` (default ``clip_eps``) is DAPO's decoupled "clip-higher"
    (Yu et al. 2025, sec. 3.1). ``dual_clip = c > 1`` is the dual clip of Ye et al. 2020
    ("Mastering Complex Control in MOBA Games with Deep RL", eq. 5): for ``A_t < 0`` the loss
    is further bounded, ``loss_t = min(loss_t, -c * A_t)``, so a huge ratio on a bad action
    cannot produce an unbounded update.

    KL: when ``ref_logp`` is given, ``kl_t = kl_penalty(logp, ref_logp, kl_estimator)`` is
    logged; when also ``kl_coef > 0`` it is added per token as ``kl_coef * kl_t`` before the
    aggregation, as in DeepSeekMath eq. 3 and TRL.

    Aggregation ``loss_type`` (TRL ``GRPOTrainer._compute_loss`` semantics, ``m`` the mask):

    - ``"grpo"``: ``mean_i( sum_t m*l / max(sum_t m, 1) )``;
    - ``"bnpo"``, ``"dapo"``: ``sum m*l / max(sum m, 1)``;
    - ``"dr_grpo"``: ``sum m*l / (S * max_len)``, ``max_len`` defaulting to ``T``.

    Args:
        logp: ``[S, T]`` log-probs of the taken actions under the current policy (with grad).
        old_logp: ``[S, T]`` log-probs under the behaviour policy (treated as a constant).
        advantages: ``[S]`` (one per sequence, broadcast over its tokens) or ``[S, T]``.
            Treated as a constant.
        mask: ``[S, T]`` bool or float; 1 marks real tokens. ``None`` means all real.
        clip_eps: lower clip, ``> 0``; the ratio is kept above ``1 - clip_eps``.
        clip_eps_high: upper clip, ``> 0``; the ratio is kept below ``1 + clip_eps_high``.
        ratio_level: one of :data:`RATIO_LEVELS`.
        loss_type: one of :data:`LOSS_TYPES`.
        max_len: ``dr_grpo`` normaliser (the maximum possible sequence length, ``>= T``);
            ignored by the other loss types.
        dual_clip: ``c > 1`` or ``None`` (off).
        ref_logp: ``[S, T]`` log-probs under the reference policy (treated as a constant).
        kl_coef: weight ``beta >= 0`` of the KL penalty; ``> 0`` requires ``ref_logp``.
        kl_estimator: one of :data:`KL_ESTIMATORS`.

    Returns:
        ``(loss, stats)``: ``loss`` is a 0-dim tensor to minimise. ``stats`` holds detached
        0-dim tensors:

        - ``policy_loss``: the aggregated clipped surrogate, without the KL term;
        - ``clip_frac_low``: share with ``r < 1 - clip_eps`` and ``A < 0``;
        - ``clip_frac_high``: share with ``r > 1 + clip_eps_high`` and ``A > 0``;
        - ``clip_frac``: share in either (TRL ``clip_ratio/low_mean``, ``high_mean``,
          ``region_mean``);
        - ``dual_clip_frac`` (only with ``dual_clip``): share where the dual clip binds;
        - ``approx_kl``: ``mean((r - 1) - log r)`` over real tokens with the *token* ratio,
          an estimate of KL(old || new) (Schulman 2020; CleanRL's ``approx_kl``);
        - ``ratio_mean``: mean of the ratio actually used;
        - ``kl`` (only with ``ref_logp``): mean per-token KL to the reference.

        "Share" and "mean" follow TRL's units: over real tokens, except when both the ratio
        and the advantage are per sequence (``ratio_level="sequence"`` with ``[S]``
        advantages), where they are over sequences that have at least one real token.
    """
    # ---- validate
    _check_choice("loss_type", loss_type, LOSS_TYPES)
    _check_choice("ratio_level", ratio_level, RATIO_LEVELS)
    _check_choice("kl_estimator", kl_estimator, KL_ESTIMATORS)
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
    if not clip_eps > 0:
        raise ValueError(f"clip_eps must be > 0, got {clip_eps!r}")
    eps_high = clip_eps if clip_eps_high is None else clip_eps_high
    if not eps_high > 0:
        raise ValueError(f"clip_eps_high must be > 0 or None, got {clip_eps_high!r}")
    if dual_clip is not None and not dual_clip > 1:
        raise ValueError(f"dual_clip must be > 1 or None, got {dual_clip!r}")
    if not kl_coef >= 0:
        raise ValueError(f"kl_coef must be >= 0, got {kl_coef!r}")
    if kl_coef > 0 and ref_logp is None:
        raise ValueError(f"kl_coef={kl_coef!r} > 0 needs ref_logp, got ref_logp=None")
    if max_len is None:
        max_len = num_tokens
    elif isinstance(max_len, bool) or not isinstance(max_len, numbers.Integral) or max_len < num_tokens:
        raise ValueError(
            f"max_len must be an int >= T = {num_tokens} (the longest possible sequence) "
            f"or None, got {max_len!r}"
        )
    max_len = int(max_len)

    # ---- sanitise: zero padded positions so -inf/NaN there never reach loss or gradient
    logp = _as_float(logp)
    weights, valid = _prepare_mask(mask, logp, "logp")
    zero = logp.new_zeros(())
    logp = torch.where(valid, logp, zero)
    old_logp = torch.where(valid, _as_float(old_logp).detach(), zero)
    adv = _as_float(advantages).detach()
    adv = adv[:, None] if adv.dim() == 1 else torch.where(valid, adv, zero)  # [S, 1] or [S, T]

    # ---- ratio
    log_ratio = logp - old_logp  # [S, T]
    if ratio_level == "token":
        ratio = torch.exp(log_ratio)  # [S, T]
        ratio_value = ratio.detach()  # [S, T]
    else:
        seq_ratio = torch.exp(_masked_mean(log_ratio.detach(), weights, dim=-1))[:, None]  # [S, 1]
        ratio = seq_ratio * torch.exp(logp - logp.detach())  # [S, T]; GSPO-token form
        ratio_value = seq_ratio  # [S, 1]

    # ---- clipped surrogate
    ratio_clipped = ratio.clamp(1.0 - clip_eps, 1.0 + eps_high)
    per_token = -torch.min(ratio * adv, ratio_clipped * adv)  # [S, T]
    if dual_clip is not None:
        per_token = torch.where(adv < 0, torch.minimum(per_token, -dual_clip * adv), per_token)
    surrogate = _aggregate(per_token, weights, loss_type, max_len)

    # ---- KL to the reference
    per_token_kl = None
    if ref_logp is not None:
        ref_logp = torch.where(valid, _as_float(ref_logp).detach(), zero)
        per_token_kl = kl_penalty(logp, ref_logp, kl_estimator)  # [S, T]
    if kl_coef > 0:
        loss = _aggregate(per_token + kl_coef * per_token_kl, weights, loss_type, max_len)
    else:
        loss = surrogate

    # ---- stats (TRL units; see docstring)
    with torch.no_grad():
        per_sequence_units = ratio_value.shape[-1] == 1 and adv.shape[-1] == 1
        seq_weights = (weights.sum(-1, keepdim=True) > 0).to(weights.dtype)  # [S, 1]

        def batch_mean(x: torch.Tensor) -> torch.Tensor:
            if per_sequence_units:
                return _masked_mean(x.to(weights.dtype), seq_weights)
            return _masked_mean(x.to(weights.dtype).expand_as(weights), weights)

        is_low = (ratio_value < 1.0 - clip_eps) & (adv < 0)
        is_high = (ratio_value > 1.0 + eps_high) & (adv > 0)
        stats = {
            "policy_loss": surrogate.detach(),
            "clip_frac": batch_mean(is_low | is_high),
            "clip_frac_low": batch_mean(is_low),
            "clip_frac_high": batch_mean(is_high),
            "approx_kl": _masked_mean(torch.expm1(log_ratio) - log_ratio, weights).detach(),
            "ratio_mean": batch_mean(ratio_value),
        }
        if dual_clip is not None:
            undual = -torch.min(ratio_value * adv, ratio_value.clamp(1.0 - clip_eps, 1.0 + eps_high) * adv)
            stats["dual_clip_frac"] = batch_mean((adv < 0) & (undual > -dual_clip * adv))
        if per_token_kl is not None:
            stats["kl"] = _masked_mean(per_token_kl, weights).detach()
    return loss, stats


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
