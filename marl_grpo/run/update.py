"""The one update step of every learner: epochs x minibatches of the shared policy loss.

Soccer (GRPO and PPO) and the LLM mode describe their batch as an `UpdateBatch` (S sequences of
at most T tokens, see `marl_grpo` for the shape letters) and call `policy_update`:

    for each of update_epochs passes:
        shuffle the batch's units (soccer: sequences; LLM: prompt groups, which stay whole)
        for each minibatch of units:
            logp, entropy = batch.log_probs(rows)                 # with grad
            loss, stats = marl_grpo.losses.policy_loss(...)       # the loss core, cfg.loss_type
            loss += -ent_coef * mean entropy + batch.aux_loss(rows)   # PPO: its value loss
            backward, clip_grad_norm, optimizer step

Stats are summed on the device and read back once, at the end (one host sync per update). Under
torchrun the gradients are averaged over ranks before clipping (`marl_grpo.run.distributed`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch

from marl_grpo.losses import policy_loss
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


def _normalize(adv: torch.Tensor) -> torch.Tensor:
    """Standardise with the minibatch's mean and (unbiased) std, over every rank's minibatch."""
    count, mean, var = distributed.moments(adv)
    unbiased = var * count / (count - 1).clamp(min=1)
    return (adv - mean.to(adv.dtype)) / (unbiased.sqrt().to(adv.dtype) + 1e-8)


def _masked_mean(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    if mask is None:
        return x.mean()
    return (x * mask).sum() / mask.sum().clamp(min=1)


def policy_update(batch: UpdateBatch, optimizer: torch.optim.Optimizer, parameters: list[torch.nn.Parameter],
                  cfg: RunConfig, generator: torch.Generator | None = None) -> dict[str, float]:
    """`cfg.update_epochs` passes of `cfg.num_minibatches` optimiser steps over `batch`.

    Returns the mean of every stat over the steps, under its TensorBoard tag (`LOSS_TAGS`).
    `generator` draws the minibatch order (None: torch's global stream, which the run loop saves).
    """
    device = batch.advantages.device
    mb_size = max(1, batch.num_units // cfg.num_minibatches)
    totals: dict[str, torch.Tensor] = {}
    count = 0
    for _ in range(cfg.update_epochs):
        order = torch.randperm(batch.num_units, generator=generator,
                               device=generator.device if generator is not None else device).to(device)
        for start in range(0, batch.num_units, mb_size):
            units = order[start:start + mb_size]
            rows = units if batch.unit_rows is None else batch.unit_rows(units)
            logp, entropy = batch.log_probs(rows)
            adv = batch.advantages[rows]
            if batch.normalize_advantages:
                adv = _normalize(adv)
            mask = None if batch.mask is None else batch.mask[rows]
            loss, stats = policy_loss(
                logp, logp.detach() if batch.old_logp is None else batch.old_logp[rows], adv, mask,
                clip_eps=cfg.clip_eps, clip_eps_high=cfg.clip_eps_high, ratio_level=cfg.ratio_level,
                loss_type=cfg.loss_type, max_len=batch.max_len, delta=cfg.delta,
                off_policy_mask_threshold=cfg.off_policy_mask_threshold,
                ref_logp=None if batch.ref_logp is None else batch.ref_logp[rows], kl_coef=cfg.kl_coef,
                kl_estimator="k3", use_bias_correction_kl=cfg.use_bias_correction_kl,
                sapo_temperature_pos=cfg.sapo_temperature_pos, sapo_temperature_neg=cfg.sapo_temperature_neg,
                vespo_k_pos=cfg.vespo_k_pos, vespo_lambda_pos=cfg.vespo_lambda_pos, vespo_k_neg=cfg.vespo_k_neg,
                vespo_lambda_neg=cfg.vespo_lambda_neg,
            )
            entropy_mean = _masked_mean(entropy, mask)
            total = loss - cfg.ent_coef * entropy_mean if cfg.ent_coef else loss
            if batch.aux_loss is not None:
                aux, aux_stats = batch.aux_loss(rows)
                total = total + aux
                stats = {**stats, **aux_stats}
            optimizer.zero_grad(set_to_none=True)
            total.backward()
            distributed.average_gradients(parameters)  # under torchrun: the mean over ranks
            grad_norm = torch.nn.utils.clip_grad_norm_(parameters, cfg.max_grad_norm)
            optimizer.step()
            stats = {**stats, "entropy": entropy_mean.detach(), "grad_norm": grad_norm, "loss": total.detach()}
            for key, value in stats.items():  # summed on the device: one sync at the end
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
