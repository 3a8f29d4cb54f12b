"""Checkpoints: the atomic folder writer every run uses, and the trainer state of exact resume.

A checkpoint folder is written to a temporary sibling and renamed into place, so a crash while
saving never leaves a half-written checkpoint behind. What a mode puts in it is the mode's own
(the soccer policy's files: `marl_grpo.agents.checkpoint`; the LLM's Hugging Face files), beside
`trainer_state.pt` for exact resume (names in `marl_grpo.run.files`).
"""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path
from typing import Any, Iterator

import torch

from marl_grpo.run.files import COMPLETE_FILE, STATE_FILE


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
