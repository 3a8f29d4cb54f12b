"""A frozen soccer checkpoint as the fixed opponent of a training run (`--opponent PATH`).

    marl-grpo train --preset 2v2 --opponent runs/league-2v2/checkpoint     # learn to beat that policy
    opponent = load_opponent("runs/2v2/checkpoint", env.config, seed=1)    # in Python: plays red

The checkpoint is any folder written by `marl-grpo train` (`policy.safetensors` + `config.json`,
`marl_grpo.agents.checkpoint`): a run's `checkpoint`, or a league snapshot. It plays the red team,
as a scripted bot does, and the learner plays blue. Red's players see the observations the env gives
them, each from its own mirrored frame: the very rows a self-play or league red acts on.

The opponent (`marl_grpo.agents.PolicyOpponent`, re-exported here) samples its actions from its
policy (as the target plays in its own matches and in `eval`), with a `torch.Generator` of its own
seeded from the run's seed, so that a run is reproducible, resumes exactly (the generator's state is
in the checkpoint) and splits over processes exactly as a bot does (`shard`). All matches act in one
forward pass per step. The policy is frozen: it never trains, whatever the learner does.

A checkpoint the run's env cannot play is refused when the config is built
(`check_opponent_checkpoint`): a missing folder, an LLM checkpoint, a folder that is no soccer
checkpoint, or an MLP trained on other team sizes (`check_compatible`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from marl_grpo.agents import BOT_NAMES, PolicyOpponent, load_policy_opponent
from marl_grpo.agents.checkpoint import check_compatible, read_config, soccer_env
from marl_grpo.envs.config import SoccerConfig
from marl_grpo.run.checkpoint import recover
from marl_grpo.run.files import LLM_CONFIG_FILE

OPPONENT_NAMES = (*BOT_NAMES, "self", "league")
"""the `--opponent` values that are not a checkpoint folder"""
OPPONENT_SEED_OFFSET = 7919
"""added to the run's seed for the opponent's sampling stream (its own, apart from the learner's)"""


def is_checkpoint_opponent(opponent: str) -> bool:
    """Whether an `--opponent` value names a checkpoint folder (anything but a bot, self or league)."""
    return opponent not in OPPONENT_NAMES


def read_soccer_checkpoint(path: str | os.PathLike, role: str, allowed: str) -> dict[str, Any]:
    """The metadata (`config.json`) of the soccer checkpoint at `path`, or one `ValueError` naming
    `role=path`, what is wrong (no folder there, an LLM checkpoint, no soccer checkpoint) and
    `allowed`. A checkpoint left half-renamed by a crash while saving is put back first."""
    shown = str(path)
    if not Path(path).exists():
        recover(path)
    if not Path(path).is_dir():
        raise ValueError(f"{role}={shown!r} is invalid: expected {allowed} (no folder at that path)")
    if (Path(path) / LLM_CONFIG_FILE).is_file():
        raise ValueError(f"{role}={shown!r} is an LLM checkpoint (marl-grpo llm; score it with marl-grpo eval): "
                         f"expected {allowed}")
    try:
        meta = read_config(path)
        soccer_env(meta)
    except (FileNotFoundError, ValueError) as err:
        raise ValueError(f"{role}={shown!r} is not a usable soccer checkpoint: {err}") from None
    return meta


def check_opponent_checkpoint(path: str | os.PathLike, env_config: SoccerConfig) -> dict[str, Any]:
    """The metadata of the soccer checkpoint at `path`, or a `ValueError` in one line naming `path`
    and what is wrong: not there, an LLM checkpoint, not a soccer checkpoint, or a policy that
    cannot read `env_config`'s observations. Reads `config.json` only (no weights). A bad value of
    the config's `opponent` field, hence a `ValueError` even for a missing folder (the command line
    turns it into one line)."""
    meta = read_soccer_checkpoint(path, "opponent", f"one of {OPPONENT_NAMES} or a checkpoint folder of marl-grpo "
                                                    "train (policy.safetensors + config.json)")
    try:
        check_compatible(meta, env_config)
    except ValueError as err:
        raise ValueError(f"opponent={str(path)!r}: {err}") from None
    return meta


def load_opponent(path: str | os.PathLike, env_config: SoccerConfig, seed: int, device: Any = "auto",
                  deterministic: bool = False) -> PolicyOpponent:
    """The soccer checkpoint at `path` as a frozen opponent for the matches of `env_config`
    (refused in one line if it cannot play them: `check_opponent_checkpoint`). `seed` is the run's
    seed: the opponent's stream is seeded `seed + OPPONENT_SEED_OFFSET`."""
    check_opponent_checkpoint(path, env_config)
    return load_policy_opponent(path, env_config, seed + OPPONENT_SEED_OFFSET, device, deterministic)


__all__ = ["OPPONENT_NAMES", "PolicyOpponent", "check_opponent_checkpoint", "is_checkpoint_opponent",
           "load_opponent", "read_soccer_checkpoint"]
