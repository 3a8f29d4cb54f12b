"""The one update step of every learner: epochs x minibatches of the shared policy loss.

Soccer (GRPO and PPO) and the LLM mode describe their batch as an `UpdateBatch` (S sequences of
at most T tokens, see `marl_grpo` for the shape letters) and call `policy_update`:

    for each of update_epochs passes:
        shuffle the batch's units (soccer: sequences; LLM: prompt groups, which stay whole)
        for each minibatch of units:
            for each of gradient_accumulation_steps micro-batches (whole units):
                logp, entropy = batch.log_probs(rows)                 # with grad
                loss, stats = marl_grpo.losses.policy_loss(..., options)   # the loss core
                loss += -ent_coef * mean entropy + batch.aux_loss(rows)   # PPO: its value loss
                backward of the loss weighted by the micro-batch's share (`micro_batch_weights`)
            clip_grad_norm, optimizer step

Stats are summed on the device and read back once, at the end (one host sync per update). Under
torchrun the gradients are averaged over ranks before clipping (`marl_grpo.run.distributed`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch

from marl_grpo.losses import PolicyLossOptions, policy_loss
from marl_grpo.run import distributed
from marl_grpo.run.config import RunConfig

LOSS_TAGS = {"policy_loss": "losses/policy_loss", "entropy": "losses/entropy", "approx_kl": "losses/approx_kl",
             "clip_frac": "losses/clipfrac", "kl": "losses/kl", "ratio_mean": "losses/ratio_mean",
             "clip_frac_low": "losses/clipfrac_low", "clip_frac_high": "losses/clipfrac_high",
             "grad_norm": "losses/grad_norm", "loss": "losses/total_loss"}
"""stats keys of `policy_loss` (and the update) -> TensorBoard tags (CleanRL's names where they exist);
any other key `k` is logged as `losses/k`"""

LogProbs = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
AuxLoss = Callable[[torch.Tensor], tuple[torch.Tensor, dict[str, torch.Tensor]]]


@dataclass
class UpdateBatch:
    """What one update needs, returned by a learner's `advantages` (no state kept on the side).

    S sequences of T tokens: soccer's sequence is one player's segment of T steps; the LLM's is
    one completion of T tokens.
    """

    advantages: torch.Tensor
    """[S, T] (per token) or [S] (one per sequence)"""
    log_probs: LogProbs
    """rows [s] -> (logp [s, T], entropy [s, T]) under the current policy, with gradients"""
    num_units: int
    """how many units are shuffled into minibatches"""
    unit_rows: Callable[[torch.Tensor], torch.Tensor] | None = None
    """units [u] -> rows [s]; None: a unit is a row (the LLM maps a prompt group to its G rows)"""
    old_logp: torch.Tensor | None = None
    """[S, T] log-probs of the acting policy; None: the detached current ones (ratio 1, TRL's
    shortcut when a batch is used for a single step)"""
    ref_logp: torch.Tensor | None = None
    """[S, T] log-probs of the reference policy (for the KL term)"""
    mask: torch.Tensor | None = None
    """[S, T] 1 for real tokens (None: all real)"""
    max_len: int | None = None
    """Dr. GRPO's constant normaliser (T when None)"""
    aux_loss: AuxLoss | None = None
    """rows [s] -> (loss, stats) added to the minibatch loss (PPO: vf_coef x its value loss)"""
    normalize_advantages: bool = False
    """standardise the advantages of each minibatch (PPO's option, CleanRL)"""
    grad_scaler: torch.amp.GradScaler | None = None
    """dynamic loss scaling for float16 forward passes (None: off); a step whose gradients overflow
    is skipped and the scale lowered, as `torch.amp.GradScaler` does"""


TOKEN_MEAN_LOSS_TYPES = ("bnpo", "dapo", "cispo", "vespo")
"""loss types whose aggregation divides by the real-token count of the whole minibatch
(`marl_grpo.losses.aggregate`); the others average per sequence, or divide by a constant per
sequence (dr_grpo), so their normaliser is the minibatch's sequence count"""


def micro_batch_weights(loss_type: str, part_rows: list[torch.Tensor], mask: torch.Tensor | None,
                        ) -> list[tuple[torch.Tensor | float, torch.Tensor | float, float]]:
    """Weights `(policy, entropy, aux)` of each micro-batch's loss terms so that the sum of the
    micro-batches' weighted losses, hence of their gradients, equals the loss of the whole minibatch.

    Every aggregation of `policy_loss` is a sum over the minibatch's sequences divided by a
    normaliser: the sequence count S (grpo, sapo, luspo; dr_grpo's ``S * max_len``) or the real-token
    count M (bnpo, dapo, cispo, vespo, and the entropy's masked mean). A micro-batch of s sequences
    and m real tokens divides by s (or m) instead, so its loss is weighted by s / S (or
    m / max(M, 1); a micro-batch without real tokens has loss 0 either way). This is what TRL does
    with ``num_items_in_batch`` for its token-level losses, here for every loss type. The auxiliary
    loss (PPO's value loss) is a mean over its rows' steps, all real: weight s / S. Per-sequence
    quantities (GSPO's sequence ratio, VESPO's weight, the off-policy mask) never cross
    micro-batches, since a micro-batch holds whole units.
    """
    sizes = [len(rows) for rows in part_rows]
    seq_share = [size / sum(sizes) for size in sizes]
    if mask is None:  # every step real: the token shares are the sequence shares
        token_share: list[torch.Tensor | float] = list(seq_share)
    else:  # on the device: no host sync
        tokens = torch.stack([mask[rows].sum() for rows in part_rows]).float()
        token_share = list((tokens / tokens.sum().clamp(min=1.0)).unbind())
    policy = token_share if loss_type in TOKEN_MEAN_LOSS_TYPES else seq_share
    return list(zip(policy, token_share, seq_share))


def _normalize(adv: torch.Tensor) -> torch.Tensor:
    """Standardise with the minibatch's mean and (unbiased) std, over every rank's minibatch."""
    count, mean, var = distributed.moments(adv)
    unbiased = var * count / (count - 1).clamp(min=1)
    return (adv - mean.to(adv.dtype)) / (unbiased.sqrt().to(adv.dtype) + 1e-8)


def _masked_mean(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    if mask is None:
        return x.mean()
    return (x * mask).sum() / mask.sum().clamp(min=1)


def _micro_batch_loss(batch: UpdateBatch, rows: torch.Tensor, adv: torch.Tensor, cfg: RunConfig,
                      options: PolicyLossOptions,
                      weights: tuple[torch.Tensor | float, torch.Tensor | float, float] | None,
                      ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The loss of the sequences `rows` (a minibatch, or one micro-batch of it weighted by
    `micro_batch_weights`), and its stats weighted alike (so that they sum to the minibatch's)."""
    logp, entropy = batch.log_probs(rows)
    mask = None if batch.mask is None else batch.mask[rows]
    old_logp = logp.detach() if batch.old_logp is None else batch.old_logp[rows]
    ref_logp = None if batch.ref_logp is None else batch.ref_logp[rows]
    loss, stats = policy_loss(logp, old_logp, adv, mask, options=options, ref_logp=ref_logp)
    entropy_mean = _masked_mean(entropy, mask)
    aux, aux_stats = batch.aux_loss(rows) if batch.aux_loss is not None else (None, {})
    if weights is not None:
        w_policy, w_entropy, w_aux = weights
        loss, entropy_mean = loss * w_policy, entropy_mean * w_entropy
        stats = {key: value * w_policy for key, value in stats.items()}
        if aux is not None:
            aux, aux_stats = aux * w_aux, {key: value * w_aux for key, value in aux_stats.items()}
    total = loss - cfg.ent_coef * entropy_mean if cfg.ent_coef else loss
    if aux is not None:
        total = total + aux
    return total, {**stats, **aux_stats, "entropy": entropy_mean.detach(), "loss": total.detach()}


def policy_update(batch: UpdateBatch, optimizer: torch.optim.Optimizer, parameters: list[torch.nn.Parameter],
                  cfg: RunConfig, generator: torch.Generator | None = None) -> dict[str, float]:
    """`cfg.update_epochs` passes of `cfg.num_minibatches` optimiser steps over `batch`.

    Returns the mean of every stat over the steps, under its TensorBoard tag (`LOSS_TAGS`).
    `generator` draws the minibatch order (None: torch's global stream, which the run loop saves).
    """
    device = batch.advantages.device
    options = cfg.loss_options(max_len=batch.max_len)  # checked once, for every minibatch
    mb_size = max(1, batch.num_units // cfg.num_minibatches)
    accumulation, scaler = cfg.gradient_accumulation_steps, batch.grad_scaler
    totals: dict[str, torch.Tensor] = {}
    count = 0
    for _ in range(cfg.update_epochs):
        order = torch.randperm(batch.num_units, generator=generator,
                               device=generator.device if generator is not None else device).to(device)
        for start in range(0, batch.num_units, mb_size):
            units = order[start:start + mb_size]
            if len(units) < accumulation:
                raise ValueError(f"gradient_accumulation_steps={accumulation} is more than the {len(units)} "
                                 "unit(s) of a minibatch: each micro-batch needs at least one")
            parts = [units] if accumulation == 1 else list(units.tensor_split(accumulation))
            part_rows = [p if batch.unit_rows is None else batch.unit_rows(p) for p in parts]
            rows = part_rows[0] if accumulation == 1 else torch.cat(part_rows)
            advantages = batch.advantages[rows]
            if batch.normalize_advantages:  # over the whole minibatch, whatever its micro-batches
                advantages = _normalize(advantages)
            weights = (None if accumulation == 1 else
                       micro_batch_weights(cfg.loss_type, part_rows, batch.mask))
            optimizer.zero_grad(set_to_none=True)
            step: dict[str, torch.Tensor] = {}
            for k, (part, adv) in enumerate(zip(part_rows, advantages.split([len(r) for r in part_rows]))):
                total, stats = _micro_batch_loss(batch, part, adv, cfg, options,
                                                 None if weights is None else weights[k])
                (total if scaler is None else scaler.scale(total)).backward()
                for key, value in stats.items():
                    value = value.detach().float()
                    step[key] = step[key] + value if key in step else value
            distributed.average_gradients(parameters)  # under torchrun: the mean over ranks
            if scaler is not None:
                scaler.unscale_(optimizer)
            grad_norm = torch.nn.utils.clip_grad_norm_(parameters, cfg.max_grad_norm)
            if scaler is None:
                optimizer.step()
            else:  # an overflowed step is skipped (and the scale lowered): not a divergence
                scaler.step(optimizer)
                scaler.update()
                step["amp_skipped_steps"] = (~torch.isfinite(grad_norm)).float()
                grad_norm = torch.nan_to_num(grad_norm, nan=0.0, posinf=0.0)
            step["grad_norm"] = grad_norm
            for key, value in step.items():  # summed on the device: one sync at the end
                value = value.detach().float()
                totals[key] = totals[key] + value if key in totals else value.clone()
            count += 1
    values = torch.stack(list(totals.values())).cpu().tolist()  # the one host sync
    stats = {LOSS_TAGS.get(k, f"losses/{k}"): v / count for k, v in zip(totals, values)}
    if not all(math.isfinite(stats[tag]) for tag in ("losses/total_loss", "losses/grad_norm")):
        raise FloatingPointError(
            f"the update produced a non-finite loss or gradient (total loss {stats['losses/total_loss']}, gradient "
            f"norm {stats['losses/grad_norm']}): the weights are no longer finite and are not saved; the last "
            "checkpoint holds the last finite ones (a lower --learning-rate or --max-grad-norm may help)")
    return stats
