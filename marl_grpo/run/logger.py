"""TensorBoard logging for runs (`runs/<name>/`), with CleanRL's tag names."""

from __future__ import annotations

import os
from typing import Any


class Logger:
    """Writes scalars and text to a TensorBoard event file. Learners take one; they never import tensorboard."""

    def __init__(self, run_dir: str | os.PathLike):
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(run_dir))

    def scalars(self, values: dict[str, float], step: int) -> None:
        for tag, value in values.items():
            self.writer.add_scalar(tag, value, step)

    def hyperparameters(self, params: dict[str, Any]) -> None:
        table = "\n".join(f"|{k}|{v}|" for k, v in params.items())
        self.writer.add_text("hyperparameters", f"|param|value|\n|-|-|\n{table}")

    def text(self, tag: str, text: str) -> None:
        self.writer.add_text(tag, text)

    def close(self) -> None:
        self.writer.flush()
        self.writer.close()
