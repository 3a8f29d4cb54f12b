"""`marl_grpo.evaluate`: score any policy (blue) against one of our bots (red) over seeded matches.

    import marl_grpo
    score = marl_grpo.evaluate(lambda obs: my_policy(obs), team_size=2, opponent="team", matches=200)
    print(score)                        # wins / draws / losses and goal difference, with 95% intervals
    score.win_rate, score.win_rate_interval, score.as_dict()

`policy` is one of:

- a callable from the blue team's observations `[B, N, D]` to its actions `[B, N]`: a numpy
  array (`obs_type="numpy"`, the default: float32, on the CPU) or a torch tensor
  (`obs_type="torch"`, on `device`) in; integer actions in `[0, 10)` out, as a numpy array, a
  torch tensor or nested lists. B is `matches` (every match in one call per step), N the blue
  players, D the observation width (`SoccerConfig.obs_dim`); each row is a player's own
  observation, in its own frame, as the PettingZoo env gives it;
- a `marl_grpo.agents.SoccerPolicy` (sampling with its own seeded generator, or
  `deterministic=True` for the argmax);
- a checkpoint folder of `marl-grpo train` (loaded with `marl_grpo.agents.checkpoint`), played on
  the matches it trained on (its team sizes and `max_cycles`) unless `team_size` / `max_cycles`
  say otherwise: the same figures as `marl-grpo eval PATH --seed S --matches M`.

Match i uses env seed `seed + i` (`Score.seeds`); the bot is seeded with `seed`. One loop plays
every evaluation (`marl_grpo.rl.evaluate.final_scores`, which `play_matches` of the trainer and of
`marl-grpo eval` uses too).

Intervals (`confidence`, 0.95 by default): Wilson score intervals for the win, draw and loss rates,
and percentile bootstrap intervals over matches (2000 resamples, seeded with `seed`) for the mean
goal difference and the mean goals for and against (`marl_grpo.run.intervals`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from typing import Any, Callable

import numpy as np
import torch

from marl_grpo.agents import BOT_NAMES, SoccerPolicy
from marl_grpo.agents.checkpoint import load_policy, match_kwargs
from marl_grpo.envs import NUM_ACTIONS, SoccerConfig
from marl_grpo.envs.backend import resolve_device
from marl_grpo.rl.evaluate import final_scores, policy_player
from marl_grpo.rl.opponent import read_soccer_checkpoint
from marl_grpo.run.intervals import bootstrap_mean_interval, wilson_interval, z_value

OBS_TYPES = ("numpy", "torch")
"""what a policy callable is given: a numpy array or a torch tensor"""
ENV_ONLY = ("num_envs", "device", "render_mode")
"""SoccerVecEnv arguments that `evaluate` sets itself (not env kwargs)"""


@dataclass(frozen=True)
class Score:
    """The result of `evaluate`: blue's wins, draws and losses against the bot, the goals, and their
    intervals at `confidence` (Wilson for the rates, percentile bootstrap over matches for the means).
    Match i of `matches` used env seed `seed + i`."""

    matches: int
    """matches played"""
    wins: int
    """matches blue won"""
    draws: int
    """matches drawn"""
    losses: int
    """matches blue lost"""
    win_rate: float
    """wins / matches"""
    win_rate_interval: tuple[float, float]
    """Wilson score interval of the win rate"""
    draw_rate: float
    """draws / matches"""
    draw_rate_interval: tuple[float, float]
    """Wilson score interval of the draw rate"""
    loss_rate: float
    """losses / matches"""
    loss_rate_interval: tuple[float, float]
    """Wilson score interval of the loss rate"""
    goal_diff: float
    """mean goals for minus goals against per match"""
    goal_diff_interval: tuple[float, float]
    """percentile bootstrap interval of the mean goal difference"""
    goals_for: float
    """mean goals blue scored per match"""
    goals_for_interval: tuple[float, float]
    """percentile bootstrap interval of the mean goals for"""
    goals_against: float
    """mean goals blue conceded per match"""
    goals_against_interval: tuple[float, float]
    """percentile bootstrap interval of the mean goals against"""
    confidence: float
    """coverage of every interval"""
    seed: int
    """first env seed: match i used `seed + i` (`seeds`)"""
    opponent: str
    """the bot red played"""
    opponent_strength: float
    """the bot's strength in [0, 1]"""
    blue_size: int
    """blue players per match"""
    red_size: int
    """red players per match"""
    max_cycles: int
    """steps per match"""
    match_scores: tuple[tuple[int, int], ...] = field(repr=False)
    """the final score (blue, red) of match i, in seed order"""

    @property
    def seeds(self) -> range:
        """The env seed of every match, in order."""
        return range(self.seed, self.seed + self.matches)

    @classmethod
    def from_match_scores(cls, match_scores: Any, confidence: float = 0.95, seed: int = 0, **setting: Any) -> "Score":
        """The figures of `match_scores` `[matches, 2]` (blue, red goals); `setting`: the fields
        that describe the matches (opponent, opponent_strength, blue_size, red_size, max_cycles).
        The bootstraps draw from `seed`."""
        scores = np.asarray(match_scores, dtype=np.int64).reshape(-1, 2)
        matches, z = len(scores), z_value(confidence)
        diff = scores[:, 0] - scores[:, 1]
        counts = {"win": int((diff > 0).sum()), "draw": int((diff == 0).sum()), "loss": int((diff < 0).sum())}
        rates = {f"{k}_rate": v / matches for k, v in counts.items()}
        rates |= {f"{k}_rate_interval": wilson_interval(v, matches, z) for k, v in counts.items()}
        means = {}
        for name, values in (("goal_diff", diff), ("goals_for", scores[:, 0]), ("goals_against", scores[:, 1])):
            means[name] = float(values.mean())
            means[f"{name}_interval"] = bootstrap_mean_interval(values, seed, level=confidence)
        return cls(matches=matches, wins=counts["win"], draws=counts["draw"], losses=counts["loss"], **rates,
                   **means, confidence=confidence, seed=seed, match_scores=tuple(map(tuple, scores.tolist())),
                   **setting)

    def as_dict(self) -> dict[str, Any]:
        """Every figure, JSON-ready (intervals as `[low, high]`), without the per-match scores."""
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "match_scores"}
        out = {k: (list(v) if isinstance(v, tuple) else v) for k, v in out.items()}
        out["seeds"] = [self.seed, self.seed + self.matches - 1]
        return out

    def __str__(self) -> str:
        def rate(name: str) -> str:
            low, high = getattr(self, f"{name}_rate_interval")
            return f"{name} {getattr(self, f'{name}_rate'):.1%} [{low:.1%}, {high:.1%}]"

        def mean(name: str, label: str) -> str:
            low, high = getattr(self, f"{name}_interval")
            return f"{label} {getattr(self, name):+.2f} [{low:+.2f}, {high:+.2f}]"

        return (f"{self.blue_size}v{self.red_size} vs {self.opponent} bot (strength {self.opponent_strength:g}), "
                f"{self.matches} matches of {self.max_cycles} steps, seeds {self.seed}..{self.seed + self.matches - 1}"
                f"\n  {self.wins}-{self.draws}-{self.losses} (W-D-L)  {rate('win')}  {rate('draw')}  {rate('loss')}"
                f"\n  {mean('goal_diff', 'goal difference')} per match  ({self.goals_for:.2f} for, "
                f"{self.goals_against:.2f} against)"
                f"\n  ({self.confidence:.0%} intervals: Wilson for rates, bootstrap over matches for goals)")


def _integer(name: str, value: Any, low: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or (low is not None and value < low):
        expected = "an integer" if low is None else f"an integer >= {low}"
        raise ValueError(f"{name}={value!r} is invalid: expected {expected}")
    return int(value)


def as_actions(actions: Any, shape: tuple[int, int], device: torch.device) -> torch.Tensor:
    """A policy callable's answer as int64 `[B, N]` on `device`, or a `ValueError` naming what is
    wrong: the shape, a non-integer type or an action outside `[0, NUM_ACTIONS)`."""
    if isinstance(actions, torch.Tensor):
        if actions.dtype.is_floating_point or actions.dtype.is_complex or actions.dtype == torch.bool:
            raise ValueError(f"the policy returned actions of dtype {actions.dtype}: expected integers in "
                             f"[0, {NUM_ACTIONS})")
        tensor = actions.detach()
    else:
        try:
            array = np.asarray(actions)
        except ValueError as err:  # ragged nested lists
            raise ValueError(f"the policy returned {type(actions).__name__} that is no [B, N] array ({err}): "
                             f"expected integer actions of shape {shape}") from None
        if array.dtype.kind not in "iu":
            raise ValueError(f"the policy returned actions of dtype {array.dtype}: expected integers in "
                             f"[0, {NUM_ACTIONS})")
        tensor = torch.from_numpy(array.astype(np.int64, copy=False))
    if tuple(tensor.shape) != shape:
        raise ValueError(f"the policy returned actions of shape {tuple(tensor.shape)}: expected [B, N] = {shape} "
                         "(one action for each blue player of each match)")
    tensor = tensor.to(device=device, dtype=torch.long)
    low, high = int(tensor.min()), int(tensor.max())
    if low < 0 or high >= NUM_ACTIONS:
        raise ValueError(f"the policy returned action {low if low < 0 else high}: expected integers in "
                         f"[0, {NUM_ACTIONS}) (marl_grpo.envs.ACTION_NAMES)")
    return tensor


def callable_player(policy: Callable[[Any], Any], obs_type: str, device: torch.device) \
        -> Callable[[torch.Tensor], torch.Tensor]:
    """A user's callable as a `blue` of `final_scores`: it gets a numpy copy of the observations
    (`obs_type="numpy"`) or the tensor itself (`"torch"`), and its answer is checked (`as_actions`)."""
    def blue(obs: torch.Tensor) -> torch.Tensor:
        given = obs.cpu().numpy().copy() if obs_type == "numpy" else obs
        return as_actions(policy(given), tuple(obs.shape[:2]), device)
    return blue


def _checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """The metadata of the soccer checkpoint `path`, or one `ValueError` naming it."""
    return read_soccer_checkpoint(path, "policy", "a callable, a SoccerPolicy or a checkpoint folder of marl-grpo "
                                              "train (policy.safetensors + config.json)")


def _match_kwargs(base: dict[str, Any], team_size: int | None, max_cycles: int | None,
                  env_kwargs: dict[str, Any] | None) -> dict[str, Any]:
    """The env kwargs: `base` (a checkpoint's matches, or 2v2), then `team_size`, `max_cycles` and
    `env_kwargs` on top; a key given twice, or an argument that evaluate sets itself, is refused."""
    if env_kwargs is None:
        env_kwargs = {}
    if not isinstance(env_kwargs, dict):
        raise ValueError(f"env_kwargs={env_kwargs!r} is invalid: expected a dict of SoccerConfig fields or None")
    own = [k for k in ENV_ONLY if k in env_kwargs]
    if own:
        raise ValueError(f"env_kwargs holds {own}: evaluate sets {', '.join(ENV_ONLY)} itself (num_envs is "
                         "`matches`): drop them")
    twice = [k for k, v in (("team_size", team_size), ("max_cycles", max_cycles)) if v is not None and k in env_kwargs]
    if twice:
        raise ValueError(f"env_kwargs holds {twice}, also given as arguments of evaluate: give each once")
    kwargs = dict(base)
    if team_size is not None:
        kwargs.update(team_size=_integer("team_size", team_size, 1), blue_size=None, red_size=None)
    if max_cycles is not None:
        kwargs["max_cycles"] = _integer("max_cycles", max_cycles, 1)
    return kwargs | env_kwargs


def evaluate(policy: Callable[[Any], Any] | SoccerPolicy | str | os.PathLike, team_size: int | None = None,
             opponent: str = "team", matches: int = 200, seed: int = 0, *, opponent_strength: float = 1.0,
             deterministic: bool = False, obs_type: str | None = None, device: Any = "auto",
             max_cycles: int | None = None, env_kwargs: dict[str, Any] | None = None,
             confidence: float = 0.95) -> Score:
    """Score `policy` as the blue team against the `opponent` bot over `matches` seeded matches,
    all stepped as one batch (module docstring).

    Args:
        policy: a callable obs `[B, N, D]` -> actions `[B, N]`, a `SoccerPolicy`, or a checkpoint folder.
        team_size: players per team (default 2; a checkpoint: the sizes it trained on).
        opponent: the bot red plays: "random", "chaser" or "team".
        matches: matches played at once (B); match i uses env seed `seed + i`.
        seed: the first env seed; it also seeds the bot, a SoccerPolicy's sampling and the bootstraps.
        opponent_strength: the bot's strength in [0, 1] (1 is its best play).
        deterministic: a SoccerPolicy or checkpoint plays its most likely action instead of sampling.
        obs_type: what a callable is given, "numpy" (default) or "torch".
        device: where the matches run: "auto" (a SoccerPolicy's own device; else CUDA when present), "cpu", "cuda".
        max_cycles: steps per match (default: the env's 300; a checkpoint: its own).
        env_kwargs: other `SoccerConfig` fields (e.g. `{"blue_size": 2, "red_size": 3}`).
        confidence: the coverage of the intervals.

    Returns a `Score`. Raises `ValueError` naming a bad argument, or a policy answer of the wrong
    shape, type or range.
    """
    matches, seed = _integer("matches", matches, 1), _integer("seed", seed, 0)
    if opponent not in BOT_NAMES:
        raise ValueError(f"opponent={opponent!r} is invalid: expected one of {', '.join(BOT_NAMES)}")
    if isinstance(opponent_strength, bool) or not isinstance(opponent_strength, (int, float)) \
            or not 0.0 <= opponent_strength <= 1.0:
        raise ValueError(f"opponent_strength={opponent_strength!r} is invalid: expected a number in [0, 1]")
    z_value(confidence)
    if obs_type not in (None, *OBS_TYPES):
        raise ValueError(f"obs_type={obs_type!r} is invalid: expected one of {', '.join(OBS_TYPES)}")
    is_path = isinstance(policy, (str, os.PathLike))
    if not is_path and not callable(policy):
        raise ValueError(f"policy={policy!r} is invalid: expected a callable obs [B, N, D] -> actions [B, N], a "
                         "SoccerPolicy or a checkpoint folder")
    if isinstance(policy, SoccerPolicy) or is_path:
        if obs_type is not None:
            raise ValueError(f"obs_type={obs_type!r} is for a policy callable; a SoccerPolicy or a checkpoint reads "
                             "the env's tensors itself: drop it")
    elif deterministic:
        raise ValueError("deterministic=True is for a SoccerPolicy or a checkpoint; a callable picks its own actions "
                         "(take the argmax inside it): drop it")

    meta = _checkpoint(policy) if is_path else None
    base = match_kwargs(meta) if meta is not None else {"team_size": 2}
    kwargs = _match_kwargs(base, team_size, max_cycles, env_kwargs)
    try:
        config = SoccerConfig.from_kwargs(**kwargs)
    except TypeError as err:
        raise ValueError(f"env_kwargs: {err}") from None

    if isinstance(policy, SoccerPolicy):
        if device != "auto" and resolve_device(device) != policy.device:
            raise ValueError(f"device={device!r} is not the policy's device ({policy.device}): pass device='auto' "
                             "(the policy's) or move the policy")
        device = policy.device
    else:
        device = resolve_device(device)
    if is_path:
        policy, _ = load_policy(policy, device=device, env_config=config)
    if isinstance(policy, SoccerPolicy):
        blue = policy_player(policy, seed, deterministic)
    else:
        blue = callable_player(policy, obs_type or "numpy", device)
    scores = final_scores(blue, kwargs, opponent, opponent_strength, matches, seed, device)
    return Score.from_match_scores(scores.cpu().numpy(), confidence, seed, opponent=opponent,
                                   opponent_strength=float(opponent_strength), blue_size=config.n_blue,
                                   red_size=config.n_red, max_cycles=config.max_cycles)


__all__ = ["OBS_TYPES", "Score", "as_actions", "callable_player", "evaluate"]
