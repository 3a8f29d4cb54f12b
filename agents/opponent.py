"""A frozen soccer checkpoint playing one side: `PolicyOpponent`, with the interface of a scripted bot.

    red = load_policy_opponent("runs/2v2/checkpoint", SoccerConfig(team_size=2))
    env = soccer_v0.parallel_env(team_size=2, opponent=red)           # the checkpoint plays red in the env
    actions = red.act(obs[:, n_blue:])                                # or drive it yourself: [B, R, D] -> [B, R]

The checkpoint is any folder written by `marl-grpo train` (`policy.safetensors` + `config.json`,
`marl_grpo.agents.checkpoint`). Red's players act on the observations the env gives them, each from
its own mirrored frame, as a scripted `Bot` does, so a `PolicyOpponent` is an opponent both for the
env's `opponent=` option (`marl_grpo.envs.opponent`: `act` and the seeding hook `reset(seed)`) and
for the trainer's `--opponent PATH` (`marl_grpo.rl.opponent`, which adds the run's checks and seed
offset). It lives beside the policy, not in `marl_grpo.envs`, because the envs import nothing of the
policy network (tests/test_layout.py).

The opponent samples its actions from its policy with a `torch.Generator` of its own, so that its
play is reproducible, resumes exactly (`state_dict`) and splits over processes exactly as a bot
does (`shard`). All matches act in one forward pass per step. The policy is frozen.
"""

from __future__ import annotations

import os
from typing import Any

import torch

from marl_grpo.envs.bots import BOT_NAMES
from marl_grpo.envs.config import SoccerConfig

from .checkpoint import load_policy
from .policy import SoccerPolicy, sample_actions


class PolicyOpponent:
    """A frozen `SoccerPolicy` playing one side, with the interface of a scripted `Bot`:
    `act(obs [B, R, D]) -> int64 [B, R]`, `reset(seed)`, `shard`, and the state of its random
    stream for exact resume.

    `deterministic=True` plays the policy's most likely action; the default samples it with
    `generator`, seeded by `seed`.
    """

    def __init__(self, policy: SoccerPolicy, seed: int, deterministic: bool = False, name: str = "checkpoint"):
        self.policy = policy.requires_grad_(False).eval()
        self.deterministic, self.name = deterministic, name
        self.generator = torch.Generator(device=policy.device).manual_seed(seed)
        self.shard = (0, 1)
        """(index, count): the observations are slice `index` of `count` equal slices of a larger
        batch, and the draws are that slice of the whole batch's (as `Bot.shard`)"""

    @torch.no_grad()
    def act(self, obs: torch.Tensor) -> torch.Tensor:
        """Actions of every row: obs float [..., D] -> int64 [...], on the observations' device."""
        logits = self.policy(obs.to(self.policy.device))
        actions, _ = sample_actions(logits, self.deterministic, self.generator, self.shard)
        return actions.to(obs.device)

    def reset(self, seed: int | None = None) -> None:
        """Nothing to forget between matches; re-seed if `seed` is given (as `Bot.reset`)."""
        if seed is not None:
            self.generator.manual_seed(int(seed))

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"])

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, deterministic={self.deterministic})"


def load_policy_opponent(path: str | os.PathLike, env_config: SoccerConfig | None = None, seed: int = 0,
                         device: Any = "auto", deterministic: bool = False) -> PolicyOpponent:
    """The soccer checkpoint at `path` as a frozen `PolicyOpponent`, its sampling stream seeded by
    `seed` (an env given it as `opponent` re-seeds it at every seeded reset). With `env_config`, a
    policy that cannot read that env's observations (an MLP trained on other team sizes) is refused
    with a `ValueError` naming `path`; a folder that is no checkpoint gets a `FileNotFoundError`."""
    try:
        policy, _ = load_policy(path, device=device, env_config=env_config)
    except ValueError as err:
        raise ValueError(f"opponent={str(path)!r}: {err}") from None
    return PolicyOpponent(policy, seed, deterministic, name=str(path))


def env_opponent(value: str | os.PathLike | None, env_config: SoccerConfig, seed: int = 0,
                 device: Any = "cpu") -> str | PolicyOpponent | None:
    """A command line's `--opponent` value as the envs' `opponent=`: None or "none" -> None (both
    teams are agents), a bot name -> that name, anything else -> the checkpoint folder at that path,
    loaded for `env_config`'s team sizes (`load_policy_opponent`). A path that holds no checkpoint
    gets one `FileNotFoundError` naming the value and what is allowed."""
    if value is None or value == "none":
        return None
    if value in BOT_NAMES:
        return str(value)
    try:
        return load_policy_opponent(value, env_config, seed, device)
    except FileNotFoundError as err:
        raise FileNotFoundError(f"opponent={str(value)!r} is invalid: expected 'none', one of {list(BOT_NAMES)} "
                                f"or a checkpoint folder of marl-grpo train ({err})") from None


__all__ = ["PolicyOpponent", "env_opponent", "load_policy_opponent"]
