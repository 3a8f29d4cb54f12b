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

import torch

__all__ = [
    "CLIPPED_LOSS_TYPES",
    "KL_ESTIMATORS",
    "LOSS_RATIO_LEVELS",
    "LOSS_TYPES",
    "RATIO_LEVELS",
    "check_loss_options",
    "explained_variance",
    "kl_penalty",
    "policy_loss",
    "value_loss",
]

LOSS_TYPES = ("grpo", "bnpo", "dr_grpo", "dapo", "cispo", "sapo", "luspo", "vespo")
"""The policy losses, named and defined as TRL 1.16's ``GRPOConfig.loss_type`` (see :func:`policy_loss`)."""

CLIPPED_LOSS_TYPES = ("grpo", "bnpo", "dr_grpo", "dapo", "luspo")
"""Loss types built on PPO's clipped surrogate (they differ in aggregation); ``delta`` and
``dual_clip`` apply to these only."""

RATIO_LEVELS = ("token", "sequence")
"""``token``: PPO/GRPO per-token ratio. ``sequence``: GSPO sequence-level ratio."""

LOSS_RATIO_LEVELS = {"luspo": ("sequence",), "vespo": ("token",)}
"""The ratio levels of the loss types that allow only one (every other type allows both)."""

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


def check_loss_options(
    loss_type: str, ratio_level: str, *, delta: float | None = None, dual_clip: float | None = None
) -> None:
    """Raise a ``ValueError`` for an unknown ``loss_type``/``ratio_level`` or a refused combination.

    One place for the rule, used by :func:`policy_loss` and by the run config (so a bad command
    line fails before training starts):

    - ``luspo`` needs ``ratio_level="sequence"`` and ``vespo`` needs ``"token"``
      (:data:`LOSS_RATIO_LEVELS`). TRL 1.16 (``GRPOTrainer.__init__``) only *warns* for these
      two, and for ``bnpo``/``dr_grpo``/``dapo``/``cispo`` with sequence ratios; we refuse the
      first two, whose papers define them at one level only, and allow the last four (GSPO
      with DAPO's token-level loss is a preset of the LLM mode).
    - ``delta`` and ``dual_clip`` bound PPO's clipped surrogate, so they need a loss type that
      has one (:data:`CLIPPED_LOSS_TYPES`); TRL silently ignores ``delta`` for the others.
    """
    _check_choice("loss_type", loss_type, LOSS_TYPES)
    _check_choice("ratio_level", ratio_level, RATIO_LEVELS)
    allowed = LOSS_RATIO_LEVELS.get(loss_type, RATIO_LEVELS)
    if ratio_level not in allowed:
        why = {
            "luspo": "LUSPO is GSPO's sequence-level objective scaled by the sequence length",
            "vespo": "VESPO computes its own sequence-level weight from the token log-ratios",
        }[loss_type]
        raise ValueError(
            f"loss_type={loss_type!r} needs ratio_level={allowed[0]!r}, got ratio_level={ratio_level!r} ({why})"
        )
    for name, value in (("delta", delta), ("dual_clip", dual_clip)):
        if value is not None and loss_type not in CLIPPED_LOSS_TYPES:
            raise ValueError(
                f"{name}={value!r} bounds the clipped surrogate of the loss types {CLIPPED_LOSS_TYPES}; "
                f"loss_type={loss_type!r} has none: set {name}=None"
            )


def _aggregate(
    per_token: torch.Tensor, weights: torch.Tensor, loss_type: str, max_len: int
) -> torch.Tensor:
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
      sequence's (sequence-level) loss weighted by its length (LUSPO).
    """
    if loss_type in ("grpo", "sapo"):
        return _masked_mean(per_token, weights, dim=-1).mean()
    if loss_type in ("bnpo", "dapo", "cispo", "vespo"):
        return _masked_mean(per_token, weights)
    if loss_type == "luspo":
        return (per_token * weights).sum(-1).mean()
    return (per_token * weights).sum() / (per_token.shape[0] * max_len)


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


def _check_optional(name: str, value: float | None, low: float, low_open: bool) -> None:
    if value is None:
        return
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value) and (
        value > low if low_open else value >= low)
    if not ok:
        raise ValueError(f"{name} must be a finite number {'>' if low_open else '>='} {low} or None, got {value!r}")


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
    delta: float | None = None,
    off_policy_mask_threshold: float | None = None,
    ref_logp: torch.Tensor | None = None,
    kl_coef: float = 0.0,
    kl_estimator: str = "k3",
    use_bias_correction_kl: bool = False,
    sapo_temperature_pos: float = 1.0,
    sapo_temperature_neg: float = 1.05,
    vespo_k_pos: float = 2.0,
    vespo_lambda_pos: float = 3.0,
    vespo_k_neg: float = 3.0,
    vespo_lambda_neg: float = 2.0,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Policy-gradient loss of every TRL 1.16 ``loss_type``, with optional KL penalty; one core for
    PPO and the GRPO family.

    Semantics are those of TRL 1.16.0's ``GRPOTrainer._compute_loss`` (``trl/trainer/grpo_trainer.py``,
    with ``get_off_policy_mask`` and ``get_gamma_weights``) and TRL's ``GRPOConfig`` parameter
    names and defaults; ``clip_eps`` and ``clip_eps_high`` are TRL's ``epsilon`` and
    ``epsilon_high``, ``kl_coef`` its ``beta``, ``ratio_level`` its ``importance_sampling_level``.

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

    Per-token loss ``l_t`` and aggregation, by ``loss_type`` (``A`` the advantage, ``m`` the mask):

    - ``"grpo"``, ``"bnpo"``, ``"dr_grpo"``, ``"dapo"``: PPO's clipped surrogate (Schulman et
      al. 2017, eq. 7; GRPO, Shao et al. 2024, eq. 3)
      ``l_t = -min(r_t A, clip(r_t, 1 - clip_eps, 1 + clip_eps_high) A)``, aggregated as
      ``grpo``: ``mean_i(sum_t m l / max(sum_t m, 1))``; ``bnpo``, ``dapo``:
      ``sum m l / max(sum m, 1)``; ``dr_grpo``: ``sum m l / (S * max_len)`` (see ``_aggregate``).
    - ``"cispo"`` (MiniMax 2025, "MiniMax-M1: Scaling Test-Time Compute Efficiently with Lightning
      Attention", arXiv 2506.13585): ``l_t = -sg[min(r_t, clip_eps_high)] * A * logp_t``,
      aggregated like ``dapo``. The importance weight is clipped and detached instead of the
      update, so every token keeps a gradient. Note that TRL uses ``epsilon_high`` here as the
      cap on the ratio itself (ScaleRL's ``eps_max``; "The Art of Scaling Reinforcement Learning
      Compute for LLMs", arXiv 2510.13786, recommends 5.0), not as ``1 + eps``; left at
      None it falls back to ``clip_eps`` (0.2) as in TRL, which caps every weight at 0.2.
    - ``"sapo"`` ("Soft Adaptive Policy Optimization", Qwen 2025, arXiv 2511.20347): a soft gate instead of
      the clip, ``l_t = -sigmoid(tau (r_t - 1)) * 4 / tau * A`` with
      ``tau = sapo_temperature_pos`` where ``A > 0`` and ``sapo_temperature_neg`` elsewhere;
      aggregated like ``grpo``. On-policy the gate's gradient is exactly that of ``r_t``.
    - ``"luspo"`` ("Length-Unbiased Sequence Policy Optimization: Revealing and Controlling
      Response Length Variation in RLVR", arXiv 2602.05261): the clipped surrogate with sequence ratios
      (``ratio_level="sequence"`` is required), summed over each sequence's tokens and averaged
      over sequences, i.e. GSPO with each sequence weighted by its length.
    - ``"vespo"`` ("VESPO: Variational Sequence-Level Soft Policy Optimization for Stable
      Off-Policy LLM Training", arXiv 2602.10693): ``l_t = -sg[phi(w_i)] * A * logp_t`` with the gamma
      weight ``phi(w) = exp(lambda) w**k exp(-lambda w)`` of the sequence ratio
      ``w_i = prod_t r_t`` (:func:`_gamma_weights`; ``vespo_k_*``, ``vespo_lambda_*``),
      aggregated like ``dapo``; token ratios only (it builds ``w`` itself).

    In soccer a sequence is one player's segment and a token one of its steps, and every
    sequence has all its T steps, so the aggregations differ only by constants there:
    ``grpo``/``sapo`` average each player's steps and then the players; ``bnpo``/``dapo``/
    ``cispo``/``vespo`` average all player-steps (the same value when no step is masked);
    ``dr_grpo`` divides by ``S * max_len``; ``luspo`` sums a player's steps (T times ``grpo``).
    What changes between types is the per-step weight: the clip (``grpo`` family), a capped
    detached weight (``cispo``), a soft gate (``sapo``), or one weight per player-segment from
    the product of its step ratios (``vespo``); at ``ratio_level="sequence"`` one ratio per
    player-segment replaces the step ratios (GSPO).

    Options:

    - ``dual_clip = c > 1`` (Ye et al. 2020, "Mastering Complex Control in MOBA Games with Deep
      RL", eq. 5): for ``A_t < 0`` the loss is further bounded, ``l_t = min(l_t, -c A_t)``.
    - ``delta`` (two-sided clipping; Prime Intellect 2025, "INTELLECT-2", arXiv 2505.07291, sec. 4.1): the
      unclipped branch uses ``min(r_t, delta)``, so for ``A < 0`` a huge ratio cannot give an
      unbounded loss (with ``delta > 1 + clip_eps_high`` this is the dual clip with
      ``c = delta``). As TRL, the clip statistics then use the capped ratio.
    - ``off_policy_mask_threshold`` (DeepSeek-AI 2025, "DeepSeek-V3.2", arXiv 2512.02556, eq. 9; TRL's
      ``get_off_policy_mask``): a sequence's loss (not its KL) is dropped when ``A < 0`` and
      ``mean_t (old_logp - logp) > threshold`` (the sampling policy was on average that many
      nats per token more likely to pick its tokens). With per-token advantages the ``A < 0``
      test is per token.
    - KL: when ``ref_logp`` is given, ``kl_t = kl_penalty(logp, ref_logp, kl_estimator)`` is
      logged; when also ``kl_coef > 0`` it is added per token as ``kl_coef * kl_t`` before the
      aggregation, as in DeepSeekMath eq. 3 and TRL. ``use_bias_correction_kl``
      (DeepSeek-V3.2's unbiased KL estimate) multiplies ``kl_t`` by the importance ratio, with
      its gradient (TRL's ``coef_1``: the token ratio, or ``exp(mean_t log r)`` at sequence
      level); TRL's default is True, ours False so existing runs keep their loss.

    Args:
        logp: ``[S, T]`` log-probs of the taken actions under the current policy (with grad).
        old_logp: ``[S, T]`` log-probs under the behaviour policy (treated as a constant).
        advantages: ``[S]`` (one per sequence, broadcast over its tokens) or ``[S, T]``.
            Treated as a constant.
        mask: ``[S, T]`` bool or float; 1 marks real tokens. ``None`` means all real.
        clip_eps: lower clip, ``> 0``; the ratio is kept above ``1 - clip_eps``.
        clip_eps_high: upper clip, ``> 0``; the ratio is kept below ``1 + clip_eps_high``
            (``cispo``: below ``clip_eps_high``). ``None``: ``clip_eps``.
        ratio_level: one of :data:`RATIO_LEVELS`; see :func:`check_loss_options`.
        loss_type: one of :data:`LOSS_TYPES`.
        max_len: ``dr_grpo`` normaliser (the maximum possible sequence length, ``>= T``);
            ignored by the other loss types.
        dual_clip: ``c > 1`` or ``None`` (off); clipped loss types only.
        delta: ``> 1`` or ``None`` (off); clipped loss types only.
        off_policy_mask_threshold: ``>= 0`` or ``None`` (off).
        ref_logp: ``[S, T]`` log-probs under the reference policy (treated as a constant).
        kl_coef: weight ``beta >= 0`` of the KL penalty; ``> 0`` requires ``ref_logp``.
        kl_estimator: one of :data:`KL_ESTIMATORS`.
        use_bias_correction_kl: multiply the per-token KL by the importance ratio.
        sapo_temperature_pos, sapo_temperature_neg: ``> 0``, SAPO's temperatures.
        vespo_k_pos, vespo_k_neg: ``>= 0``; vespo_lambda_pos, vespo_lambda_neg: ``> 0``.

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
    # ---- validate
    check_loss_options(loss_type, ratio_level, delta=delta, dual_clip=dual_clip)
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
    _check_optional("delta", delta, 1.0, low_open=True)
    _check_optional("off_policy_mask_threshold", off_policy_mask_threshold, 0.0, low_open=False)
    for name, value, low_open in (
        ("sapo_temperature_pos", sapo_temperature_pos, True), ("sapo_temperature_neg", sapo_temperature_neg, True),
        ("vespo_k_pos", vespo_k_pos, False), ("vespo_k_neg", vespo_k_neg, False),
        ("vespo_lambda_pos", vespo_lambda_pos, True), ("vespo_lambda_neg", vespo_lambda_neg, True),
    ):
        if value is None:
            raise ValueError(f"{name} must be a number, got None")
        _check_optional(name, value, 0.0, low_open=low_open)
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

    # ---- per-token policy loss
    phi = None
    capped_value = ratio_value if delta is None else ratio_value.clamp(max=delta)  # what TRL's clip stats see
    if loss_type in CLIPPED_LOSS_TYPES:
        ratio_clipped = ratio.clamp(1.0 - clip_eps, 1.0 + eps_high)
        unclipped = ratio if delta is None else ratio.clamp(max=delta)  # INTELLECT-2's two-sided clip
        per_token = -torch.min(unclipped * adv, ratio_clipped * adv)  # [S, T]
        if dual_clip is not None:
            per_token = torch.where(adv < 0, torch.minimum(per_token, -dual_clip * adv), per_token)
    elif loss_type == "cispo":
        per_token = -ratio_value.clamp(max=eps_high) * adv * logp  # weight detached: ratio_value is
    elif loss_type == "sapo":
        tau = torch.where(adv > 0, adv.new_full((), sapo_temperature_pos), adv.new_full((), sapo_temperature_neg))
        per_token = -(torch.sigmoid(tau * (ratio - 1.0)) * 4.0 / tau) * adv
    else:  # vespo
        phi = _gamma_weights(log_ratio, weights, adv, vespo_k_pos, vespo_lambda_pos, vespo_k_neg, vespo_lambda_neg)
        per_token = -phi * adv * logp
    if off_policy_mask_threshold is not None:
        # DeepSeek-V3.2 eq. 9: mean over the sequence's tokens of log(pi_old / pi_theta)
        seq_kl = _masked_mean(old_logp - logp.detach(), weights, dim=-1)[:, None]  # [S, 1]
        keep = (adv >= 0) | (seq_kl <= off_policy_mask_threshold)  # [S, 1] or [S, T]
        per_token = per_token * keep.to(per_token.dtype)
    surrogate = _aggregate(per_token, weights, loss_type, max_len)

    # ---- KL to the reference
    per_token_kl = None
    if ref_logp is not None:
        ref_logp = torch.where(valid, _as_float(ref_logp).detach(), zero)
        per_token_kl = kl_penalty(logp, ref_logp, kl_estimator)  # [S, T]
        if use_bias_correction_kl:
            # TRL's coef_1, with its gradient: the token ratio, or the sequence ratio through the mean
            importance = (torch.exp(log_ratio) if ratio_level == "token"
                          else torch.exp(_masked_mean(log_ratio, weights, dim=-1))[:, None])
            per_token_kl = per_token_kl * importance
    if kl_coef > 0:
        loss = _aggregate(per_token + kl_coef * per_token_kl, weights, loss_type, max_len)
    else:
        loss = surrogate

    # ---- stats (TRL units; see docstring)
    with torch.no_grad():
        per_sequence_units = ratio_value.shape[-1] == 1 and adv.shape[-1] == 1
        seq_weights = (weights.sum(-1, keepdim=True) > 0).to(weights.dtype)  # [S, 1]

        def batch_mean(x: torch.Tensor, per_sequence: bool = per_sequence_units) -> torch.Tensor:
            if per_sequence:
                return _masked_mean(x.to(weights.dtype), seq_weights)
            return _masked_mean(x.to(weights.dtype).expand_as(weights), weights)

        stats = {"policy_loss": surrogate.detach()}
        if loss_type in CLIPPED_LOSS_TYPES:
            is_low = (capped_value < 1.0 - clip_eps) & (adv < 0)
            is_high = (capped_value > 1.0 + eps_high) & (adv > 0)
            stats["clip_frac"] = batch_mean(is_low | is_high)
            stats["clip_frac_low"] = batch_mean(is_low)
            stats["clip_frac_high"] = batch_mean(is_high)
        elif loss_type == "cispo":
            stats["cispo_clip_ratio"] = batch_mean((ratio_value > eps_high) & (adv > 0))
            stats["clip_frac"] = stats["cispo_clip_ratio"]
        elif loss_type == "vespo":
            stats["vespo/phi_seq_mean"] = batch_mean(phi, per_sequence=phi.shape[-1] == 1)
        stats["approx_kl"] = _masked_mean(torch.expm1(log_ratio) - log_ratio, weights).detach()
        stats["ratio_mean"] = batch_mean(ratio_value)
        if dual_clip is not None:
            undual = -torch.min(capped_value * adv, ratio_value.clamp(1.0 - clip_eps, 1.0 + eps_high) * adv)
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
