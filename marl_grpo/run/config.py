"""The config fields every run shares, soccer and LLM alike, with one name and one docstring each.

`RunConfig` holds three sections: the run (name, folder, seed, device, resume), its budget and
cadence (time limit, evaluation and checkpoint intervals) and the policy loss and optimiser (the
fields of `marl_grpo.run.update.policy_update` and `marl_grpo.losses.policy_loss`, with TRL's
`GRPOConfig` names where TRL has one). `marl_grpo.rl.TrainConfig` and `marl_grpo.llm.LLMConfig`
add their own sections and may change a default (the LLM's learning rate, say); the meaning of a
shared field is the same in both.

Validation runs in `__post_init__` (so `dataclasses.replace` validates too) and raises a
`ValueError` that names the bad value and what is allowed. Derived values are typed properties.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import json
import math
from dataclasses import dataclass
from typing import Any, ClassVar, Iterable, Iterator

from marl_grpo.advantages import AGGREGATIONS, BASELINES, SCALES
from marl_grpo.losses import LOSS_TYPES, RATIO_LEVELS, check_loss_options

_DEFERRED = contextvars.ContextVar("marl_grpo_deferred_validation", default=False)


@contextlib.contextmanager
def deferred_validation() -> Iterator[None]:
    """Build configs without validating them (the CLI parser does, then validates once itself, so
    that the error reaches the user as `marl-grpo <command>: <message>`)."""
    token = _DEFERRED.set(True)
    try:
        yield
    finally:
        _DEFERRED.reset(token)


def check_choice(cfg: Any, name: str, allowed: Iterable[str]) -> None:
    allowed = tuple(allowed)
    if getattr(cfg, name) not in allowed:
        raise ValueError(f"{name}={getattr(cfg, name)!r} is invalid: expected one of {allowed}")


def check_int(cfg: Any, name: str, low: int = 1, high: int | None = None) -> None:
    value = getattr(cfg, name)
    if isinstance(value, bool) or not isinstance(value, int) or value < low or (high is not None and value > high):
        expected = f"an int >= {low}" if high is None else f"an int in [{low}, {high}]"
        raise ValueError(f"{name}={value!r} is invalid: expected {expected}")


def check_number(cfg: Any, name: str, low: float = 0.0, high: float = math.inf, low_open: bool = False) -> None:
    value = getattr(cfg, name)
    ok = isinstance(value, (int, float)) and math.isfinite(value) and value <= high and (
        value > low if low_open else value >= low)
    if not ok:
        bounds = f"{'>' if low_open else '>='} {low}" + ("" if high == math.inf else f" and <= {high}")
        raise ValueError(f"{name}={value!r} is invalid: expected a finite number {bounds}")


@dataclass
class RunConfig:
    """Fields shared by every training run (see the module docstring)."""

    RESUMABLE: ClassVar[tuple[str, ...]] = ("name", "log_dir", "device", "threads", "resume", "progress",
                                            "max_minutes", "eval_every", "save_every")
    """fields a resumed run may change: where it runs, its budget and cadence, its evaluation (a
    subclass adds its own); every other field is the run's own and stays as saved"""

    # ------------------------------------------------------------------ run
    name: str = "run"
    """run name: logs and checkpoints go to `<log_dir>/<name>/`"""
    log_dir: str = "runs"
    """parent folder of run folders"""
    seed: int = 1
    """seed of the env, the model initialisation and the sampling"""
    device: str = "auto"
    """torch device: auto (CUDA when present), cpu or cuda"""
    threads: int = 2
    """torch CPU threads"""
    resume: bool = False
    """continue from `<log_dir>/<name>/checkpoint` instead of starting afresh"""
    progress: bool = True
    """show a tqdm progress bar"""

    # ------------------------------------------------------------------ budget and cadence
    max_minutes: float = 0.0
    """stop after this much training time (evaluation included), 0 = no limit; the run then ends as
    if its budget were spent (final evaluation and checkpoint)"""
    eval_every: int = 20
    """iterations between evaluations (0 = only at the end)"""
    save_every: int = 20
    """iterations between checkpoints (a checkpoint is also written at the end)"""

    # ------------------------------------------------------------------ policy loss and optimiser
    learning_rate: float = 1e-3
    """Adam learning rate"""
    anneal_lr: bool = False
    """decay the learning rate linearly towards zero over the budget: the iterations, or the
    minutes of `max_minutes` when that share is further spent (a time-bound run then reaches zero
    as its time ends; its learning rate follows the clock, so it is not bit-reproducible)"""
    update_epochs: int = 2
    """passes over each batch (TRL's num_iterations, GRPO's mu); old log-probs are those of the rollout"""
    num_minibatches: int = 8
    """minibatches per pass, split over sequences (soccer: players' segments; LLM: whole prompt groups)"""
    gradient_accumulation_steps: int = 1
    """micro-batches per minibatch: each optimiser step sums the gradients of this many backward
    passes over parts of its minibatch (same gradient as one pass, less activation memory)"""
    max_grad_norm: float = 0.5
    """gradient clipping norm"""
    loss_type: str = "grpo"
    """policy loss, with TRL 1.16's `GRPOConfig.loss_type` semantics (`marl_grpo.losses.policy_loss`):
    the clipped surrogate aggregated as grpo, bnpo, dr_grpo, dapo or luspo (sequence ratios only,
    LUSPO); cispo (MiniMax-M1: clipped detached weight); sapo (soft gate, "Soft Adaptive Policy Optimization"); vespo
    (gamma weight of the sequence ratio; token ratios only)"""
    ratio_level: str = "token"
    """importance ratio per token (PPO/GRPO) or per sequence (GSPO, Zheng et al. 2025); TRL's
    importance_sampling_level"""
    clip_eps: float = 0.2
    """lower clip of the ratio (PPO, Schulman et al. 2017); TRL's epsilon"""
    clip_eps_high: float | None = None
    """upper clip if different (DAPO's clip-higher, Yu et al. 2025); None = clip_eps; TRL's
    epsilon_high. With cispo it caps the importance weight itself (ScaleRL's eps_max, 5.0
    recommended), and None caps it at clip_eps as in TRL"""
    delta: float | None = None
    """two-sided clipping (INTELLECT-2, TRL's delta): the unclipped branch uses min(ratio, delta),
    > 1 (above 1 + clip_eps_high recommended); clipped loss types only; None = off"""
    off_policy_mask_threshold: float | None = None
    """drop the policy loss of a sequence whose advantage is negative and whose mean
    log(pi_old / pi) per token exceeds this (DeepSeek-V3.2 eq. 9; TRL suggests 0.5); None = off"""
    use_bias_correction_kl: bool = False
    """multiply the KL term by the importance ratio (DeepSeek-V3.2's unbiased KL estimate). TRL's
    default is True; ours is False, which keeps the loss of existing runs"""
    sapo_temperature_pos: float = 1.0
    """SAPO's gate temperature where the advantage is positive"""
    sapo_temperature_neg: float = 1.05
    """SAPO's gate temperature where the advantage is zero or negative"""
    vespo_k_pos: float = 2.0
    """VESPO's power k for non-negative advantages: how hard a low sequence ratio is down-weighted"""
    vespo_lambda_pos: float = 3.0
    """VESPO's decay lambda for non-negative advantages: how hard a high sequence ratio is down-weighted"""
    vespo_k_neg: float = 3.0
    """VESPO's power k for negative advantages"""
    vespo_lambda_neg: float = 2.0
    """VESPO's decay lambda for negative advantages"""
    ent_coef: float = 0.01
    """weight of the entropy bonus (added outside `policy_loss`)"""
    kl_coef: float = 0.0
    """weight of the k3 KL to a reference policy (DeepSeekMath eq. 4); 0 = no reference policy"""
    ref_refresh: int = 20
    """iterations between copies of the policy into the reference (iterative GRPO, DeepSeekMath
    sec. 4.2); 0 = the reference stays the initial policy"""

    # ------------------------------------------------------------------ groups
    group_size: int = 8
    """G: members of a GRPO group (soccer: copies of a state or matches from one kickoff; LLM:
    completions per prompt)"""
    scale: str = "group"
    """advantage scaling: group std (GRPO), batch std, or none (Dr. GRPO, Liu et al. 2025)"""
    advantage_baseline: str = "mean"
    """the group baseline: mean (GRPO) or loo, the mean of the other members (RLOO, Ahmadian et
    al. 2024), which is the mean baseline times n / (n - 1) in a group of n"""
    reward_aggregation: str = "sum_then_normalize"
    """how reward components combine (TRL's multi_objective_aggregation): sum_then_normalize, or
    normalize_then_sum (GDPO: each component against its group, then the sum over its batch std)"""

    def __post_init__(self) -> None:
        if not _DEFERRED.get():
            self.validate()

    def validate(self) -> None:
        """Raise a `ValueError` naming the bad value and the allowed ones. Subclasses extend it."""
        check_choice(self, "loss_type", LOSS_TYPES)
        check_choice(self, "ratio_level", RATIO_LEVELS)
        check_choice(self, "scale", SCALES)
        check_choice(self, "advantage_baseline", BASELINES)
        check_choice(self, "reward_aggregation", AGGREGATIONS)
        for name in ("threads", "update_epochs", "num_minibatches", "gradient_accumulation_steps"):
            check_int(self, name)
        for name in ("eval_every", "save_every", "ref_refresh"):
            check_int(self, name, low=0)
        for name in ("max_minutes", "learning_rate", "ent_coef", "kl_coef"):
            check_number(self, name)
        check_number(self, "max_grad_norm", low_open=True)
        if not (isinstance(self.clip_eps, (int, float)) and 0 < self.clip_eps < 1):
            raise ValueError(f"clip_eps={self.clip_eps!r} is invalid: expected a number > 0 and < 1 (the ratio "
                             "is clipped to [1 - clip_eps, 1 + clip_eps_high])")
        if self.clip_eps_high is not None:
            check_number(self, "clip_eps_high", low_open=True)
        if self.delta is not None:
            check_number(self, "delta", low=1.0, low_open=True)
        if self.off_policy_mask_threshold is not None:
            check_number(self, "off_policy_mask_threshold")
        for name in ("sapo_temperature_pos", "sapo_temperature_neg", "vespo_lambda_pos", "vespo_lambda_neg"):
            check_number(self, name, low_open=True)
        for name in ("vespo_k_pos", "vespo_k_neg"):
            check_number(self, name)
        if not isinstance(self.use_bias_correction_kl, bool):
            raise ValueError(f"use_bias_correction_kl={self.use_bias_correction_kl!r} is invalid: "
                             "expected True or False")
        check_loss_options(self.loss_type, self.ratio_level, delta=self.delta)  # luspo/vespo levels, delta

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def resume_config(cfg: RunConfig, saved: dict[str, Any], given: Iterable[str] | None = None) -> RunConfig:
    """The config of a resumed run: the saved one, with the fields of `cfg.RESUMABLE` taken from `cfg`.

    `given` names the fields set on the command line (None: every field, as when a config is built
    in Python). A given field outside `RESUMABLE` whose value differs from the saved one is refused
    with an error naming both values; a field not given keeps the run's saved value.
    """
    given = None if given is None else set(given)
    overrides, conflicts = {}, []
    for f in dataclasses.fields(cfg):
        if f.name not in saved or f.name in cfg.RESUMABLE:
            continue
        mine, theirs = getattr(cfg, f.name), saved[f.name]
        if json.loads(json.dumps(mine)) == theirs:
            continue
        if given is None or f.name in given:
            conflicts.append(f"{f.name}={mine!r} (the run has {theirs!r})")
        else:
            overrides[f.name] = tuple(theirs) if isinstance(theirs, list) else theirs
    if conflicts:
        raise ValueError(f"--resume with other settings than the run's: {', '.join(conflicts)}. A resumed run "
                         f"may change only {', '.join(cfg.RESUMABLE)}; start a new run (another --name) to "
                         "change the others")
    return dataclasses.replace(cfg, **overrides)
