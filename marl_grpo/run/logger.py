"""TensorBoard logging for runs (`runs/<name>/`), with CleanRL's tag names."""

from __future__ import annotations

import os
from typing import Any


class Logger:
    """Writes scalars and text to a TensorBoard event file. Learners take one; they never import tensorboard.

    A disabled logger (every rank but 0 of a distributed run) writes nothing and creates no file.
    """

    def __init__(self, run_dir: str | os.PathLike, enabled: bool = True, purge_step: int | None = None):
        """`purge_step`: a resumed run drops the events at or after this step that an earlier process
        logged after its last checkpoint (TensorBoard's `purge_step`)."""
        self.writer = None
        if enabled:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(run_dir), purge_step=purge_step)

    def scalars(self, values: dict[str, float], step: int) -> None:
        if self.writer is not None:
            for tag, value in values.items():
                self.writer.add_scalar(tag, value, step)

    def hyperparameters(self, params: dict[str, Any]) -> None:
        table = "\n".join(f"|{k}|{v}|" for k, v in params.items())
        self.text("hyperparameters", f"|param|value|\n|-|-|\n{table}")

    def text(self, tag: str, text: str, step: int | None = None) -> None:
        if self.writer is not None:
            self.writer.add_text(tag, text, step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.flush()
            self.writer.close()
