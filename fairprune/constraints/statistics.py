"""Per-group statistics of a batch and of the dense reference, as tensors on the device."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .distributed import is_distributed, sum_over_processes

__all__ = ["BatchGroupStats", "DenseReference", "batch_group_stats", "weighted_overall"]


@dataclass
class BatchGroupStats:
    """Group sums of one batch. ``group_loss`` stays differentiable."""

    counts: torch.Tensor  # (G,) samples of each group in the batch
    present: torch.Tensor  # (G,) bool
    group_loss: torch.Tensor  # (G,) mean loss per group (0 where absent)
    group_accuracy: torch.Tensor  # (G,) batch accuracy per group (0 where absent)
    loss: torch.Tensor  # scalar batch mean loss


def batch_group_stats(
    per_sample_loss: torch.Tensor, correct: torch.Tensor, group_ids: torch.Tensor, num_groups: int
) -> BatchGroupStats:
    """Group means of per-sample losses and correctness with ``index_add`` (no host sync)."""
    zeros = per_sample_loss.new_zeros(num_groups)
    counts = zeros.detach().index_add(0, group_ids, torch.ones_like(per_sample_loss.detach()))
    safe = counts.clamp(min=1)
    group_loss = zeros.index_add(0, group_ids, per_sample_loss) / safe
    group_accuracy = zeros.detach().index_add(0, group_ids, correct.to(zeros.dtype)) / safe
    return BatchGroupStats(counts, counts > 0, group_loss, group_accuracy, per_sample_loss.mean())


def weighted_overall(values: torch.Tensor, weights: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``Σ w_g v_g / Σ w_g`` over the groups in ``mask`` (0 when the mask is empty)."""
    w = weights * mask.to(weights.dtype)
    return (w * values).sum() / w.sum().clamp(min=torch.finfo(w.dtype).tiny)


class DenseReference(nn.Module):
    """Constants of the dense model on the training set, computed once per fit.

    Buffers ``group_accuracy``, ``group_loss`` and ``group_frequency`` (fraction of training
    samples in each group), plus the sample-weighted overall ``accuracy`` and ``loss``.
    """

    def __init__(self, num_groups: int, device: torch.device | str | None = None) -> None:
        super().__init__()
        self.num_groups = num_groups
        for name in ("group_accuracy", "group_loss", "group_frequency"):
            self.register_buffer(name, torch.zeros(num_groups, device=device))
        self.register_buffer("accuracy", torch.zeros((), device=device))
        self.register_buffer("loss", torch.zeros((), device=device))

    @torch.no_grad()
    def fill(self, per_sample_loss: torch.Tensor, correct: torch.Tensor, group_ids: torch.Tensor):
        """Set the constants from the dense model's per-sample losses and correctness."""
        if is_distributed():
            return self._fill_pooled(per_sample_loss.float(), correct.float(), group_ids)
        stats = batch_group_stats(per_sample_loss.float(), correct, group_ids, self.num_groups)
        self.group_accuracy.copy_(stats.group_accuracy)
        self.group_loss.copy_(stats.group_loss)
        self.group_frequency.copy_(stats.counts / stats.counts.sum())
        self.accuracy.copy_(correct.float().mean())
        self.loss.copy_(per_sample_loss.float().mean())
        return self

    def _fill_pooled(self, loss: torch.Tensor, correct: torch.Tensor, group_ids: torch.Tensor):
        """``fill`` when every data-parallel process evaluated its own shard of the data."""
        zeros = loss.new_zeros(self.num_groups)
        loss_sum, correct_sum, counts = sum_over_processes(
            zeros.index_add(0, group_ids, loss),
            zeros.index_add(0, group_ids, correct),
            zeros.index_add(0, group_ids, torch.ones_like(loss)),
        )
        safe = counts.clamp(min=1)
        self.group_accuracy.copy_(correct_sum / safe)
        self.group_loss.copy_(loss_sum / safe)
        self.group_frequency.copy_(counts / counts.sum())
        self.accuracy.copy_(correct_sum.sum() / counts.sum())
        self.loss.copy_(loss_sum.sum() / counts.sum())
        return self
