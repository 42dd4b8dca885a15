"""Per-group statistics combined across data-parallel processes.

Under data-parallel training (``torch.distributed``: DDP, skorch's ``AccelerateMixin``) every
process sees its own shard of each batch, so its replay buffers and batch estimates differ
from the other processes'. The gradient of the weights is averaged by DDP, but the dual step
is taken by each process from its own estimates: unless they are combined, the multipliers
drift apart and the processes no longer optimise the same Lagrangian. Here the per-group
*sums* and *counts* behind every estimate are summed over the processes with one
``all_reduce`` (on the device: no host synchronisation), so every process derives the same
group means, the same trusted set and the same dual step.

Outside ``torch.distributed`` (or with one process) everything is the identity and costs
nothing.
"""

from __future__ import annotations

import torch
import torch.distributed as dist

__all__ = ["is_distributed", "pooled_group_means", "sum_over_processes", "world_size"]


def world_size() -> int:
    """Number of processes of the default process group (1 when not distributed)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return 1


def is_distributed() -> bool:
    """Whether statistics must be combined across processes."""
    return world_size() > 1


def sum_over_processes(*tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Element-wise sums over all processes of same-shaped float tensors, in one collective.

    Parameters
    ----------
    *tensors : torch.Tensor
        Tensors of one shape (per-group sums, counts, flags), on this process's device.

    Returns
    -------
    tuple of torch.Tensor
        The summed tensors (new tensors; the inputs are not modified). Without
        ``torch.distributed`` the inputs are returned as they are.
    """
    if not is_distributed():
        return tensors
    dtype = torch.promote_types(torch.float32, tensors[0].dtype)
    stacked = torch.stack([t.detach().to(dtype) for t in tensors])
    dist.all_reduce(stacked, op=dist.ReduceOp.SUM)
    return tuple(stacked.unbind(0))


def pooled_group_means(
    sums: torch.Tensor, counts: torch.Tensor, ready: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-group means of values pooled over all processes.

    Parameters
    ----------
    sums, counts : torch.Tensor of shape (G,)
        This process's per-group sums of values and numbers of values.
    ready : torch.Tensor of shape (G,), optional
        This process's trust flags (full replay buffers). A group is trusted when it is ready
        on *every* process; without flags, when any process has values of it.

    Returns
    -------
    means, trusted, counts : torch.Tensor
        Pooled means (0 where no values), trust flags and pooled counts, equal on every process.
    """
    flags = counts > 0 if ready is None else ready
    sums, counts, flags = sum_over_processes(sums, counts.to(sums.dtype), flags.to(sums.dtype))
    trusted = counts > 0 if ready is None else flags >= world_size()
    return sums / counts.clamp(min=1), trusted, counts
