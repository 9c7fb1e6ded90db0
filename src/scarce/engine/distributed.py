"""PyTorch distributed, as launched by ``torchrun`` (env:// rendezvous).

One process without torchrun is a world of size 1 and never touches
``torch.distributed``, so the same code runs on a laptop and on a cluster.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device: str) -> DistInfo:
    """Join the process group when ``WORLD_SIZE`` > 1 (nccl on CUDA, gloo on CPU)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistInfo()
    info = DistInfo(
        rank=int(os.environ["RANK"]), world_size=world_size, local_rank=int(os.environ.get("LOCAL_RANK", "0"))
    )
    if not dist.is_initialized():
        backend = "nccl" if device.startswith("cuda") else "gloo"
        if backend == "nccl":
            check_gpu_per_process(info.local_rank, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
            torch.cuda.set_device(info.local_rank)
        dist.init_process_group(backend=backend)
    if "end_of_run" not in _GROUPS:  # new_group is collective: every rank creates it here, together
        _GROUPS["end_of_run"] = dist.new_group(backend="gloo", timeout=END_OF_RUN_TIMEOUT)
    return info


# At the end of a run the other ranks wait while rank 0 alone scores val and test and fits
# temperatures. On a large test set that outlasts NCCL's 10-minute default timeout, and a
# timed-out rank would make torchrun stop rank 0 mid-evaluation: they wait in a gloo group
# of their own with a long timeout (a crash of rank 0 still ends them through torchrun).
END_OF_RUN_TIMEOUT = timedelta(hours=24)
_GROUPS: dict = {}


def check_gpu_per_process(local_rank: int, local_processes: int) -> None:
    """Each process trains on its own GPU (``cuda:LOCAL_RANK``): more processes than GPUs would
    fail inside CUDA with an invalid-device error, so say it plainly first."""
    gpus = torch.cuda.device_count()
    if local_rank >= gpus:
        from scarce.errors import UserError

        raise UserError(
            f"torchrun started {local_processes} processes on this machine but it has {gpus} GPU"
            f"{'' if gpus == 1 else 's'}; start at most {gpus} (--nproc_per_node {gpus}), or set device=cpu"
        )


def resolve_device(name: str, info: DistInfo) -> torch.device:
    """The config's ``device`` for this process (``auto`` resolved; ``cuda`` -> its local rank's GPU)."""
    from scarce.engine.hardware import device_name

    name = device_name(name)
    if name.startswith("cuda:") and info.enabled:
        from scarce.errors import UserError

        raise UserError(  # every process on that one GPU: NCCL would fail on a duplicate GPU
            f"device={name} under torchrun: each process takes the GPU of its local rank; give device=cuda "
            f"(or auto), and choose the GPUs with CUDA_VISIBLE_DEVICES"
        )
    if name == "cuda" and info.enabled:
        name = f"cuda:{info.local_rank}"
    return torch.device(name)


def all_reduce_sum(tensor: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Sum a tensor over processes (a no-op for one process)."""
    if info.enabled:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def broadcast_buffers(module: torch.nn.Module, info: DistInfo) -> None:
    """Give every rank rank 0's buffers (BatchNorm statistics).

    DDP syncs gradients, not buffers: after the last training step each rank holds
    statistics of its own shard, so ranks would score (and save) different models.
    """
    if info.enabled:
        for buffer in module.buffers():
            dist.broadcast(buffer, src=0)


def wait_for_main(info: DistInfo) -> None:
    """The other ranks wait for rank 0 to finish the run (:data:`END_OF_RUN_TIMEOUT`)."""
    if info.enabled:
        dist.barrier(group=_GROUPS.get("end_of_run"))


def broadcast_object(value, info: DistInfo):
    """Rank 0's picklable ``value`` (e.g. a timed choice of speed settings), on every rank."""
    if not info.enabled:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def cleanup(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()  # every group, the end-of-run one too
        _GROUPS.clear()
