"""Advantage estimators: group-relative (GRPO, outcome and process supervision) and GAE (PPO).

Pure functions on tensors: no env, model or logger. All outputs are detached: advantages
and returns are targets, and a gradient through them would be a bug.

Shape letters (the glossary is in `marl_grpo`'s docstring):

- ``S``: sequences, the members of all groups flattened (e.g. players x branches x matches);
- ``T``: time steps, or more generally columns normalised separately;
- ``B``: parallel environments (any trailing shape is allowed for GAE); ``G``: groups.
"""

from __future__ import annotations

import numbers

import torch

__all__ = [
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
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-group mean, unbiased std and constancy, fully vectorised with ``index_add_``.

    Args:
        values: ``[S, T]`` float.
        index: ``[S]`` dense group index.

    Returns:
        ``(mean, std, constant)``, each ``[G, T]``. ``std`` is 0 for singleton groups (where the
        unbiased std is undefined). ``constant`` is exact (max == min), so a group of identical
        values is recognised even when rounding makes its computed std a tiny non-zero.
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
    return mean, std, group_max == group_min


def _check_scale_eps(scale: str, eps: float) -> None:
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {SCALES}, got {scale!r}")
    if not eps >= 0:
        raise ValueError(f"eps must be >= 0, got {eps!r}")


# --------------------------------------------------------------------------- group-relative


def group_advantages(
    returns: torch.Tensor,
    group_ids: torch.Tensor | None = None,
    group_size: int | None = None,
    scale: str = "group",
    eps: float = 1e-4,
) -> torch.Tensor:
    """Group-relative advantages: each member's return against its group's mean.

    DeepSeekMath's GRPO outcome supervision (Shao et al. 2024, sec. 4.1.2)::

        A_i = (r_i - mean(r_group)) / (std(r_group) + eps)

    with TRL's conventions: the *unbiased* std (``torch.std``), ``eps = 1e-4`` and
    ``scale`` as ``GRPOConfig.scale_rewards``:

    - ``"group"``: divide by the std of the member's own group;
    - ``"batch"``: divide by the std of the whole batch (all members, per column), which
      keeps the relative size of the groups' spreads;
    - ``"none"``: no division (Dr. GRPO, Liu et al. 2025, sec. 3.1: the std term biases
      updates towards too-easy and too-hard groups).

    A group whose members all have the same return (including a singleton group) gives
    exactly 0 for every member, never NaN: it carries no relative signal.

    Args:
        returns: ``[S]``, or ``[S, T]`` where every column ``t`` is normalised independently
            with the same groups (used by :func:`process_group_advantages`).
        group_ids: ``[S]`` integer labels; any values, groups need not be contiguous nor
            equal-sized. Exclusive with ``group_size``.
        group_size: members ``[j * group_size, (j + 1) * group_size)`` form group ``j``; must
            divide ``S``. Exclusive with ``group_ids``.
        scale: one of :data:`SCALES`.
        eps: ``>= 0``, added to the std.

    Returns:
        ``[S]`` or ``[S, T]`` (the shape of ``returns``), detached, float32 or wider.
    """
    _check_scale_eps(scale, eps)
    if returns.dim() not in (1, 2):
        raise ValueError(f"returns must have shape [S] or [S, T], got {list(returns.shape)}")
    values = _as_float(returns).detach()
    is_vector = values.dim() == 1
    if is_vector:
        values = values[:, None]  # [S, 1]
    index, num_groups = _group_index(values.shape[0], group_ids, group_size, values.device)

    mean, std, constant = _group_moments(values, index, num_groups)  # [G, T] each
    advantages = values - mean[index]  # [S, T]
    if scale == "group":
        advantages = advantages / (std[index] + eps)
    elif scale == "batch":
        # A one-member batch has an undefined std; every group is then constant anyway.
        batch_std = values.std(dim=0) if values.shape[0] > 1 else torch.zeros_like(values[0])
        advantages = advantages / (batch_std + eps)
    advantages = torch.where(constant[index], torch.zeros_like(advantages), advantages)
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
    _, std, constant = _group_moments(values, index, num_groups)
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
    (unbiased std, ``scale``, exact 0 for constant groups).

    Args:
        rewards: ``[T, S]`` per-step rewards of the ``S`` members.
        group_ids: ``[S]`` integer labels, exclusive with ``group_size``.
        group_size: contiguous group size, exclusive with ``group_ids``.
        gamma: discount of the return-to-go.
        scale: one of :data:`SCALES`.
        eps: ``>= 0``, added to the std.
        dones: ``[T, S]`` optional episode ends, as in :func:`returns_to_go`.

    Returns:
        ``[T, S]`` detached advantages.
    """
    if rewards.dim() != 2:
        raise ValueError(f"rewards must have shape [T, S], got {list(rewards.shape)}")
    future_returns = returns_to_go(rewards, gamma=gamma, dones=dones)  # [T, S]
    advantages = group_advantages(
        future_returns.transpose(0, 1), group_ids=group_ids, group_size=group_size, scale=scale, eps=eps
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
