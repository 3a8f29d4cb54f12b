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

from marl_grpo.advantages import SCALES
from marl_grpo.losses import LOSS_TYPES, RATIO_LEVELS

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
    """decay the learning rate linearly towards zero over the iteration budget (a run stopped
    earlier by `max_minutes` ends part-way down the ramp)"""
    update_epochs: int = 2
    """passes over each batch (TRL's num_iterations, GRPO's mu); old log-probs are those of the rollout"""
    num_minibatches: int = 8
    """minibatches per pass, split over sequences (soccer: players' segments; LLM: whole prompt groups)"""
    max_grad_norm: float = 0.5
    """gradient clipping norm"""
    loss_type: str = "grpo"
    """aggregation of the per-token losses, with TRL's semantics: grpo, bnpo, dr_grpo, dapo"""
    ratio_level: str = "token"
    """importance ratio per token (PPO/GRPO) or per sequence (GSPO, Zheng et al. 2025)"""
    clip_eps: float = 0.2
    """lower clip of the ratio (PPO, Schulman et al. 2017)"""
    clip_eps_high: float | None = None
    """upper clip if different (DAPO's clip-higher, Yu et al. 2025); None = clip_eps"""
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

    def __post_init__(self) -> None:
        if not _DEFERRED.get():
            self.validate()

    def validate(self) -> None:
        """Raise a `ValueError` naming the bad value and the allowed ones. Subclasses extend it."""
        check_choice(self, "loss_type", LOSS_TYPES)
        check_choice(self, "ratio_level", RATIO_LEVELS)
        check_choice(self, "scale", SCALES)
        for name in ("threads", "update_epochs", "num_minibatches"):
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
