"""Scale-out on PyTorch's own engine: `torch.distributed` under `torchrun` (gloo on CPU, NCCL on GPU).

    torchrun --nproc-per-node 4 -m marl_grpo train --preset 2v2          # 4 processes, one machine
    torchrun --nnodes 2 --node-rank 0 --nproc-per-node 8 --rdzv-backend c10d \\
             --rdzv-endpoint HOST:29500 -m marl_grpo train ...             # and --node-rank 1 on the other

Without torchrun (no ``WORLD_SIZE`` in the environment) everything here is a no-op and a run is
one process, as before. Under torchrun each process (rank) plays its slice of the global batch;
what is split and what is reduced:

| what | how |
|---|---|
| matches (`--num-envs`), LLM prompts (`--prompts-per-step`) | the global figure, split evenly: rank r plays the slice a single process would |
| GRPO groups | whole on one rank (the rank's share must be a multiple of the group size) |
| gradients | all-reduced (mean) as one flat buffer after every backward, so every rank steps identically |
| PPO's value normaliser, per-minibatch advantage normalisation | moments all-reduced |
| logged scalars | averaged over ranks (rates are global: the global batch over a rank's time) |
| evaluation, TensorBoard events, checkpoints, progress bar | rank 0 |
| checkpoint | the shared state once, plus every rank's env state and random streams |

The gradient is averaged by one all-reduce of the flattened gradients rather than by wrapping the
model in `DistributedDataParallel`: the update computes several losses per step through different
modules (policy, PPO's critic, a Hugging Face model's forward with a shared prompt cache), which
DDP would each need to wrap, and on the small networks of soccer one flat collective per step is
the cheapest there is.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Iterable

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class World:
    """This process's place among the run's processes: rank `rank` of `world_size` (1 without torchrun).

    (Not to be confused with the `shard = (index, count)` tuples of the rollout and the policy's
    sampling, which name a slice of the random streams.)
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """the process that logs, evaluates and writes checkpoints"""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def split(self, total: int, what: str) -> int:
        """This rank's share of a global count; a clear error if it does not divide evenly."""
        if total % self.world_size:
            raise ValueError(f"{what}={total} cannot be split evenly over {self.world_size} processes: "
                             f"use a multiple of {self.world_size}")
        return total // self.world_size


def world_from_env() -> World:
    """The place torchrun describes in the environment (RANK, WORLD_SIZE, LOCAL_RANK)."""
    return World(int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)),
                 int(os.environ.get("LOCAL_RANK", 0)))


def rank_device(device: Any, world: World = World()) -> torch.device:
    """The device of a run's `--device` on this rank: `"auto"` is CUDA when present, else the CPU;
    a CUDA device without an index is `cuda:LOCAL_RANK` under torchrun (one GPU per rank). A name
    torch does not know, or CUDA where there is none, gets a `ValueError` naming it."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"device={device!r} is invalid: expected 'auto', 'cpu', 'cuda' or 'cuda:N'") from err
    if resolved.type != "cuda":
        return resolved
    if not torch.cuda.is_available():
        raise ValueError(f"device={device!r} was asked for but CUDA is not available; use 'auto' or 'cpu'")
    return torch.device("cuda", world.local_rank) if resolved.index is None and world.distributed else resolved


def setup(device: str) -> tuple[World, torch.device, bool]:
    """Join the process group if torchrun started this process; returns this process's `World`,
    its device (`rank_device`) and whether the group was created here."""
    world = world_from_env()
    resolved = rank_device(device, world)
    if resolved.type == "cuda" and resolved.index is not None:
        torch.cuda.set_device(resolved)  # NCCL's collectives use the current device
    created = False
    if world.distributed and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if resolved.type == "cuda" else "gloo")
        created = True
    return world, resolved, created


def teardown(created: bool) -> None:
    if created and dist.is_initialized():
        dist.destroy_process_group()


def active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum of `tensor` over ranks (in place; unchanged without a process group)."""
    if active():
        dist.all_reduce(tensor)
    return tensor


def moments(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(count, mean, population variance) of every element of `x` on every rank, in float64
    (one all-reduce of count, sum and sum of squares; `x` itself is not sent)."""
    x = x.detach().double().reshape(-1)
    count, total, squares = all_reduce_sum(torch.stack([x.new_tensor(float(x.numel())), x.sum(), (x * x).sum()]))
    mean = total / count
    return count, mean, (squares / count - mean * mean).clamp(min=0)


def average_gradients(parameters: Iterable[torch.nn.Parameter]) -> None:
    """Replace every gradient by its mean over ranks: one all-reduce of the flattened gradients
    (a parameter without a gradient on some rank counts as zero there)."""
    if not active():
        return
    params = [p for p in parameters if p.requires_grad]
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    flat = torch.cat([p.grad.reshape(-1) for p in params])
    dist.all_reduce(flat)
    flat /= dist.get_world_size()
    offset = 0
    for p in params:
        n = p.numel()
        p.grad.copy_(flat[offset:offset + n].view_as(p))
        offset += n


def broadcast_parameters(parameters: Iterable[torch.Tensor]) -> None:
    """Give every rank rank 0's values (so all start from identical weights)."""
    if not active():
        return
    for p in parameters:
        dist.broadcast(p.data, src=0)


def barrier() -> None:
    """Wait until every rank is here."""
    if active():
        dist.barrier()


def all_gather(obj: Any) -> list[Any]:
    """Every rank's `obj` (picklable; put tensors on the CPU first), in rank order."""
    if not active():
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def broadcast(obj: Any) -> Any:
    """Rank 0's `obj` on every rank."""
    if not active():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def mean_scalars(scalars: dict[str, float]) -> dict[str, float]:
    """Each scalar averaged over the ranks that logged it (a rank with no finished match this
    iteration has no episodic return, for example)."""
    if not active():
        return scalars
    merged: dict[str, list[float]] = {}
    for part in all_gather(scalars):
        for key, value in part.items():
            merged.setdefault(key, []).append(value)
    return {key: sum(values) / len(values) for key, values in merged.items()}


def to_cpu(obj: Any) -> Any:
    """`obj` with every tensor moved to the CPU (for gathering and saving)."""
    if isinstance(obj, torch.Tensor):
        return obj.cpu()
    if isinstance(obj, dict):
        return {k: to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_cpu(v) for v in obj)
    return obj
