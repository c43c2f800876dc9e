"""Small helpers for DistributedDataParallel runs; every one is a no-op in a single process.

A run is distributed when ``torch.distributed`` has been initialised (``src_train/_common.py`` does
it from torchrun's environment: NCCL on GPUs, gloo on CPUs). Only rank 0 writes files; the others
wait at a barrier so nobody reads a file before it exists.
"""

from __future__ import annotations

import hashlib
import os

import torch
import torch.distributed as dist
from torch import nn


def is_distributed() -> bool:
    """True when torch.distributed is initialised with more than one process."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def is_main_process() -> bool:
    """True on rank 0 (and in a single process): the one that writes files and logs."""
    return rank() == 0


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def local_device(device: torch.device) -> torch.device:
    """Under torchrun on GPUs each process uses ``cuda:LOCAL_RANK``; otherwise ``device`` as is."""
    if is_distributed() and device.type == "cuda" and device.index is None:
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return device


def any_rank(flag: bool, device: torch.device) -> bool:
    """True when ``flag`` is True on any rank (e.g. a cancel asked on one process stops all)."""
    if not is_distributed():
        return flag
    value = torch.tensor([1.0 if flag else 0.0], device=device if dist.get_backend() == "nccl" else "cpu")
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item() > 0)


def mean_over_ranks(value: float, device: torch.device) -> float:
    """The mean of a number over all ranks (the loss of the whole global batch)."""
    if not is_distributed():
        return value
    tensor = torch.tensor([value], dtype=torch.float64, device=device if dist.get_backend() == "nccl" else "cpu")
    dist.all_reduce(tensor)
    return float(tensor.item()) / dist.get_world_size()


def unwrap(model: nn.Module) -> nn.Module:
    """The network inside a DistributedDataParallel (or torch.compile) wrapper."""
    while True:
        if isinstance(model, nn.parallel.DistributedDataParallel):
            model = model.module
        elif hasattr(model, "_orig_mod"):
            model = model._orig_mod
        else:
            return model


def parameter_digest(model: nn.Module) -> str:
    """SHA-256 of every parameter and buffer (name, dtype, bytes): equal digests = identical weights."""
    digest = hashlib.sha256()
    for name, value in unwrap(model).state_dict().items():
        digest.update(name.encode())
        digest.update(str(value.dtype).encode())
        digest.update(value.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def gather_digests(model: nn.Module) -> list[str]:
    """Every rank's :func:`parameter_digest`, in rank order (one entry in a single process)."""
    mine = parameter_digest(model)
    if not is_distributed():
        return [mine]
    digests: list[str] = [""] * dist.get_world_size()
    dist.all_gather_object(digests, mine)
    return digests
