"""The soccer policy's checkpoint files: `policy.safetensors` + `config.json`.

    with atomic_directory(folder) as tmp:                    # marl_grpo.run.checkpoint: crash-safe folder
        write_policy(tmp, policy, env.config, cfg.to_dict())
    policy, meta = load_policy(folder, env_config=env.config)

The weights are a safetensors file; `config.json` holds the policy's constructor arguments
(`SoccerPolicy.config_dict`), the env config, the observation layout, the training config and
the weights' SHA-256, so that a damaged file is refused at load. These files live beside the
policy, not in `marl_grpo.run` (which every mode shares) or `marl_grpo.rl`, because `eval`,
`watch`, the tournament and the LLM mode (soccer players beside the LLM) read them too.

The functions here read and write one plain folder. A folder is made crash-safe by
`marl_grpo.run.checkpoint.atomic_directory`, and one left half-renamed by a crash is put back by
`marl_grpo.run.checkpoint.recover`, which the run loop and the commands call before reading.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from marl_grpo.envs.config import SoccerConfig

from .policy import SoccerPolicy

POLICY_FILE = "policy.safetensors"
"""the soccer policy's weights"""
POLICY_CONFIG_FILE = "config.json"
"""the soccer checkpoint's metadata: policy architecture, env config, observation layout, train config"""


def write_policy(folder: Path, policy: SoccerPolicy, env_config: SoccerConfig | dict[str, Any],
                 train_config: dict[str, Any]) -> None:
    """Write the policy's weights and metadata into `folder` (inside `atomic_directory`).
    `env_config`: the soccer env's config, or the description of another env of the trainer
    (a dict with its `name`, the `--env` spec). The metadata holds the weights' SHA-256, so that a
    damaged file is refused at load."""
    folder = Path(folder)
    weights = {k: v.detach().cpu().contiguous() for k, v in policy.state_dict().items()}
    if not all(bool(torch.isfinite(v).all()) for v in weights.values() if v.is_floating_point()):
        raise FloatingPointError("the policy holds non-finite weights: they are not saved, and the last checkpoint "
                                 "keeps the last finite ones")
    save_file(weights, str(folder / POLICY_FILE))
    meta = {
        "policy": policy.config_dict(),
        "env": env_config.to_dict() if isinstance(env_config, SoccerConfig) else dict(env_config),
        "observation_features": env_config.observation_features() if isinstance(env_config, SoccerConfig) else [],
        "obs_dim": policy.obs_dim,
        "train": train_config,
        "policy_sha256": hashlib.sha256((folder / POLICY_FILE).read_bytes()).hexdigest(),
    }
    (folder / POLICY_CONFIG_FILE).write_text(json.dumps(meta, indent=2))


def read_config(path: str | os.PathLike) -> dict[str, Any]:
    """The metadata of a soccer checkpoint folder; a clear error if it is missing or unreadable."""
    path = Path(path)
    if not (path / POLICY_CONFIG_FILE).is_file() or not (path / POLICY_FILE).is_file():
        raise FileNotFoundError(
            f"no checkpoint at {str(path)!r}: expected a folder holding {POLICY_FILE} and {POLICY_CONFIG_FILE} "
            "(e.g. runs/<name>/checkpoint)"
        )
    file = path / POLICY_CONFIG_FILE
    try:
        meta = json.loads(file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{str(file)!r} is not valid JSON ({err}): the checkpoint is damaged") from None
    missing = [k for k in ("policy", "env", "observation_features", "obs_dim") if k not in meta] if isinstance(
        meta, dict) else ["policy"]
    if missing or not isinstance(meta["policy"], dict) or not isinstance(meta["env"], dict):
        raise ValueError(f"{str(file)!r} is not a marl-grpo checkpoint config: expected an object with 'policy', "
                         f"'env', 'observation_features' and 'obs_dim' (missing or malformed: {missing or ['policy']})")
    return meta


def load_policy(path: str | os.PathLike, device: Any = "auto",
                env_config: SoccerConfig | None = None) -> tuple[SoccerPolicy, dict[str, Any]]:
    """Rebuild the saved policy. With `env_config`, check that the policy can read that env's
    observations and raise a clear error if not (another team size, another layout). A damaged
    weights file, or weights that do not fit the saved architecture, get a `ValueError` naming it."""
    meta = read_config(path)
    file = Path(path) / POLICY_FILE
    digest = meta.get("policy_sha256")
    if digest is not None and hashlib.sha256(file.read_bytes()).hexdigest() != digest:
        raise ValueError(f"{str(file)!r} does not match the checksum in {POLICY_CONFIG_FILE}: the weights file is "
                         "damaged (truncated or altered)")
    try:
        policy = SoccerPolicy.from_config(meta["policy"], device=device)
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(f"the 'policy' entry of {str(Path(path) / POLICY_CONFIG_FILE)!r} cannot build a policy: "
                         f"{err!r}") from None
    try:
        weights = load_file(str(file), device=str(policy.device))
    except Exception as err:  # safetensors raises its own error types for a damaged file
        raise ValueError(f"{str(file)!r} is not a readable safetensors file ({err}): the checkpoint is damaged") \
            from None
    try:
        policy.load_state_dict(weights)
    except RuntimeError as err:
        raise ValueError(f"the weights in {str(file)!r} do not fit the architecture in {POLICY_CONFIG_FILE} "
                         f"({str(err).splitlines()[0]} ...)") from None
    if env_config is not None:
        check_compatible(meta, env_config)
    return policy, meta


def match_kwargs(meta: dict[str, Any], team_size: int | None = None) -> dict[str, Any]:
    """The env kwargs of the matches a checkpoint trained on (team sizes, `max_cycles`), from its
    metadata (`read_config`): `eval`, `watch`, `play` and `marl_grpo.evaluate` play these.
    `team_size` replaces the saved sizes with a symmetric match of that size."""
    env = soccer_env(meta)
    kwargs = {"team_size": env["team_size"], "blue_size": env.get("blue_size"), "red_size": env.get("red_size"),
              "max_cycles": env["max_cycles"]}
    if team_size is not None:
        kwargs.update(team_size=team_size, blue_size=None, red_size=None)
    return kwargs


def soccer_env(meta: dict[str, Any]) -> dict[str, Any]:
    """The soccer env config of a checkpoint's metadata, or a `ValueError` if it was trained on
    another env (`marl-grpo train --env vmas:...`)."""
    name = meta["env"].get("name", "soccer")
    if name != "soccer":
        raise ValueError(f"the checkpoint was trained on env {name!r}, not on soccer: it plays only that env "
                         "(its mean return on held-out seeds is its run's eval/return in TensorBoard)")
    return meta["env"]


def check_compatible(meta: dict[str, Any], env_config: SoccerConfig) -> None:
    """Raise a `ValueError` if the checkpoint of `meta` cannot read the observations of `env_config`
    (trained on another env, or an MLP trained on other team sizes; an entity policy reads any)."""
    soccer_env(meta)
    if meta["policy"].get("arch") == "entity":
        return  # the entity encoder reads any team size
    saved = [tuple(f) for f in meta["observation_features"]]
    if saved != env_config.observation_features():
        raise ValueError(
            f"the checkpoint was trained on observations of width {meta['obs_dim']} "
            f"(team sizes {meta['env'].get('blue_size') or meta['env']['team_size']}v"
            f"{meta['env'].get('red_size') or meta['env']['team_size']}), but this env gives width "
            f"{env_config.obs_dim} ({env_config.n_blue}v{env_config.n_red}); use the same team sizes, "
            "or train with --arch entity to play any size"
        )


__all__ = ["POLICY_CONFIG_FILE", "POLICY_FILE", "check_compatible", "load_policy", "match_kwargs", "read_config",
           "soccer_env", "write_policy"]
