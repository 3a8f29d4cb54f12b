"""`TeamVecEnv`: what marl-grpo's trainer needs of an environment, and the spec of `--env`.

    marl-grpo train --env vmas:navigation --env-kwargs n_agents=3      # VMAS's batched torch envs
    marl-grpo train --env pettingzoo:mpe2.simple_spread_v3:parallel_env  # any PettingZoo parallel env

An environment the trainer can use is B copies of one multi-agent task stepped as one batch of
torch tensors, its agents grouped into teams. `SoccerVecEnv` is one natively; `VmasTeamEnv`
(`marl_grpo.envs.vmas_env`) and `PettingZooTeamEnv` (`marl_grpo.envs.pettingzoo_env`) adapt the
field's two standard APIs to it.

Shapes: B = `num_envs`, N = `num_agents`, D = `obs_dim`, every agent with the same observation
width and the same `Discrete(num_actions)` actions.

- `reset(seed) -> obs [B, N, D]` (float32, on `device`): reproducible given `seed`, each adapter
  documenting its rule (soccer and PettingZoo: copy b from `seed + b`).
- `step(actions [B, N] int64) -> obs, rewards [B, N], terminated [B], truncated [B], infos`: a copy
  whose episode ends is reset within the same step (`obs` is then its new start) and `infos`
  keeps what ended, valid where `terminated | truncated`: `episode_return` [B, N] (each agent's
  undiscounted return) and `episode_length` [B]. Episodes last at most `max_steps` steps.
- `state() -> [B, state_dim]`: the global state, for PPO's centralized critic.
- `teams`: the team of each agent (0, 1, ...): GRPO's `team` group mode pools teammates; a
  cooperative task has one team.
- `can_branch`: whether `branch(src_idx, group_size)` works: it fills the batch with `group_size`
  copies of each copy in `src_idx` (slots `i*G ... i*G + G - 1` copy `src_idx[i]`, its whole state:
  the `branch` group mode, and the `episode` mode after a seeded reset). Without it the `episode`
  mode uses `reset_blocks(seed, group_size)`: block k (copies `k*G ... k*G + G - 1`) all start
  alike, from a seed derived from `seed` and k, and the `branch` mode is refused.
- `get_state() -> dict[str, Tensor]` and `set_state(dict) -> obs`: every copy's state, for exact resume.

`parse_env_spec("vmas:navigation")` checks a spec and names what is allowed; `make_team_env`
builds the env of a spec.
"""

from __future__ import annotations

import ast
from typing import Any, Callable, Protocol, runtime_checkable

import torch

ENV_KINDS = ("soccer", "vmas:<scenario>", "pettingzoo:<module>:<function>")
"""the forms of `--env`"""


@runtime_checkable
class TeamVecEnv(Protocol):
    """The batched multi-agent env of the trainer (see the module docstring)."""

    num_envs: int
    num_agents: int
    device: torch.device
    obs_dim: int
    num_actions: int
    state_dim: int
    max_steps: int
    teams: tuple[int, ...]
    can_branch: bool

    def reset(self, seed: int | None = None) -> torch.Tensor: ...

    def step(self, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor,
                                                   dict[str, Any]]: ...

    def state(self) -> torch.Tensor: ...

    def branch(self, src_idx: Any, group_size: int) -> torch.Tensor: ...

    def reset_blocks(self, seed: int, group_size: int) -> torch.Tensor: ...

    def get_state(self) -> dict[str, Any]: ...

    def set_state(self, snapshot: dict[str, Any]) -> torch.Tensor: ...


@torch.no_grad()
def play_once(env: Any, act: Callable[[torch.Tensor], torch.Tensor], seed: int, key: str) -> torch.Tensor:
    """Reset `env` from `seed` and step it with `act(obs [B, N, D]) -> actions [B, N]` until each of
    its B copies has ended once; returns `infos[key]` of each copy at its first end (soccer's
    `final_score` [B, 2], `episode_return` [B, N]). A copy is reset as soon as it ends, so its later
    steps (a new episode nobody counts) are ignored. Raises if a copy has not ended within
    `env.max_steps` steps."""
    obs = env.reset(seed=seed)
    ended = torch.zeros(env.num_envs, dtype=torch.bool, device=env.device)
    result = None
    for _ in range(env.max_steps):
        obs, _, terminated, truncated, infos = env.step(act(obs))
        new = (terminated | truncated) & ~ended
        value = infos[key]
        result = torch.where(new.view(-1, *[1] * (value.dim() - 1)), value, value if result is None else result)
        ended |= new
        if bool(ended.all()):
            return result
    raise RuntimeError(f"{int((~ended).sum())} of {env.num_envs} episodes did not end within max_steps={env.max_steps}")


def parse_env_spec(spec: str) -> tuple[str, str]:
    """`--env` as (kind, name): ("soccer", ""), ("vmas", scenario) or ("pettingzoo", "module:function");
    a `ValueError` naming the value and the allowed forms otherwise. (Whether the scenario or the
    function exists is checked when the env is built: `make_team_env`.)"""
    kind, _, name = str(spec).partition(":")
    if spec == "soccer":
        return "soccer", ""
    if kind == "vmas" and name and ":" not in name:
        return "vmas", name
    if kind == "pettingzoo" and name.count(":") == 1 and all(name.split(":")):
        return "pettingzoo", name
    raise ValueError(f"env={spec!r} is invalid: expected one of {', '.join(ENV_KINDS)} "
                     "(e.g. vmas:navigation, pettingzoo:mpe2.simple_spread_v3:parallel_env)")


def parse_env_kwargs(items: tuple[str, ...] | list[str]) -> dict[str, Any]:
    """`("n_agents=3", "name=x")` -> {"n_agents": 3, "name": "x"}: values read as Python literals
    (numbers, True/False/None, tuples, quoted strings), else kept as strings."""
    kwargs: dict[str, Any] = {}
    for item in items:
        key, sep, text = str(item).partition("=")
        if not sep or not key.isidentifier():
            raise ValueError(f"env_kwargs item {item!r} is invalid: expected key=value with a Python name as key "
                             "(e.g. n_agents=3)")
        if key in kwargs:
            raise ValueError(f"env_kwargs gives {key!r} twice")
        try:
            kwargs[key] = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            kwargs[key] = text
    return kwargs


def make_team_env(spec: str, num_envs: int, device: Any, seed: int, max_steps: int | None = None,
                  **kwargs: Any) -> TeamVecEnv:
    """The batched env of a non-soccer `--env` spec (`parse_env_spec`), with `kwargs` for the task;
    its adapter module is imported only here (vmas and pettingzoo are optional)."""
    kind, name = parse_env_spec(spec)
    if kind == "vmas":
        from .vmas_env import VmasTeamEnv

        return VmasTeamEnv(name, num_envs=num_envs, device=device, seed=seed, max_steps=max_steps, **kwargs)
    if kind == "pettingzoo":
        from .pettingzoo_env import PettingZooTeamEnv

        return PettingZooTeamEnv(name, num_envs=num_envs, device=device, seed=seed, max_steps=max_steps, **kwargs)
    raise ValueError(f"env={spec!r}: the soccer env is built by the trainer itself (SoccerVecEnv)")
