"""Data-parallel training under torchrun: which process this is, and the few collectives the Trainer needs.

The only module that imports torch.distributed. Outside torchrun (or with one process) every function here is a
no-op that returns its input, so the single-device run takes exactly the path it always took.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from .config import ConfigError


@dataclass(frozen=True)
class Group:
    """This process's place among the training processes: rank 0 of 1 outside torchrun."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0  # which of this machine's GPUs the process drives

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that writes checkpoints, samples, plots and logs."""
        return self.rank == 0

    @property
    def active(self) -> bool:
        """More than one process trains together (DistributedDataParallel)."""
        return self.world_size > 1


SINGLE = Group()


def join(device: torch.device) -> tuple[torch.device, Group]:
    """This process's device and Group; under torchrun with N > 1 processes, joins the process group first.

    torchrun sets RANK, LOCAL_RANK and WORLD_SIZE. CUDA processes each drive GPU LOCAL_RANK and talk over NCCL,
    CPU processes over gloo.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return device, SINGLE
    group = Group(int(os.environ["RANK"]), world_size, int(os.environ.get("LOCAL_RANK", "0")))
    if device.type == "cuda":
        if device.index is None:  # plain "cuda": one GPU per process
            device = torch.device("cuda", group.local_rank)
        torch.cuda.set_device(device)
    elif device.type != "cpu":
        raise ConfigError(f"device {device}: data-parallel training runs on CUDA GPUs or the CPU; drop torchrun "
                          "to train on one device, or pass --device cpu")
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return device, group


def leave() -> None:
    """Leave the process group, if this process joined one (at the end of a torchrun command)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def batch_norm(module: nn.Module, group: Group, device: torch.device, sync: bool) -> nn.Module:
    """`module`, with SyncBatchNorm layers when `sync` and several GPU processes train it (per-process BN else)."""
    if not (sync and group.active):
        return module  # one process already normalises over the whole batch
    if device.type != "cuda":
        raise ConfigError("sync_batch_norm: SyncBatchNorm needs CUDA GPUs (NCCL); on the CPU (gloo) leave it off "
                          "so each process keeps its own BatchNorm statistics")
    return nn.SyncBatchNorm.convert_sync_batchnorm(module)


def wrap(module: nn.Module, group: Group, device: torch.device) -> nn.Module:
    """`module` under DistributedDataParallel when several processes train it, else `module` itself.

    broadcast_buffers=False: each process keeps its own BatchNorm running statistics. Broadcasting rank 0's before
    every forward pass would also break the step, which runs D twice before one backward pass.
    """
    if not group.active:
        return module
    device_ids = [device.index] if device.type == "cuda" else None
    # Newer torch renames the option (and warns about the old name); older torch, as on Colab, knows only the old.
    keep_own_buffers = ({"forward_sync_buffers": False} if "forward_sync_buffers" in
                        inspect.signature(DistributedDataParallel).parameters else {"broadcast_buffers": False})
    return DistributedDataParallel(module, device_ids=device_ids, **keep_own_buffers)


def share_of(batch: Tensor, group: Group) -> Tensor:
    """This process's rows of a tensor that every process computed whole (rank r: the r-th of N equal parts)."""
    if not group.active:
        return batch
    size = batch.size(0) // group.world_size
    return batch[group.rank * size : (group.rank + 1) * size]


def mean(tensor: Tensor, group: Group) -> Tensor:
    """The element-wise mean of `tensor` over all processes (`tensor` itself in a single process)."""
    if not group.active:
        return tensor
    total = tensor.detach().clone()
    dist.all_reduce(total)
    return total / group.world_size


def gather(value: object, group: Group) -> list:
    """Every process's `value` (picklable), in rank order, on every process."""
    if not group.active:
        return [value]
    values: list = [None] * group.world_size
    dist.all_gather_object(values, value)
    return values


def broadcast(value: object, group: Group) -> object:
    """Rank 0's `value` (picklable), on every process."""
    if not group.active:
        return value
    holder = [value]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]


def on_main(action: Callable[[], object], group: Group, errors: tuple[type[Exception], ...]) -> None:
    """Run `action` on rank 0 alone; any of `errors` it raises is raised on every process, none of which waits."""
    error = None
    if group.is_main:
        try:
            action()
        except errors as raised:
            error = raised
    error = broadcast(error, group)
    if error is not None:
        raise error


def barrier(group: Group) -> None:
    """Wait until every process gets here (after rank 0 wrote a checkpoint, before anyone goes on)."""
    if group.active:
        dist.barrier()
