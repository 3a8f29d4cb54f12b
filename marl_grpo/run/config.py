"""The config fields every run shares, soccer and LLM alike, with one name and one docstring each.

`RunConfig` holds three sections: the run (name, folder, seed, device, resume), its budget and
cadence (time limit, evaluation and checkpoint intervals) and the policy loss and optimiser (the
fields of `marl_grpo.run.update.policy_update` and `marl_grpo.losses.policy_loss`, with TRL's
`GRPOConfig` names where TRL has one). `marl_grpo.rl.TrainConfig` and `marl_grpo.llm.LLMConfig`
add their own sections and may change a default (the LLM's learning rate, say); the meaning of a
shared field is the same in both.

Validation runs in `__post_init__` (so `dataclasses.replace` validates too) and raises a
`ValueError` that names the bad value and what is allowed. A setting the user gave that the run
does not read (a PPO option in a GRPO run, say) is refused too, in one line naming what would read
it: each config lists its fields that only some runs read in its `USED_BY` table. What a preset set
is not checked: `given` (the command line's options) or, in Python, the difference from `preset`
says what the user set. Derived values are typed properties.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import json
import math
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Iterable, Iterator

import tyro

from marl_grpo.advantages import AGGREGATIONS, BASELINES, SCALES
from marl_grpo.losses import KL_ESTIMATORS, LOSS_TYPES, RATIO_LEVELS, PolicyLossOptions

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


def flag(name: str, value: Any) -> str:
    """`name=value` as a command-line option: `--group-mode episode`, `--no-clip-vloss`."""
    option = name.replace("_", "-")
    if isinstance(value, bool):
        return f"--{option}" if value else f"--no-{option}"
    return f"--{option} {value if value != '' else repr(value)}"


@dataclass(frozen=True)
class UsedBy:
    """One row of a config's `USED_BY` table: `fields` do something only when `used(cfg)` holds."""

    fields: tuple[str, ...]
    """the fields only some runs read"""
    used: Callable[[Any], bool]
    """whether the run of a config reads them"""
    setting: str
    """the field whose value decides it (named in the error)"""
    what: str
    """what would read them, for the error"""


_LOSS_FIELDS = tuple(f.name for f in dataclasses.fields(PolicyLossOptions) if f.name != "max_len")
"""the fields of `PolicyLossOptions` that a run config holds under the same names (`max_len` is the batch's)"""


@dataclass
class RunConfig:
    """Fields shared by every training run (see the module docstring)."""

    RESUMABLE: ClassVar[tuple[str, ...]] = ("name", "log_dir", "device", "threads", "resume", "progress",
                                            "max_minutes", "eval_every", "save_every")
    """fields a resumed run may change: where it runs, its budget and cadence, its evaluation (a
    subclass adds its own); every other field is the run's own and stays as saved"""

    USED_BY: ClassVar[tuple[UsedBy, ...]] = (
        UsedBy(("ref_refresh", "use_bias_correction_kl", "kl_estimator"), lambda c: c.kl_coef > 0, "kl_coef",
               "the KL term to a reference policy, --kl-coef > 0"),
        UsedBy(("sapo_temperature_pos", "sapo_temperature_neg"), lambda c: c.loss_type == "sapo", "loss_type",
               "SAPO's soft gate, --loss-type sapo"),
        UsedBy(("vespo_k_pos", "vespo_lambda_pos", "vespo_k_neg", "vespo_lambda_neg"),
               lambda c: c.loss_type == "vespo", "loss_type", "VESPO's weight, --loss-type vespo"),
    )
    """the fields that only some runs read, and what reads them: a given one that this run does not
    read is refused (`check_used`); a subclass adds its rows"""

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
    preset: tyro.conf.Suppress[str] = field(default="", compare=False)
    """the preset this config started from ('' = none: the class defaults); `pick_preset` sets it,
    and `--preset NAME` chooses it on the command line"""
    given: tyro.conf.Suppress[frozenset[str] | None] = field(default=None, repr=False, compare=False)
    """the fields the user set: the command line's options (the parser fills it in); None, for a
    config built in Python, means the fields whose value differs from `preset`'s (or from the class
    defaults). Resume keeps the saved value of a field not given; `USED_BY` refuses a given field
    that the run does not read. Not a setting: `to_dict` leaves it out"""

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
    dual_clip: float | None = None
    """dual clip c > 1 (Ye et al. 2020, "Mastering Complex Control in MOBA Games with Deep RL",
    eq. 5): where the advantage is negative, the clipped surrogate's loss is bounded by -c times the
    advantage, so a huge ratio cannot give a huge update; clipped loss types only; None = off"""
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
    """weight of the KL to a reference policy (DeepSeekMath eq. 3), estimated by `kl_estimator`;
    0 = no reference policy"""
    kl_estimator: str = "k3"
    """single-sample estimator of KL(pi || pi_ref) in the KL term (Schulman, "Approximating KL
    divergence", 2020): k3 (unbiased, >= 0; DeepSeekMath eq. 4 and TRL), k2 (log-ratio squared
    over 2: biased, >= 0) or k1 (the log-ratio: unbiased, can be negative)"""
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
        if self.given is not None and not isinstance(self.given, frozenset):
            self.given = frozenset(self.given)
        if not _DEFERRED.get():
            self.validate()
            if not self.resume:  # a resumed run is checked once it has its saved settings (`resume_config`)
                self.check_used()

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
        check_choice(self, "kl_estimator", KL_ESTIMATORS)
        if self.dual_clip is not None:
            check_number(self, "dual_clip", low=1.0, low_open=True)
        self.loss_options()  # the loss core's own rules: luspo/vespo ratio levels, delta and dual_clip

    def loss_options(self, max_len: int | None = None) -> PolicyLossOptions:
        """The options of `marl_grpo.losses.policy_loss` from this config's fields of the same names,
        checked once here; `max_len` is a batch's Dr. GRPO normaliser (None: its T). Both modes'
        update (`marl_grpo.run.update.policy_update`) builds them once per update."""
        return PolicyLossOptions(max_len=max_len, **{name: getattr(self, name) for name in _LOSS_FIELDS})

    @classmethod
    def presets(cls) -> dict[str, RunConfig]:
        """The named presets of this config class (`preset` names one of them)."""
        return {}

    def user_fields(self) -> frozenset[str]:
        """The fields the user set: `given`, or (a config built in Python) those whose value differs
        from the preset's, or from the class defaults without a preset."""
        if self.given is not None:
            return self.given
        base = self.presets().get(self.preset) if self.preset else None
        changed = set()
        for f in dataclasses.fields(self):
            if f.name in ("preset", "given"):
                continue
            if base is not None:
                default = getattr(base, f.name)
            elif f.default is not dataclasses.MISSING:
                default = f.default
            else:
                default = f.default_factory() if f.default_factory is not dataclasses.MISSING else dataclasses.MISSING
            if getattr(self, f.name) != default:
                changed.add(f.name)
        return frozenset(changed)

    def check_used(self) -> None:
        """Refuse a field the user set (`user_fields`) that this run does not read (`USED_BY`), in one
        error naming it and what would read it. What came from a preset is not checked."""
        given, seen, unused = self.user_fields(), set(), []
        for row in self.USED_BY:
            for name in row.fields:
                if name in given and name not in seen and not row.used(self):
                    seen.add(name)
                    unused.append(f"{flag(name, getattr(self, name))} has no effect with "
                                  f"{flag(row.setting, getattr(self, row.setting))} ({row.what})")
        if unused:
            raise ValueError(f"{'; '.join(unused)}; remove {'it' if len(unused) == 1 else 'them'}")

    def to_dict(self) -> dict[str, Any]:
        """The settings (`given`, which is not one, left out), as JSON-ready values."""
        settings = dataclasses.asdict(self)
        del settings["given"]
        return settings


def resume_config(cfg: RunConfig, saved: dict[str, Any], given: Iterable[str] | None = None) -> RunConfig:
    """The config of a resumed run: the saved one, with the fields of `cfg.RESUMABLE` taken from `cfg`.

    `given` names the fields set on the command line (None: every field, as when a config is built
    in Python). A given field outside `RESUMABLE` whose value differs from the saved one is refused
    with an error naming both values; a field not given keeps the run's saved value.
    """
    given = None if given is None else set(given)
    overrides, conflicts = {}, []
    for f in dataclasses.fields(cfg):
        if f.name not in saved or f.name in cfg.RESUMABLE or f.name in ("preset", "given"):
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
    resumed = dataclasses.replace(cfg, **overrides)
    resumed.check_used()
    return resumed
