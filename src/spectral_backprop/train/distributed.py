"""Data-parallel training with ``torch.distributed`` (gloo on CPU, NCCL on GPU).

Launched by ``torchrun --nproc_per_node=N -m spectral_backprop train ...``, which sets
``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``. Without them the run is a single process
and every helper here is a no-op.

Every process draws the same *global* batch from the same seeded generator and keeps its
own contiguous slice; gradients are then averaged over processes with one
``all_reduce``. Since each loss is a mean over equal slices, the averaged gradient is
exactly the gradient of the global-batch loss, so an N-process run follows the
1-process run with the same global batch up to floating-point summation order.

Why not ``DistributedDataParallel``: the entropy term evaluates the generator inside
forward-mode Jacobian-vector products several times per step, outside the single
forward/backward pairing DDP's reducer expects; an explicit gradient all-reduce is
exact, simple, and has nothing to get wrong for models this size.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor


@dataclass
class Distributed:
    """Rank, world size and device of this process."""

    rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    def shard(self, batch: Tensor) -> Tensor:
        """This process's contiguous slice of a global batch (equal slices required)."""
        if not self.enabled:
            return batch
        n = batch.shape[0]
        if n % self.world_size:
            raise ValueError(f"global batch {n} is not divisible by {self.world_size} processes")
        per = n // self.world_size
        return batch[self.rank * per : (self.rank + 1) * per]

    def average_gradients(self, params: Iterable[torch.nn.Parameter]) -> None:
        """Replace each ``.grad`` by its mean over processes (one flat all-reduce)."""
        if not self.enabled:
            return
        params = [p for p in params if p.grad is not None]
        flat = torch.cat([p.grad.reshape(-1) for p in params])
        dist.all_reduce(flat)
        flat /= self.world_size
        offset = 0
        for p in params:
            n = p.grad.numel()
            p.grad.copy_(flat[offset : offset + n].view_as(p.grad))
            offset += n

    def broadcast_parameters(self, module: torch.nn.Module) -> None:
        """Make every process start from rank 0's parameters."""
        if self.enabled:
            for t in module.state_dict().values():
                dist.broadcast(t, src=0)

    def mean(self, values: dict[str, float]) -> dict[str, float]:
        """Average scalar metrics over processes."""
        if not self.enabled or not values:
            return values
        t = torch.tensor(list(values.values()), dtype=torch.float64, device=self.device)
        dist.all_reduce(t)
        return dict(zip(values, (t / self.world_size).tolist(), strict=True))

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()


def setup_distributed(device: str = "auto") -> Distributed:
    """Join the process group if launched by ``torchrun``; pick this process's device.

    Args:
        device: ``auto`` (CUDA if available, else CPU), ``cpu`` or ``cuda``.
    """
    if device not in ("auto", "cpu", "cuda"):
        raise ValueError(f"device must be auto, cpu or cuda, got {device!r}")
    use_cuda = torch.cuda.is_available() if device == "auto" else device == "cuda"
    if use_cuda and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' requested but CUDA is not available")
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        return Distributed(0, 1, torch.device("cuda" if use_cuda else "cpu"))
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if use_cuda:
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    dev = torch.device(f"cuda:{local_rank}" if use_cuda else "cpu")
    return Distributed(rank, world_size, dev)


def teardown_distributed() -> None:
    """Destroy the process group if this process joined one."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
