"""Run by `torchrun` in tests/test_distributed.py: one training run whose every rank saves its
final weights to `<out>/rank<r>.pt`, so that the test can compare the ranks.

    torchrun --nproc-per-node 2 tests/distributed_worker.py OUT {train,llm} [CLI options ...]
"""

import sys
from pathlib import Path

import torch

from marl_grpo.run.distributed import world_from_env
from marl_grpo.run.loop import run_training
from marl_grpo.run.presets import parse_with_preset


def main() -> None:
    out, command, argv = Path(sys.argv[1]), sys.argv[2], sys.argv[3:]
    if command == "train":
        from marl_grpo.rl import PRESETS, SoccerTrainer as Base

        cfg = parse_with_preset(argv, PRESETS, "tiny", "worker", "")
    else:
        from marl_grpo.llm import PRESETS, LLMTrainer as Base

        cfg = parse_with_preset(argv, PRESETS, "test", "worker", "")

    class Recording(Base):
        def summary(self, global_step, elapsed):
            weights = {f"{i}": p.detach().cpu().clone() for i, p in enumerate(self.parameters)}
            torch.save(weights, out / f"rank{world_from_env().rank}.pt")
            return super().summary(global_step, elapsed)

    out.mkdir(parents=True, exist_ok=True)
    run_training(Recording, cfg)


if __name__ == "__main__":
    main()
