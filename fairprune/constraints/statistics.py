"""Per-group statistics of a batch and of the dense reference, as tensors on the device."""

from __future__ import annotations

from functools import cached_property

import torch
from torch import nn

from .distributed import is_distributed, sum_over_processes

__all__ = ["BatchGroupStats", "DenseReference", "batch_group_stats", "excess_gaps",
           "flat_cells", "group_counts", "promoted_dot", "weighted_overall"]


def flat_cells(group_ids: torch.Tensor, *values: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Group ids and per-sample values with one entry per (sample, group) pair.

    Intersectional groups give one id per sample (``(B,)``) and pass through unchanged.
    Marginal groups give one id per attribute (``(B, A)``): every sample then counts once in
    each of its ``A`` groups, so ids are flattened and each value repeated ``A`` times.
    """
    if group_ids.dim() == 1:
        return (group_ids, *values)
    width = group_ids.shape[1]
    return (group_ids.reshape(-1),
            *(v.unsqueeze(1).expand(-1, width).reshape(-1) for v in values))


def group_counts(group_ids: torch.Tensor, num_groups: int, dtype: torch.dtype) -> torch.Tensor:
    """``(num_groups,)`` samples of every group, on the ids' device, without host sync
    (``index_add``, not ``bincount``: on a GPU, bincount reads the largest id on the host)."""
    ones = torch.ones_like(group_ids, dtype=dtype)
    return ones.new_zeros(num_groups).index_add_(0, group_ids, ones)


class BatchGroupStats:
    """Group sums of one batch, each computed on first use (a step pays only for what its
    problem reads). ``group_loss`` and ``loss`` stay differentiable when the per-sample losses
    are.

    Attributes
    ----------
    counts : torch.Tensor
        ``(G,)`` samples of each group in the batch (float).
    present : torch.Tensor
        ``(G,)`` bool, groups with at least one sample.
    group_loss, group_accuracy : torch.Tensor
        ``(G,)`` mean loss and accuracy per group (0 where absent).
    loss : torch.Tensor
        Scalar batch mean loss.
    """

    def __init__(self, per_sample_loss: torch.Tensor, correct: torch.Tensor,
                 group_ids: torch.Tensor, num_groups: int) -> None:
        #: groups per sample: 1, or the number of attributes of marginal groups
        self.cells_per_row = 1 if group_ids.dim() == 1 else group_ids.shape[1]
        group_ids, per_sample_loss, correct = flat_cells(group_ids, per_sample_loss, correct)
        self.per_sample_loss, self.correct, self.group_ids = per_sample_loss, correct, group_ids
        self.num_groups = num_groups

    @cached_property
    def counts(self) -> torch.Tensor:
        # at least float32, exact for any batch (half precision is not beyond 2048)
        dtype = at_least_float32(self.per_sample_loss.dtype)
        return group_counts(self.group_ids, self.num_groups, dtype)

    @cached_property
    def present(self) -> torch.Tensor:
        return self.counts > 0

    @cached_property
    def safe_counts(self) -> torch.Tensor:
        """``counts`` clipped at 1, for divisions (absent groups then give 0)."""
        return self.counts.clamp(min=1)

    def _group_means(self, values: torch.Tensor) -> torch.Tensor:
        values = values.to(self.counts.dtype)  # sums of half-precision losses in float32
        zeros = values.new_zeros(self.num_groups)
        return zeros.index_add(0, self.group_ids, values) / self.safe_counts

    @cached_property
    def group_loss(self) -> torch.Tensor:
        return self._group_means(self.per_sample_loss)

    @cached_property
    def group_accuracy(self) -> torch.Tensor:
        return self._group_means(self.correct)

    @cached_property
    def loss(self) -> torch.Tensor:
        return self.per_sample_loss.mean()


def batch_group_stats(
    per_sample_loss: torch.Tensor, correct: torch.Tensor, group_ids: torch.Tensor, num_groups: int
) -> BatchGroupStats:
    """Group means of per-sample losses and correctness (``index_add``, no host sync),
    computed lazily."""
    return BatchGroupStats(per_sample_loss, correct, group_ids, num_groups)


def at_least_float32(dtype: torch.dtype) -> torch.dtype:
    """``dtype`` when it is float32 or wider, else float32 (plain Python: no dispatcher call,
    which ``torch.promote_types`` makes on the training step's hot path)."""
    return dtype if dtype in (torch.float32, torch.float64) else torch.float32


def promoted_dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``torch.dot`` of two vectors after promoting them to a common dtype (``torch.dot``
    itself refuses mixed dtypes). Same-dtype vectors, the usual case, go straight through."""
    if a.dtype != b.dtype:
        dtype = torch.promote_types(a.dtype, b.dtype)
        a, b = a.to(dtype), b.to(dtype)
    return torch.dot(a, b)


def weighted_overall(values: torch.Tensor, weights: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``Σ w_g v_g / Σ w_g`` over the groups in ``mask`` (0 when the mask is empty)."""
    w = torch.where(mask, weights, 0.0)
    return promoted_dot(w, values) / w.sum().clamp(min=torch.finfo(w.dtype).tiny)


def excess_gaps(gaps: torch.Tensor, weights: torch.Tensor, mask: torch.Tensor,
                families: torch.Tensor | None = None) -> torch.Tensor:
    """``ψ_g = Δ_g − Δ`` on the device, with ``Δ`` the ``weights``-weighted mean of ``gaps``
    over the groups in ``mask`` (no host sync). The torch twin of
    :func:`fairprune.metrics.excess_from_gaps`, which reports use (tested equal).

    With ``families`` (one family index per entry, :mod:`fairprune.cells`), each entry is
    compared with the weighted mean of its own family instead (a TPR cell with the drop over
    all positives)."""
    if families is None:
        return gaps - weighted_overall(gaps, weights, mask)
    w = torch.where(mask, weights, 0.0).to(gaps.dtype)
    n_families = families.numel()  # at most one family per entry: no host read of the max
    sums = gaps.new_zeros(n_families).index_add_(0, families, w * gaps)
    totals = gaps.new_zeros(n_families).index_add_(0, families, w)
    overall = sums / totals.clamp(min=torch.finfo(gaps.dtype).tiny)
    return gaps - overall[families]


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
        group_ids, per_sample_loss, correct = flat_cells(group_ids, per_sample_loss, correct)
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
            group_counts(group_ids, self.num_groups, loss.dtype),
        )
        safe = counts.clamp(min=1)
        self.group_accuracy.copy_(correct_sum / safe)
        self.group_loss.copy_(loss_sum / safe)
        self.group_frequency.copy_(counts / counts.sum())
        self.accuracy.copy_(correct_sum.sum() / counts.sum())
        self.loss.copy_(loss_sum.sum() / counts.sum())
        return self
