"""The red team played inside the env: the `opponent=` option of the soccer envs.

    env = soccer_v0.parallel_env(team_size=2, opponent="team")            # agents: blue_0, blue_1
    vec = SoccerVecEnv(num_envs=256, team_size=2, opponent="random", opponent_strength=0.5)
    gym = vec.as_gymnasium()                                              # num_envs = 256 * 2 blue players

    from marl_grpo.agents import load_policy_opponent                    # a trained checkpoint plays red
    red = load_policy_opponent("runs/2v2/checkpoint", SoccerConfig(team_size=2))
    env = soccer_v0.parallel_env(team_size=2, opponent=red)

`soccer_v0.env` / `parallel_env`, `SoccerVecEnv` and its `as_gymnasium()` view take `opponent` and
`opponent_strength`. With `opponent=None` (the default) both teams are agents, as always. Otherwise
the env plays red itself and only the blue players are agents: PettingZoo's `agents` /
`possible_agents`, the spaces, observations, rewards, terminations, truncations and infos cover blue
only, and `step` takes blue's actions. The match is otherwise the same: the blue rows are bit for
bit those of the same match with red driven from outside by the same opponent, seeded the same way
(tests/test_env_opponent.py). `state()` stays the global state of every player, as VMAS football's
`ai_red_agents` stay in the world.

`opponent` is:

- a scripted bot by name, `"random"`, `"chaser"` or `"team"` (`BOT_NAMES`, `marl_grpo.envs.bots`),
  weakened by `opponent_strength` in [0, 1] (`Bot`'s strength: 1 is its best play);
- or any object with the opponent protocol:
  - `act(red_obs) -> actions`: red_obs float32 tensor [B, n_red, D], red's own (mirrored) rows of
    the observations, on the env's device (B = 1 for the PettingZoo env); actions: integers in
    [0, NUM_ACTIONS) [B, n_red], a tensor or anything `torch.as_tensor` takes;
  - optional `reset(seed: int | None)`, the seeding hook (below);
  - optional `config`: if it is a `SoccerConfig`, its observation layout must be the env's (an
    opponent built for other team sizes is refused when the env is built).
  A scripted `Bot` has all three. `marl_grpo.agents.PolicyOpponent` has `act` and `reset`; instead
  of a `config`, `load_policy_opponent(path, env_config)` checks the checkpoint's team sizes.

A checkpoint path is refused here, with a message saying how to pass one: `marl_grpo.envs` imports
only `marl_grpo.envs` (tests/test_layout.py), and the policy network and its checkpoint files live in
`marl_grpo.agents`, which imports the envs. The scripted bots are part of the env's definition (as
VMAS keeps `ai_red_agents` in its football scenario), so they live here; a checkpoint is loaded by
the caller with `marl_grpo.agents.load_policy_opponent(path, env_config)` and given as an object.

Seeding: every seeded reset seeds the opponent too, by calling `opponent.reset(seed=s)` with the
reset's own seed `s`, as `marl-grpo eval` seeds its bot with the seed of its matches. An unseeded
reset that starts the env's streams from fresh entropy passes the seed it drew, so the opponent's
draws are always fixed by the env's seed. A PettingZoo reset that continues the current stream
(`reset()` after a seeded one) calls `opponent.reset(seed=None)`: the bot forgets its previous
actions and keeps its stream. `SoccerVecEnv`'s automatic resets and `reset_where` call nothing: the
opponent acts on the whole batch at once and keeps its stream and memory.
"""

from __future__ import annotations

import os
from typing import Any

import torch

from .bots import BOT_NAMES, make_bot
from .config import NUM_ACTIONS, SoccerConfig

__all__ = ["BOT_NAMES", "build_opponent", "red_actions", "reset_opponent"]

_PROTOCOL = "an object with act(red_obs [B, n_red, D]) -> int64 [B, n_red]"


def _invalid(opponent: Any) -> ValueError:
    return ValueError(
        f"opponent={opponent!r} is invalid: expected None (both teams are agents), one of {list(BOT_NAMES)} (a "
        f"scripted bot, weakened by opponent_strength) or {_PROTOCOL}; a checkpoint is given as an object: "
        "opponent=marl_grpo.agents.load_policy_opponent(path, env_config) (marl_grpo.envs cannot load a policy)")


def build_opponent(opponent: Any, strength: Any, config: SoccerConfig, device: Any = "cpu") -> Any | None:
    """The object that plays red for `opponent` (None: both teams are agents), or one `ValueError`
    naming the bad value and what is allowed. A bot by name is built on `device`, seeded at the
    env's first reset."""
    if isinstance(strength, bool) or not isinstance(strength, (int, float)) or not 0.0 <= strength <= 1.0:
        raise ValueError(f"opponent_strength={strength!r} is invalid: expected a number in [0, 1]")
    if isinstance(opponent, (str, os.PathLike)):
        if opponent in BOT_NAMES:
            return make_bot(opponent, config, strength=float(strength), seed=0, device=device)
        raise _invalid(opponent)
    if strength != 1.0:
        raise ValueError(f"opponent_strength={strength!r} is invalid with opponent={opponent!r}: it weakens a "
                         f"scripted bot given by name, one of {list(BOT_NAMES)}")
    if opponent is None:
        return None
    if not callable(getattr(opponent, "act", None)):
        raise _invalid(opponent)
    other = getattr(opponent, "config", None)
    if isinstance(other, SoccerConfig) and other.observation_features() != config.observation_features():
        raise ValueError(
            f"opponent={opponent!r} is invalid: it was built for {other.n_blue}v{other.n_red} matches (observations "
            f"{other.obs_dim} wide), but this env plays {config.n_blue}v{config.n_red} ({config.obs_dim} wide); "
            "build it with the env's config")
    return opponent


def reset_opponent(opponent: Any, seed: int | None) -> None:
    """Call the opponent's seeding hook `reset(seed=...)`, if it has one (see the module docstring)."""
    hook = getattr(opponent, "reset", None)
    if callable(hook):
        hook(seed=seed)


def red_actions(opponent: Any, red_obs: torch.Tensor, check: bool = True) -> torch.Tensor:
    """The opponent's actions for `red_obs` [B, n_red, D]: int64 [B, n_red] on `red_obs`'s device.
    A wrong shape is refused always; with `check`, so are non-integers and actions out of range."""
    actions = torch.as_tensor(opponent.act(red_obs), device=red_obs.device)
    want = tuple(red_obs.shape[:-1])
    if tuple(actions.shape) != want:
        raise ValueError(f"opponent {opponent!r} returned actions of shape {tuple(actions.shape)} for red "
                         f"observations {tuple(red_obs.shape)}: expected {want}, one per red player")
    if check:
        if actions.dtype == torch.bool or actions.is_floating_point() or actions.is_complex():
            raise ValueError(f"opponent {opponent!r} returned actions of dtype {actions.dtype}: expected integers "
                             f"in [0, {NUM_ACTIONS - 1}]")
        if actions.numel() and (int(actions.min()) < 0 or int(actions.max()) >= NUM_ACTIONS):
            raise ValueError(f"opponent {opponent!r} returned an action outside [0, {NUM_ACTIONS - 1}]: "
                             f"{actions.tolist()}")
    return actions.long()
