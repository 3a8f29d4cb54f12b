"""Advantage estimators: group-relative (GRPO, outcome and process supervision) and GAE (PPO).

Pure functions on tensors: no env, model or logger. All outputs are detached: advantages
and returns are targets, and a gradient through them would be a bug.

Shape letters (the glossary is in `marl_grpo`'s docstring):

- ``S``: sequences, the members of all groups flattened (e.g. players x branches x matches);
- ``T``: time steps, or more generally columns normalised separately;
- ``B``: parallel environments (any trailing shape is allowed for GAE); ``G``: groups;
- ``F``: reward components (TRL's reward functions), a trailing dim of multi-component rewards.
"""

from __future__ import annotations

import numbers
from typing import Sequence

import torch

__all__ = [
    "AGGREGATIONS",
    "BASELINES",
    "SCALES",
    "episode_returns",
    "gae",
    "group_advantages",
    "group_stats",
    "process_group_advantages",
    "returns_to_go",
]

SCALES = ("group", "batch", "none")
"""Advantage scaling, named as TRL's ``GRPOConfig.scale_rewards``; ``"none"`` is Dr. GRPO."""

BASELINES = ("mean", "loo")
"""Group baselines: the group mean (GRPO) or the leave-one-out mean of the others (RLOO)."""

AGGREGATIONS = ("sum_then_normalize", "normalize_then_sum")
"""How reward components combine, named as TRL's ``GRPOConfig.multi_objective_aggregation``."""


# --------------------------------------------------------------------------- helpers


def _as_float(x: torch.Tensor) -> torch.Tensor:
    if not x.is_floating_point():
        return x.to(torch.get_default_dtype())
    return x.to(torch.promote_types(x.dtype, torch.float32))


def _group_index(
    num_members: int,
    group_ids: torch.Tensor | None,
    group_size: int | None,
    device: torch.device,
) -> tuple[torch.Tensor, int]:
    """Map members to dense group indices.

    Returns:
        ``(index, num_groups)``: ``index`` is ``[S]`` long in ``[0, num_groups)``.
    """
    if (group_ids is None) == (group_size is None):
        raise ValueError(
            "pass exactly one of group_ids (arbitrary labels, shape [S]) or group_size "
            f"(contiguous blocks), got group_ids={'None' if group_ids is None else 'a tensor'} "
            f"and group_size={group_size!r}"
        )
    if group_size is not None:
        if isinstance(group_size, bool) or not isinstance(group_size, numbers.Integral) or group_size < 1:
            raise ValueError(f"group_size must be a positive int, got {group_size!r}")
        if num_members % group_size != 0:
            raise ValueError(
                f"group_size={group_size} must divide the number of members S={num_members}"
            )
        group_size = int(group_size)
        index = torch.arange(num_members, device=device) // group_size
        return index, num_members // group_size
    if tuple(group_ids.shape) != (num_members,):
        raise ValueError(
            f"group_ids must have shape [S] = {[num_members]}, got {list(group_ids.shape)}"
        )
    if group_ids.is_floating_point() or group_ids.is_complex():
        raise ValueError(f"group_ids must be an integer tensor, got dtype {group_ids.dtype}")
    labels, index = torch.unique(group_ids.to(device), return_inverse=True)
    return index, labels.numel()


def _group_moments(
    values: torch.Tensor, index: torch.Tensor, num_groups: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-group mean, unbiased std and constancy, fully vectorised with ``index_add_``.

    Args:
        values: ``[S, T]`` float.
        index: ``[S]`` dense group index.

    Returns:
        ``(mean, std, constant, sums, counts)``: the first four ``[G, T]``, ``counts`` ``[G, 1]``.
        ``std`` is 0 for singleton groups (where the unbiased std is undefined). ``constant`` is
        exact (max == min), so a group of identical values is recognised even when rounding
        makes its computed std a tiny non-zero.
    """
    num_cols = values.shape[1]
    counts = torch.bincount(index, minlength=num_groups).to(values.dtype)[:, None]  # [G, 1]
    sums = values.new_zeros(num_groups, num_cols).index_add_(0, index, values)
    mean = sums / counts
    centered = values - mean[index]
    sq_sums = values.new_zeros(num_groups, num_cols).index_add_(0, index, centered.square())
    std = (sq_sums / (counts - 1).clamp(min=1)).sqrt()  # Bessel's correction, as torch.std
    expanded = index[:, None].expand_as(values)
    group_max = values.new_full((num_groups, num_cols), -torch.inf).scatter_reduce(
        0, expanded, values, reduce="amax"
    )
    group_min = values.new_full((num_groups, num_cols), torch.inf).scatter_reduce(
        0, expanded, values, reduce="amin"
    )
    return mean, std, group_max == group_min, sums, counts


def _batch_std(values: torch.Tensor) -> torch.Tensor:
    """``[S, T]`` -> ``[T]`` unbiased std over all members; 0 for a one-member batch (undefined)."""
    return values.std(dim=0) if values.shape[0] > 1 else torch.zeros_like(values[0])


def _check_scale_eps(scale: str, eps: float) -> None:
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {SCALES}, got {scale!r}")
    if not eps >= 0:
        raise ValueError(f"eps must be >= 0, got {eps!r}")


# --------------------------------------------------------------------------- group-relative


def _relative(
    values: torch.Tensor, index: torch.Tensor, num_groups: int, scale: str, eps: float, baseline: str
) -> torch.Tensor:
    """``[S, T]`` -> ``[S, T]``: each column against its group's baseline, scaled; constant groups exactly 0."""
    mean, std, constant, sums, counts = _group_moments(values, index, num_groups)  # [G, T] ([G, 1])
    if baseline == "mean":
        advantages = values - mean[index]  # [S, T]
    else:  # the mean of the other members: (sum - r_i) / (n - 1); singletons are constant, zeroed below
        advantages = values - (sums[index] - values) / (counts[index] - 1).clamp(min=1)
    if scale == "group":
        advantages = advantages / (std[index] + eps)
    elif scale == "batch":
        # A one-member batch has an undefined std; every group is then constant anyway.
        advantages = advantages / (_batch_std(values) + eps)
    return torch.where(constant[index], torch.zeros_like(advantages), advantages)


def group_advantages(
    returns: torch.Tensor,
    group_ids: torch.Tensor | None = None,
    group_size: int | None = None,
    scale: str = "group",
    eps: float = 1e-4,
    *,
    baseline: str = "mean",
    aggregation: str = "sum_then_normalize",
    components: bool = False,
    reward_weights: Sequence[float] | torch.Tensor | None = None,
) -> torch.Tensor:
    """Group-relative advantages: each member's return against its group's baseline.

    DeepSeekMath's GRPO outcome supervision (Shao et al. 2024, sec. 4.1.2)::

        A_i = (r_i - mean(r_group)) / (std(r_group) + eps)

    with TRL's conventions: the *unbiased* std (``torch.std``), ``eps = 1e-4`` and
    ``scale`` as ``GRPOConfig.scale_rewards``:

    - ``"group"``: divide by the std of the member's own group;
    - ``"batch"``: divide by the std of the whole batch (all members, per column), which
      keeps the relative size of the groups' spreads;
    - ``"none"``: no division (Dr. GRPO, Liu et al. 2025, sec. 3.1: the std term biases
      updates towards too-easy and too-hard groups).

    ``baseline`` (:data:`BASELINES`):

    - ``"mean"``: the group mean above (GRPO);
    - ``"loo"``: the leave-one-out mean of the *other* members, ``r_i - mean_{j != i} r_j``
      (RLOO: Kool et al. 2019, "Buy 4 REINFORCE Samples, Get a Baseline for Free!";
      Ahmadian et al. 2024, "Back to Basics: Revisiting REINFORCE Style Optimization for
      Learning from Human Feedback in LLMs"; TRL's ``RLOOTrainer``), an unbiased baseline since
      it does not depend on ``r_i``. ``scale`` divides it by the same std as for ``"mean"``
      (the group's, including ``r_i``; the batch's; or none, which is plain RLOO). Since
      ``r_i - mean_{j != i} r_j = n / (n - 1) * (r_i - mean)``, in a group of ``n`` members it
      is the mean-baseline advantage times ``n / (n - 1)``: the two differ by a constant for
      equal-sized groups and weigh small groups more when sizes differ (soccer's team groups).

    Multi-component rewards (``components=True``: a trailing dim ``F`` of reward components,
    TRL's reward functions, weighted by ``reward_weights`` ``w``, default all 1), by
    ``aggregation`` (:data:`AGGREGATIONS`, TRL 1.16's ``GRPOConfig.multi_objective_aggregation``):

    - ``"sum_then_normalize"``: ``r = sum_f w_f r_f``, then the advantage above;
    - ``"normalize_then_sum"`` (GDPO, "GDPO: Group reward-Decoupled Normalization Policy
      Optimization for Multi-reward RL Optimization", arXiv 2601.05242): each component gets its own
      group-relative advantage ``A_f`` (baseline and ``scale`` as above), then
      ``A = sum_f w_f A_f`` is re-normalised over the batch, ``A / (std_batch(A) + eps)``
      (per column). With ``scale="group"`` this is TRL's definition exactly (TRL then
      ignores ``scale_rewards``). TRL also subtracts the batch mean of ``A``, which is 0 by
      construction (every ``A_f`` sums to 0 within each group, for both baselines), so we skip
      it and constant groups stay exactly 0. With ``scale="none"`` nothing is divided, neither
      per component nor after the sum, and the result equals ``sum_then_normalize`` up to
      rounding. A single reward (``components=False``) is one component: the batch
      re-normalisation is then all that ``normalize_then_sum`` changes, as in TRL.

    A group whose members all have the same return (including a singleton group) gives
    exactly 0 for every member, never NaN: it carries no relative signal. With
    ``normalize_then_sum`` this holds per component.

    Args:
        returns: ``[S]``, or ``[S, T]`` where every column ``t`` is normalised independently
            with the same groups (used by :func:`process_group_advantages`); with
            ``components``, ``[S, F]`` or ``[S, T, F]``.
        group_ids: ``[S]`` integer labels; any values, groups need not be contiguous nor
            equal-sized. Exclusive with ``group_size``.
        group_size: members ``[j * group_size, (j + 1) * group_size)`` form group ``j``; must
            divide ``S``. Exclusive with ``group_ids``.
        scale: one of :data:`SCALES`.
        eps: ``>= 0``, added to the std.
        baseline: one of :data:`BASELINES`.
        aggregation: one of :data:`AGGREGATIONS`.
        components: the last dim of ``returns`` holds ``F`` reward components.
        reward_weights: ``[F]`` weights of the components (TRL's ``reward_weights``); only
            with ``components``. None: all 1.

    Returns:
        ``[S]`` or ``[S, T]`` (the shape of ``returns`` without its component dim), detached,
        float32 or wider.
    """
    _check_scale_eps(scale, eps)
    if baseline not in BASELINES:
        raise ValueError(f"baseline must be one of {BASELINES}, got {baseline!r}")
    if aggregation not in AGGREGATIONS:
        raise ValueError(f"aggregation must be one of {AGGREGATIONS}, got {aggregation!r}")
    if components:
        if returns.dim() not in (2, 3):
            raise ValueError(f"returns with components must have shape [S, F] or [S, T, F], "
                             f"got {list(returns.shape)}")
    elif returns.dim() not in (1, 2):
        raise ValueError(f"returns must have shape [S] or [S, T], got {list(returns.shape)}")
    elif reward_weights is not None:
        raise ValueError("reward_weights weigh reward components: pass components=True and returns of shape "
                         "[S, F] or [S, T, F]")
    values = _as_float(returns).detach()
    is_vector = values.dim() == (2 if components else 1)
    if is_vector:
        values = values.unsqueeze(1)  # [S, 1] or [S, 1, F]
    index, num_groups = _group_index(values.shape[0], group_ids, group_size, values.device)
    weights = None
    if components:
        num_components = values.shape[-1]
        if reward_weights is None:
            weights = torch.ones(num_components, dtype=values.dtype, device=values.device)
        else:
            weights = torch.as_tensor(reward_weights, dtype=values.dtype, device=values.device)
            if tuple(weights.shape) != (num_components,) or not torch.isfinite(weights).all():
                raise ValueError(f"reward_weights must be {num_components} finite numbers (one per component, "
                                 f"[F] = {[num_components]}), got {reward_weights!r}")

    if aggregation == "sum_then_normalize":
        total = values if weights is None else (values * weights).sum(-1)  # [S, T]
        advantages = _relative(total, index, num_groups, scale, eps, baseline)
    else:
        per_component = values if weights is None else values.flatten(1)  # [S, T] or [S, T * F]
        per_component = _relative(per_component, index, num_groups, scale, eps, baseline)
        if weights is None:
            total = per_component
        else:
            total = (per_component.view(values.shape) * weights).sum(-1)  # [S, T]
        if scale == "none":
            advantages = total
        else:  # GDPO's batch re-normalisation; exact zeros stay zeros (and 0 / 0 never happens)
            advantages = torch.where(total == 0, torch.zeros_like(total), total / (_batch_std(total) + eps))
    return advantages[:, 0] if is_vector else advantages


def group_stats(
    returns: torch.Tensor,
    group_ids: torch.Tensor | None = None,
    group_size: int | None = None,
) -> dict[str, torch.Tensor]:
    """Diagnostics of the group baseline, as TRL logs them (``reward_std``, ``frac_reward_zero_std``).

    Args:
        returns: ``[S]`` or ``[S, T]``; groups as in :func:`group_advantages`.
        group_ids: ``[S]`` integer labels, exclusive with ``group_size``.
        group_size: contiguous group size, exclusive with ``group_ids``.

    Returns:
        Detached 0-dim tensors (averaged over groups, and over columns for ``[S, T]``):

        - ``reward_std``: mean within-group unbiased std (0 for singletons);
        - ``frac_zero_std``: fraction of groups whose members all have the same return
          (singletons included): those groups give zero advantage and no learning signal.

        TRL averages over members rather than groups; the two agree for equal-sized groups.
    """
    if returns.dim() not in (1, 2):
        raise ValueError(f"returns must have shape [S] or [S, T], got {list(returns.shape)}")
    values = _as_float(returns).detach()
    if values.dim() == 1:
        values = values[:, None]
    index, num_groups = _group_index(values.shape[0], group_ids, group_size, values.device)
    _, std, constant, _, _ = _group_moments(values, index, num_groups)
    return {
        "reward_std": std.mean(),
        "frac_zero_std": constant.to(values.dtype).mean(),
    }


# --------------------------------------------------------------------------- process supervision


def returns_to_go(
    rewards: torch.Tensor, gamma: float = 1.0, dones: torch.Tensor | None = None
) -> torch.Tensor:
    """Discounted return-to-go ``G_t = r_t + gamma * (1 - done_t) * G_{t+1}``, ``G_T = 0``.

    Args:
        rewards: ``[T, *]`` reward of each step.
        gamma: discount in ``[0, 1]``.
        dones: ``[T, *]`` optional, bool or float; ``dones[t] = 1`` means the episode ended
            after step ``t``, so later rewards are not added to ``G_t``.

    Returns:
        ``[T, *]`` detached.
    """
    if not 0.0 <= gamma <= 1.0:
        raise ValueError(f"gamma must be in [0, 1], got {gamma!r}")
    if rewards.dim() < 1:
        raise ValueError(f"rewards must have shape [T, *], got {list(rewards.shape)}")
    rewards = _as_float(rewards).detach()
    if dones is None:
        discount = torch.full_like(rewards, gamma)
    else:
        if tuple(dones.shape) != tuple(rewards.shape):
            raise ValueError(
                f"dones must have the shape of rewards {list(rewards.shape)}, got {list(dones.shape)}"
            )
        discount = gamma * (1.0 - dones.detach().to(rewards.dtype))
    # A Python loop over time only (T steps), every step batched over all sequences.
    running = torch.zeros_like(rewards[0])
    out = torch.empty_like(rewards)
    for t in reversed(range(rewards.shape[0])):
        running = rewards[t] + discount[t] * running
        out[t] = running
    return out


def episode_returns(rewards: torch.Tensor, dones: torch.Tensor | None = None) -> torch.Tensor:
    """The undiscounted return of the episode each step belongs to, within the segment.

    Outcome supervision (DeepSeekMath, Shao et al. 2024, sec. 4.1.2) gives every token of an
    output the reward of that whole output. When an episode ends inside a segment, the steps
    before the end and after it belong to two episodes, and each step gets its own episode's
    return ``sum_{t' in episode(t)} r_t'`` (the segment's edges cut the first and last episode).

    Args:
        rewards: ``[T, *]`` reward of each step.
        dones: ``[T, *]`` optional, as in :func:`returns_to_go`.

    Returns:
        ``[T, *]`` detached; without dones, every row is the segment's total return.
    """
    future = returns_to_go(rewards, gamma=1.0, dones=dones)  # [T, *], reset after every episode end
    if dones is None:
        return future[:1].expand_as(future).clone()
    steps = torch.arange(future.shape[0], device=future.device).view(-1, *([1] * (future.dim() - 1)))
    ended_before = torch.zeros_like(future, dtype=torch.long)
    ended_before[1:] = torch.where(dones[:-1].bool(), steps[1:].expand_as(future[1:]), 0)
    start = ended_before.cummax(0).values  # the first step of each step's episode
    return future.gather(0, start)


def process_group_advantages(
    rewards: torch.Tensor,
    group_ids: torch.Tensor | None = None,
    group_size: int | None = None,
    gamma: float = 1.0,
    scale: str = "group",
    eps: float = 1e-4,
    dones: torch.Tensor | None = None,
    *,
    baseline: str = "mean",
    aggregation: str = "sum_then_normalize",
    components: bool = False,
    reward_weights: Sequence[float] | torch.Tensor | None = None,
) -> torch.Tensor:
    """Process-supervised group advantages: return-to-go normalised across the group per step.

    Adapted from DeepSeekMath's process supervision (Shao et al. 2024, sec. 4.1.3), where
    each step reward is normalised across the group and a token's advantage is the sum of
    the normalised rewards that follow it. For branched game rollouts, whose members are
    aligned in time, we normalise the quantity that matters instead::

        G_{t,i} = returns_to_go(rewards)[t, i]
        A_{t,i} = (G_{t,i} - mean_{j in group(i)} G_{t,j}) / (std_{j in group(i)} G_{t,j} + eps)

    i.e. member ``i``'s future return from step ``t`` against the other branches' future
    returns from the same step ``t``, with :func:`group_advantages` semantics at each step
    (unbiased std, ``scale``, ``baseline``, exact 0 for constant groups). With ``components``
    each component's return-to-go is computed separately and the components are combined at
    each step as ``aggregation`` says.

    Args:
        rewards: ``[T, S]`` per-step rewards of the ``S`` members; with ``components``,
            ``[T, S, F]``.
        group_ids: ``[S]`` integer labels, exclusive with ``group_size``.
        group_size: contiguous group size, exclusive with ``group_ids``.
        gamma: discount of the return-to-go.
        scale: one of :data:`SCALES`.
        eps: ``>= 0``, added to the std.
        dones: ``[T, S]`` optional episode ends, as in :func:`returns_to_go`.
        baseline: as in :func:`group_advantages`.
        aggregation: as in :func:`group_advantages`.
        components: as in :func:`group_advantages`.
        reward_weights: as in :func:`group_advantages`.

    Returns:
        ``[T, S]`` detached advantages.
    """
    if rewards.dim() != (3 if components else 2):
        expected = "[T, S, F]" if components else "[T, S]"
        raise ValueError(f"rewards must have shape {expected}, got {list(rewards.shape)}")
    if components and dones is not None:
        if tuple(dones.shape) != tuple(rewards.shape[:2]):
            raise ValueError(f"dones must have shape [T, S] = {list(rewards.shape[:2])}, got {list(dones.shape)}")
        dones = dones.unsqueeze(-1).expand_as(rewards)
    future_returns = returns_to_go(rewards, gamma=gamma, dones=dones)  # [T, S] or [T, S, F]
    advantages = group_advantages(
        future_returns.transpose(0, 1), group_ids=group_ids, group_size=group_size, scale=scale, eps=eps,
        baseline=baseline, aggregation=aggregation, components=components, reward_weights=reward_weights,
    )  # [S, T]: one column per step
    return advantages.transpose(0, 1).contiguous()


# --------------------------------------------------------------------------- GAE


def gae(
    rewards: torch.Tensor,
    values: torch.Tensor,
    dones: torch.Tensor,
    last_value: torch.Tensor,
    gamma: float = 0.99,
    lam: float = 0.95,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalized Advantage Estimation (Schulman et al. 2016, "High-Dimensional Continuous
    Control Using Generalized Advantage Estimation", eq. 16), as in CleanRL's ``ppo.py``::

        delta_t = r_t + gamma * (1 - done_t) * V_{t+1} - V_t,     V_T = last_value
        A_t     = delta_t + gamma * lam * (1 - done_t) * A_{t+1}, A_T = 0
        R_t     = A_t + V_t

    ``dones[t] = 1`` means the episode ended after step ``t`` (the value of the next
    observation, which belongs to a new episode, is not bootstrapped). For a time-limit
    truncation, add ``gamma * V(final observation)`` to that step's reward before calling.

    Args:
        rewards: ``[T, *]`` (e.g. ``[T, B]`` or ``[T, B, N]``).
        values: ``[T, *]`` critic values ``V(s_t)``.
        dones: ``[T, *]`` bool or float.
        last_value: ``[*]`` ``V(s_T)``, the value of the observation after the last step.
        gamma: discount in ``[0, 1]``.
        lam: GAE lambda in ``[0, 1]``.

    Returns:
        ``(advantages, returns)``, both ``[T, *]`` and detached.
    """
    if rewards.dim() < 1:
        raise ValueError(f"rewards must have shape [T, *], got {list(rewards.shape)}")
    shape = tuple(rewards.shape)
    for name, tensor in (("values", values), ("dones", dones)):
        if tuple(tensor.shape) != shape:
            raise ValueError(f"{name} must have the shape of rewards {list(shape)}, got {list(tensor.shape)}")
    if tuple(last_value.shape) != shape[1:]:
        raise ValueError(
            f"last_value must have shape rewards.shape[1:] = {list(shape[1:])}, got {list(last_value.shape)}"
        )
    if not 0.0 <= gamma <= 1.0:
        raise ValueError(f"gamma must be in [0, 1], got {gamma!r}")
    if not 0.0 <= lam <= 1.0:
        raise ValueError(f"lam must be in [0, 1], got {lam!r}")

    rewards = _as_float(rewards).detach()
    values = values.detach().to(rewards.dtype)
    next_values = torch.cat([values[1:], last_value.detach().to(rewards.dtype)[None]])  # [T, *]
    not_done = 1.0 - dones.detach().to(rewards.dtype)
    deltas = rewards + gamma * not_done * next_values - values  # all steps at once
    advantages = torch.empty_like(rewards)
    running = torch.zeros_like(rewards[0])
    for t in reversed(range(shape[0])):  # the recursion is sequential in time only
        running = deltas[t] + gamma * lam * not_done[t] * running
        advantages[t] = running
    return advantages, advantages + values
