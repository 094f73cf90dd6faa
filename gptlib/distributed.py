"""Data-parallel training over several processes, on torch.distributed and DistributedDataParallel.

Launch the same command once per process with torchrun, e.g. two processes on one CPU machine:

    torchrun --standalone --nproc_per_node 2 -m gptlib train --max-iters 2000

torchrun sets RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT in each
process; `setup` reads them and joins the process group (gloo on CPUs, nccl on
CUDA GPUs). Every process holds a full copy of the model. Each step, all of
them draw the same global batch from the shared seed and each one trains on
its own equal slice of the rows (`shard`); DDP averages the gradients during
backward, so every copy takes the same optimizer step, the very step one
process would take on the whole global batch. Only rank 0 prints and writes
checkpoints (`is_main`).

Without torchrun (no RANK in the environment) everything here is a no-op and
training runs in one process, as it always does in the course.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist
import torch.nn as nn
from torch.nn.parallel import DistributedDataParallel

from gptlib.device import pick_device

_TORCHRUN_VARS = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands: its rank among world_size processes, and the device it trains on."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")
    backend: str | None = None  # None: a single process, no process group

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """True for the one process (rank 0) that prints and writes files."""
        return self.rank == 0


def launched_by_torchrun() -> bool:
    """True when this process was started by torchrun (RANK and WORLD_SIZE are set)."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def _env_int(name: str) -> int:
    value = os.environ.get(name)
    if value is None or not value.strip().lstrip("-").isdigit():
        raise ValueError(
            f"environment variable {name}={value!r} is not a whole number; start the processes with "
            "torchrun (which sets RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT)."
        )
    return int(value)


def setup(device: str | torch.device = "cpu", timeout_s: float = 300.0) -> DistInfo:
    """Join the process group if torchrun started this process; return this process's DistInfo.

    `device` is the device kind asked for ("cpu", "cuda", "auto", ...). Under
    torchrun a CUDA run gives each process the GPU of its LOCAL_RANK and uses the
    nccl backend; a CPU run uses gloo. Outside torchrun: DistInfo for one process.
    """
    dev = pick_device(device)
    if not launched_by_torchrun():
        return DistInfo(device=dev)
    missing = [v for v in _TORCHRUN_VARS if v not in os.environ]
    if missing:
        raise ValueError(
            f"RANK and WORLD_SIZE are set but {', '.join(missing)} are not: start the processes with torchrun."
        )
    rank, local_rank, world_size = _env_int("RANK"), _env_int("LOCAL_RANK"), _env_int("WORLD_SIZE")
    if not 0 <= rank < world_size:
        raise ValueError(f"RANK={rank} must be in 0..WORLD_SIZE-1 (WORLD_SIZE={world_size}).")
    if dev.type == "mps":
        raise ValueError("multi-process training runs on CPUs (gloo) or CUDA GPUs (nccl), not on MPS.")
    if dev.type == "cuda":
        count = torch.cuda.device_count()
        if local_rank >= count:
            raise ValueError(
                f"process with LOCAL_RANK={local_rank} has no GPU of its own: this machine has {count}. "
                f"Use --nproc_per_node {count} or fewer."
            )
        dev = torch.device("cuda", local_rank)
        torch.cuda.set_device(dev)
        backend = "nccl"
    else:
        backend = "gloo"
    if not dist.is_initialized():
        dist.init_process_group(
            backend=backend,
            init_method="env://",
            rank=rank,
            world_size=world_size,
            timeout=timedelta(seconds=timeout_s),
        )
    return DistInfo(rank=rank, local_rank=local_rank, world_size=world_size, device=dev, backend=backend)


def teardown() -> None:
    """Leave the process group (a no-op in a single process)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def current() -> DistInfo:
    """This process's DistInfo from the process group already joined (one process if none)."""
    if not (dist.is_available() and dist.is_initialized()):
        return DistInfo()
    backend = dist.get_backend()
    if backend == "nccl":
        device = torch.device("cuda", torch.cuda.current_device())
    else:
        device = torch.device("cpu")
    local_rank = int(os.environ.get("LOCAL_RANK", dist.get_rank()))
    return DistInfo(dist.get_rank(), local_rank, dist.get_world_size(), device, backend)


def check_batch_size(batch_size: int, info: DistInfo) -> None:
    """The global batch must split into equal slices, one per process."""
    if batch_size % info.world_size != 0:
        lower = batch_size // info.world_size * info.world_size
        raise ValueError(
            f"batch_size={batch_size} does not split evenly over {info.world_size} processes: each process "
            f"trains on batch_size / world_size rows. Use a multiple of {info.world_size}, e.g. "
            f"{lower or info.world_size} or {lower + info.world_size}."
        )


def shard(batch: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """This process's slice of the rows of a global batch (B, ...) -> (B / world_size, ...)."""
    if not info.is_distributed:
        return batch
    check_batch_size(batch.size(0), info)
    per = batch.size(0) // info.world_size
    return batch[info.rank * per : (info.rank + 1) * per]


def wrap(model: nn.Module, info: DistInfo) -> nn.Module:
    """The model wrapped in DistributedDataParallel when there are several processes; else the model."""
    if not info.is_distributed:
        return model
    device_ids = [info.device.index] if info.device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=device_ids)


def mean_across(value: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """The mean of a tensor over all processes (the tensor itself in one process)."""
    if not info.is_distributed:
        return value
    value = value.detach().clone()
    dist.all_reduce(value, op=dist.ReduceOp.SUM)
    return value / info.world_size


def rank0_choice(options: list, choice: object, info: DistInfo) -> object:
    """Rank 0's `choice` among `options`, in every process (a choice each process made by measuring may differ)."""
    if not info.is_distributed:
        return choice
    index = torch.tensor([options.index(choice)], device=info.device)
    dist.broadcast(index, src=0)
    return options[int(index.item())]


def barrier(info: DistInfo) -> None:
    """Wait until every process gets here (nothing to wait for in one process)."""
    if info.is_distributed:
        dist.barrier()


def parameters_in_sync(model: nn.Module, info: DistInfo) -> bool:
    """True when every process holds exactly the same parameters (compares rank 0's copy with each)."""
    if not info.is_distributed:
        return True
    flat = torch.cat([p.detach().reshape(-1) for p in model.parameters()]).to(info.device)
    reference = flat.clone()
    dist.broadcast(reference, src=0)
    same = torch.tensor([1.0 if torch.equal(flat, reference) else 0.0], device=info.device)
    dist.all_reduce(same, op=dist.ReduceOp.MIN)
    return bool(same.item() == 1.0)
