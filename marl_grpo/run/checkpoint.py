"""Checkpoints: the atomic folder writer every run uses, and the soccer policy's files.

A checkpoint folder is written to a temporary sibling and renamed into place, so a crash while
saving never leaves a half-written checkpoint behind. A soccer checkpoint is `policy.safetensors`
+ `config.json` (+ `trainer_state.pt` for exact resume; names in `marl_grpo.run.files`). The
policy files live here, not in `marl_grpo.rl`, because `eval`, `watch` and the LLM mode (soccer
players beside the LLM) read them too.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any, Iterator

import torch
from safetensors.torch import load_file, save_file

from marl_grpo.agents import SoccerPolicy
from marl_grpo.envs import SoccerConfig
from marl_grpo.run.files import COMPLETE_FILE, POLICY_CONFIG_FILE, POLICY_FILE, STATE_FILE


def _fsync(path: Path) -> None:
    """Flush a file's or a folder's contents to the disk (a folder: its entries)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _siblings(path: Path) -> tuple[Path, Path]:
    return path.with_name(path.name + ".tmp"), path.with_name(path.name + ".old")


def _complete(folder: Path) -> bool:
    return (folder / COMPLETE_FILE).is_file()


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike) -> Iterator[Path]:
    """Write a checkpoint folder so that a crash at any moment leaves a whole one behind.

    The body fills `<path>.tmp`; then every file is fsynced and a `COMPLETE` marker written last.
    The old folder is renamed to `<path>.old`, the new one to `path`, and only then is the old one
    deleted. Each rename is atomic and fsynced in the parent folder, so after a crash `path`,
    or else `<path>.tmp` (complete) or `<path>.old`, holds a whole checkpoint, which `recover`
    puts back in place before anything reads or replaces it.
    """
    path = Path(path)
    tmp, old = _siblings(path)
    recover(path)
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    yield tmp
    for file in tmp.iterdir():
        _fsync(file)
    (tmp / COMPLETE_FILE).write_text("")
    _fsync(tmp / COMPLETE_FILE)
    _fsync(tmp)
    if path.exists():
        os.replace(path, old)
    os.replace(tmp, path)
    _fsync(path.parent)
    shutil.rmtree(old, ignore_errors=True)


def recover(path: str | os.PathLike) -> None:
    """After a crash in `atomic_directory`, put the newest whole checkpoint back at `path` and
    remove the leftovers (a partial `.tmp`, a superseded `.old`)."""
    path = Path(path)
    tmp, old = _siblings(path)
    if not path.exists():
        if tmp.exists() and _complete(tmp):
            os.replace(tmp, path)  # the crash came after the new checkpoint was whole
        elif old.exists():
            os.replace(old, path)  # the crash came between the two renames
        else:
            return
        _fsync(path.parent)
    shutil.rmtree(old, ignore_errors=True)
    shutil.rmtree(tmp, ignore_errors=True)


def write_policy(folder: Path, policy: SoccerPolicy, env_config: SoccerConfig, train_config: dict[str, Any]) -> None:
    """Write the soccer policy's weights and metadata into `folder` (inside `atomic_directory`).
    The metadata holds the weights' SHA-256, so that a damaged file is refused at load."""
    weights = {k: v.detach().cpu().contiguous() for k, v in policy.state_dict().items()}
    if not all(bool(torch.isfinite(v).all()) for v in weights.values() if v.is_floating_point()):
        raise FloatingPointError("the policy holds non-finite weights: they are not saved, and the last checkpoint "
                                 "keeps the last finite ones")
    save_file(weights, str(folder / POLICY_FILE))
    meta = {
        "policy": policy.config_dict(),
        "env": env_config.to_dict(),
        "observation_features": env_config.observation_features(),
        "obs_dim": env_config.obs_dim,
        "train": train_config,
        "policy_sha256": hashlib.sha256((folder / POLICY_FILE).read_bytes()).hexdigest(),
    }
    (folder / POLICY_CONFIG_FILE).write_text(json.dumps(meta, indent=2))


def read_config(path: str | os.PathLike) -> dict[str, Any]:
    """The metadata of a soccer checkpoint folder; a clear error if it is missing or unreadable."""
    path = Path(path)
    recover(path)
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
    """The trainer state of a checkpoint folder; a clear error if it is missing or damaged."""
    recover(path)
    file = Path(path) / STATE_FILE
    if not file.is_file():
        raise FileNotFoundError(f"no {STATE_FILE} in {str(path)!r}: cannot resume this run exactly")
    try:
        state = torch.load(file, map_location="cpu", weights_only=False)
    except Exception as err:  # a truncated or altered pickle fails in several ways
        raise ValueError(f"{str(file)!r} cannot be read ({type(err).__name__}: {err}): the checkpoint is "
                         "damaged") from None
    if not isinstance(state, dict) or "iteration" not in state:
        raise ValueError(f"{str(file)!r} is not a marl-grpo trainer state")
    return state
