"""torchrun / DistributedDataParallel glue.

``torchrun --nproc_per_node K dwstft train ...`` sets ``RANK``, ``LOCAL_RANK`` and
``WORLD_SIZE``; :func:`setup` reads them, joins the process group (NCCL on CUDA, gloo on
CPU) and picks this rank's device. Without them (or with ``WORLD_SIZE=1``) it returns a
single-process context and nothing distributed is touched.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from dwstft.device import resolve_device


@dataclass(frozen=True)
class DistContext:
    """Where this process sits: ``rank`` of ``world_size`` processes, on ``device``."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        """Rank 0: the only process that writes files and prints progress."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        """Whether a process group with more than one process is active."""
        return self.world_size > 1


def setup(device: str | None = None) -> DistContext:
    """Join the torchrun process group if the environment says so; pick the device.

    ``device`` (e.g. "cpu", "cuda", "cuda:1"; default: :func:`default_device`) chooses the
    device type; under torchrun a CUDA rank uses ``cuda:LOCAL_RANK``.

    Raises:
        DeviceUnavailableError: ``device`` names no device this machine has.
    """
    requested = resolve_device(device)
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistContext(0, 1, 0, requested)
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", rank))
    if requested.type == "cuda":
        requested = torch.device("cuda", local_rank)
        torch.cuda.set_device(requested)
    if not dist.is_initialized():
        backend = "nccl" if requested.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend)
    return DistContext(rank, world_size, local_rank, requested)


def teardown(ctx: DistContext) -> None:
    """Leave the process group (no-op for a single process)."""
    if ctx.distributed and dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_sum(tensor: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    """Sum ``tensor`` over all ranks in place and return it (identity for one process)."""
    if ctx.distributed:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def any_rank(flag: bool, ctx: DistContext) -> bool:
    """Whether ``flag`` is true on any rank (a collective: every rank must call it)."""
    if not ctx.distributed:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=ctx.device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def barrier(ctx: DistContext) -> None:
    """Wait for every rank (no-op for a single process)."""
    if ctx.distributed:
        dist.barrier()
