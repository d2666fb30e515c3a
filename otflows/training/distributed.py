r"""Data parallelism on PyTorch's own engine: each process takes a shard of every minibatch.

Under ``torchrun`` (after :func:`init_from_environment`, or any initialised
``torch.distributed`` process group) the training loops of :func:`otflows.fit_flow` and
:meth:`otflows.BrenierMap.fit` draw the *same* minibatch on every process (one seed, broadcast
from rank 0), each process computes the loss of its shard ``[B / W, D]`` of it, and
``DistributedDataParallel`` averages the gradients. A loss that is a mean over samples is
scaled so that this average is exactly the gradient of the whole minibatch's loss; a loss that
is not (the Sinkhorn divergence) gathers the shards' outputs, with gradients, into the whole
batch (:func:`gather`). So ``W`` processes follow the single-process run step by step, up to
floating-point summation order. Without a process group every function here is the identity.

Launch (gloo on CPU, nccl on GPU)::

    torchrun --standalone --nproc-per-node 2 --no-python otflows fit --data X.npy --out flow.pt
"""

from __future__ import annotations

import os
from collections.abc import Callable

import torch
import torch.distributed as dist
import torch.distributed.nn.functional as distributed_functional
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from otflows.validation import as_device

__all__ = [
    "average",
    "broadcast_seed",
    "from_main",
    "gather",
    "init_from_environment",
    "is_main",
    "parallel",
    "shard",
    "world",
]


def world() -> tuple[int, int]:
    r"""``(rank, world_size)`` of this process; ``(0, 1)`` without a process group.

    Example:
        >>> world()
        (0, 1)
    """
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_main() -> bool:
    r"""Whether this process is rank 0 (the one that shows progress and writes files).

    Example:
        >>> is_main()
        True
    """
    return world()[0] == 0


def init_from_environment(device: str | torch.device = "cpu") -> torch.device:
    r"""Joins the process group that ``torchrun`` describes in the environment (``RANK``,
    ``WORLD_SIZE``, ``LOCAL_RANK``…): gloo on CPU, nccl on CUDA, each process on GPU
    ``LOCAL_RANK``. Outside ``torchrun`` (no ``WORLD_SIZE``) it does nothing.

    Arguments:
        device: ``"cpu"`` or ``"cuda"``.

    Returns:
        This process's device.

    Example:
        >>> init_from_environment("cpu")
        device(type='cpu')
    """
    device = as_device(device)
    if "WORLD_SIZE" not in os.environ or dist.is_initialized():
        return device
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return device


def broadcast_seed(seed: int | None) -> int:
    r"""A seed shared by all processes: ``seed`` itself, or when ``None`` a random one drawn on
    rank 0 and broadcast (so every process draws the same minibatches).

    Example:
        >>> broadcast_seed(7)
        7
    """
    if seed is not None:
        return seed
    value = torch.randint(2**62, (1,))
    return int((_from_rank0(value) if world()[1] > 1 else value).item())


def from_main(value: float) -> float:
    r"""Rank 0's ``value`` on every process (``value`` itself without a process group), e.g.
    its clock, so that decisions taken from it agree.

    Example:
        >>> from_main(1.5)
        1.5
    """
    if world()[1] == 1:
        return value
    return float(_from_rank0(torch.tensor([value], dtype=torch.float64)).item())


def _from_rank0(tensor: Tensor) -> Tensor:
    r"""``tensor`` as rank 0 holds it, on every process (on the backend's device)."""
    tensor = tensor.to("cuda" if dist.get_backend() == "nccl" else "cpu")
    dist.broadcast(tensor, src=0)
    return tensor


def shard(batch: Tensor) -> Tensor:
    r"""This process's part of a minibatch ``[B, ...] -> [B_r, ...]`` (contiguous, sizes
    differing by at most one; the whole batch without a process group).

    Example:
        >>> shard(torch.arange(4))
        tensor([0, 1, 2, 3])
    """
    rank, size = world()
    return batch if size == 1 else batch.tensor_split(size)[rank]


def gather(shard_outputs: Tensor) -> Tensor:
    r"""The shards' outputs ``[B / W, ...]`` concatenated into the whole batch ``[B, ...]`` on
    every process, differentiably: the gradient reaching each shard is the sum over processes,
    which ``DistributedDataParallel``'s average turns into the whole batch's gradient. Shards
    must have equal sizes.

    Example:
        >>> gather(torch.ones(2, 3)).shape
        torch.Size([2, 3])
    """
    if world()[1] == 1:
        return shard_outputs
    return torch.cat(distributed_functional.all_gather(shard_outputs))


def average(value: Tensor) -> float:
    r"""The mean over processes of a 0-dim tensor, as a float (the value itself without a
    process group).

    Example:
        >>> average(torch.tensor(2.0))
        2.0
    """
    value = value.detach()
    size = world()[1]
    if size > 1:
        value = value.clone()
        dist.all_reduce(value)
        value /= size
    return value.item()


class _Loss(nn.Module):
    r"""A loss as the ``forward`` of a module that owns the trained parameters (what
    ``DistributedDataParallel`` wraps)."""

    def __init__(self, model: nn.Module, loss: Callable[..., Tensor]):
        super().__init__()
        self.model = model
        self.loss = loss

    def forward(self, *batch: Tensor) -> Tensor:
        return self.loss(*batch)


def parallel(model: nn.Module, loss: Callable[..., Tensor]) -> Callable[..., Tensor]:
    r"""``loss`` (a function of a shard's tensors that uses ``model``'s parameters), wrapped in
    ``DistributedDataParallel`` so that each backward pass averages the gradients over processes
    (the parameters are first broadcast from rank 0). Without a process group, ``loss`` itself.

    Example:
        >>> model = nn.Linear(2, 1)
        >>> loss = parallel(model, lambda x: model(x).square().mean())
        >>> loss(torch.ones(3, 2)).shape
        torch.Size([])
    """
    if world()[1] == 1:
        return loss
    device = next(model.parameters()).device
    return DistributedDataParallel(
        _Loss(model, loss), device_ids=[device] if device.type == "cuda" else None
    )
