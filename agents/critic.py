"""`SoccerCritic`: the value network of the PPO baseline (GRPO has none).

MAPPO-style (Yu et al. 2022, "The Surprising Effectiveness of PPO in Cooperative Multi-Agent
Games", sec. 3-4): a separate network from the shared actor, in one of two kinds.

| kind | input | width (2v2) |
|---|---|---|
| `"decentralized"` | the agent's own egocentric observation (IPPO) | obs_dim = 35 |
| `"centralized"` | the world-frame global state `SoccerVecEnv.state()` plus a one-hot of the agent's index (MAPPO's agent-specific global state) | 4N + 7 + N = 31 |

    critic = SoccerCritic(env.config, kind="centralized")
    x = critic.inputs(obs[:, agents], env.state(), agents)    # [B, C, D_in]
    values = critic(x)                                         # [B, C]

The network is CleanRL's critic: ``D_in -> hidden -> hidden -> 1``, tanh, orthogonal init with
gain sqrt(2) and 1.0 on the output layer (`ppo.py`'s ``layer_init``).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from marl_grpo.envs.backend import resolve_device
from marl_grpo.envs.config import SoccerConfig

from .policy import Tanh, _linear, rows_in_chunks

CRITIC_KINDS = ("decentralized", "centralized")


class SoccerCritic(nn.Module):
    """V(s) for every controlled player, on its observation or on the global state + its index.

    Args:
        config: the env's `SoccerConfig`, or another env of the trainer (`marl_grpo.envs.team.TeamVecEnv`):
            anything with `obs_dim`, `state_dim` and `num_agents`.
        kind: `"decentralized"` or `"centralized"` (see the module docstring).
        hidden: width of the two hidden layers.
        device: where the weights live; `"auto"` picks CUDA when present.
    """

    def __init__(self, config: SoccerConfig | Any, kind: str = "centralized", hidden: int = 128, device: Any = "auto"):
        super().__init__()
        if kind not in CRITIC_KINDS:
            raise ValueError(f"critic={kind!r} is invalid: expected one of {CRITIC_KINDS}")
        if not isinstance(hidden, int) or isinstance(hidden, bool) or hidden < 1:
            raise ValueError(f"critic_hidden={hidden!r} is invalid: expected an int >= 1")
        self.kind, self.num_agents = kind, config.num_agents
        self.input_dim = config.obs_dim if kind == "decentralized" else config.state_dim + self.num_agents
        self.net = nn.Sequential(
            _linear(self.input_dim, hidden), Tanh(),
            _linear(hidden, hidden), Tanh(),
            _linear(hidden, 1, 1.0),
        )
        self.to(resolve_device(device))

    @property
    def device(self) -> torch.device:
        return self.net[0].weight.device

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def inputs(self, obs: torch.Tensor, state: torch.Tensor | None, agents: torch.Tensor) -> torch.Tensor:
        """Critic inputs `[..., C, D_in]` for the controlled agents.

        Args:
            obs: `[..., C, obs_dim]` their observations.
            state: `[..., state_dim]` the global state (centralized kind only; may be None otherwise).
            agents: `[C]` their indices in the match (blue first).
        """
        if self.kind == "decentralized":
            return obs
        if state is None:
            raise ValueError("a centralized critic needs the global state (SoccerVecEnv.state())")
        one_hot = torch.nn.functional.one_hot(agents, self.num_agents).to(state.dtype)  # [C, N]
        lead = state.shape[:-1]
        return torch.cat([state.unsqueeze(-2).expand(*lead, len(agents), state.shape[-1]),
                          one_hot.expand(*lead, *one_hot.shape)], dim=-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Values `[...]` of inputs `[..., D_in]` (in the normalised space when value
        normalisation is on; see `marl_grpo.rl.ppo`)."""
        if x.shape[-1] != self.input_dim:
            raise ValueError(f"{self.kind} critic expects inputs {self.input_dim} wide, got {x.shape[-1]}")
        return rows_in_chunks(self.net, x.reshape(-1, x.shape[-1])).reshape(x.shape[:-1])

    def extra_repr(self) -> str:
        return f"kind={self.kind!r}, input_dim={self.input_dim}, parameters={self.num_parameters()}"


__all__ = ["CRITIC_KINDS", "SoccerCritic"]
