"""Checkpoints: the atomic folder writer every run uses, and the soccer policy's files.

A checkpoint folder is written to a temporary sibling and renamed into place, so a crash while
saving never leaves a half-written checkpoint behind. A soccer checkpoint is `policy.safetensors`
+ `config.json` (+ `trainer_state.pt` for exact resume; names in `marl_grpo.run.files`). The
policy files live here, not in `marl_grpo.rl`, because `eval`, `watch` and the LLM mode (soccer
players beside the LLM) read them too.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from pathlib import Path
from typing import Any, Iterator

import torch
from safetensors.torch import load_file, save_file

from marl_grpo.agents import SoccerPolicy
from marl_grpo.envs import SoccerConfig
from marl_grpo.run.files import POLICY_CONFIG_FILE, POLICY_FILE, STATE_FILE


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike) -> Iterator[Path]:
    """Write a checkpoint folder atomically: the body fills a temporary sibling, which then
    replaces `path`; a crash mid-write leaves the previous checkpoint whole."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    yield tmp
    if path.exists():
        shutil.rmtree(path)
    tmp.rename(path)


def write_policy(folder: Path, policy: SoccerPolicy, env_config: SoccerConfig, train_config: dict[str, Any]) -> None:
    """Write the soccer policy's weights and metadata into `folder` (inside `atomic_directory`)."""
    save_file({k: v.detach().cpu().contiguous() for k, v in policy.state_dict().items()}, str(folder / POLICY_FILE))
    meta = {
        "policy": policy.config_dict(),
        "env": env_config.to_dict(),
        "observation_features": env_config.observation_features(),
        "obs_dim": env_config.obs_dim,
        "train": train_config,
    }
    (folder / POLICY_CONFIG_FILE).write_text(json.dumps(meta, indent=2))


def read_config(path: str | os.PathLike) -> dict[str, Any]:
    path = Path(path)
    if not (path / POLICY_CONFIG_FILE).is_file() or not (path / POLICY_FILE).is_file():
        raise FileNotFoundError(
            f"no checkpoint at {str(path)!r}: expected a folder holding {POLICY_FILE} and {POLICY_CONFIG_FILE} "
            "(e.g. runs/<name>/checkpoint)"
        )
    return json.loads((path / POLICY_CONFIG_FILE).read_text())


def load_policy(path: str | os.PathLike, device: Any = "auto",
                env_config: SoccerConfig | None = None) -> tuple[SoccerPolicy, dict[str, Any]]:
    """Rebuild the saved policy. With `env_config`, check that the policy can read that env's
    observations and raise a clear error if not (another team size, another layout)."""
    meta = read_config(path)
    policy = SoccerPolicy.from_config(meta["policy"], device=device)
    policy.load_state_dict(load_file(str(Path(path) / POLICY_FILE), device=str(policy.device)))
    if env_config is not None:
        check_compatible(meta, env_config)
    return policy, meta


def check_compatible(meta: dict[str, Any], env_config: SoccerConfig) -> None:
    saved = [tuple(f) for f in meta["observation_features"]]
    wanted = env_config.observation_features()
    if meta["policy"].get("arch") == "entity":
        return  # the entity encoder reads any team size
    if saved != wanted:
        raise ValueError(
            f"the checkpoint was trained on observations of width {meta['obs_dim']} "
            f"(team sizes {meta['env'].get('blue_size') or meta['env']['team_size']}v"
            f"{meta['env'].get('red_size') or meta['env']['team_size']}), but this env gives width "
            f"{env_config.obs_dim} ({env_config.n_blue}v{env_config.n_red}); use the same team sizes, "
            "or train with --arch entity to play any size"
        )


def load_trainer_state(path: str | os.PathLike) -> dict[str, Any]:
    file = Path(path) / STATE_FILE
    if not file.is_file():
        raise FileNotFoundError(f"no {STATE_FILE} in {str(path)!r}: cannot resume this run exactly")
    return torch.load(file, map_location="cpu", weights_only=False)
