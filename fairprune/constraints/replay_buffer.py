"""Per-group replay buffers of the last ``size`` per-sample values, on the model's device."""

from __future__ import annotations

import torch
from torch import nn

from .statistics import flat_cells, group_counts

__all__ = ["ReplayBuffer"]


class ReplayBuffer(nn.Module):
    """For every group, the last ``size`` per-sample values seen in training.

    One ``(num_groups, size)`` tensor of values plus per-group write positions and counts, all
    buffers of this module (they move with ``.to(device)`` and are in ``state_dict``). Updates
    take a whole batch at once with vectorised ops: no Python loop over groups or samples and no
    ``.item()``, ``.tolist()`` or ``.cpu()``, so no host-device synchronisation.

    Parameters
    ----------
    num_groups : int
        Number of groups ``G``.
    size : int
        Capacity ``k`` per group (the paper uses 40).
    device : torch.device or str, optional
        Where the buffers live.
    min_count : int, optional
        A group is *ready* (its mean is trusted) once it holds at least this many values.
        Defaults to ``size``: only full buffers count, as in the paper. A group with fewer
        samples than that in the whole training set would never be ready:
        :meth:`limit_to_group_sizes_` lowers its threshold to its size.

    Examples
    --------
    >>> buf = ReplayBuffer(num_groups=2, size=2)
    >>> buf.update(torch.tensor([0, 0, 0, 1]), torch.tensor([1.0, 0.0, 0.0, 1.0]))
    >>> buf.means().tolist(), buf.ready().tolist()
    ([0.0, 1.0], [True, False])
    """

    def __init__(
        self,
        num_groups: int,
        size: int,
        device: torch.device | str | None = None,
        min_count: int | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(num_groups, int) or num_groups < 1:
            raise ValueError(f"num_groups must be an int >= 1; got {num_groups!r}.")
        if not isinstance(size, int) or size < 1:
            raise ValueError(f"The replay buffer size must be an int >= 1; got {size!r}.")
        min_count = size if min_count is None else min_count
        if not isinstance(min_count, int) or not 1 <= min_count <= size:
            raise ValueError(f"min_count must be an int in [1, size={size}]; got {min_count!r}.")
        self.num_groups, self.size, self.min_count = num_groups, size, min_count
        # one extra scratch row receives the samples a batch overflows (discarded)
        self.register_buffer("storage", torch.zeros(num_groups + 1, size, device=device))
        self.register_buffer("positions", torch.zeros(num_groups, dtype=torch.long, device=device))
        self.register_buffer("counts", torch.zeros(num_groups, dtype=torch.long, device=device))
        self.register_buffer(
            "required", torch.full((num_groups,), min_count, dtype=torch.long, device=device))

    @torch.no_grad()
    def limit_to_group_sizes_(self, group_sizes: torch.Tensor) -> None:
        """Groups with fewer training samples than ``min_count`` are ready once they hold all
        of them (at least one), so that small groups are constrained too."""
        sizes = group_sizes.to(self.required.device, torch.long).clamp(min=1)
        self.required.copy_(torch.minimum(self.required, sizes))

    def update(self, group_ids: torch.Tensor, values: torch.Tensor,
               batch_counts: torch.Tensor | None = None) -> None:
        """Append a batch of per-sample ``values`` to the buffers of their groups.

        When a batch holds more than ``size`` samples of a group, the newest ``size`` (last in
        batch order) are kept, as a ``collections.deque(maxlen=size)`` would. The batch is
        written in group order (a stable sort), which keeps the batch order within a group.
        ``batch_counts``, the ``(num_groups,)`` samples of each group in the batch, saves
        counting them again when the caller has them.
        """
        group_ids, values = flat_cells(group_ids, values)
        group_ids = group_ids.to(self.storage.device, torch.long)
        if values.requires_grad:
            values = values.detach()
        values = values.to(self.storage.device, self.storage.dtype)
        if batch_counts is None:
            batch_counts = group_counts(group_ids, self.num_groups, torch.long)
        else:
            batch_counts = batch_counts.to(self.counts.device, torch.long)
        sorted_ids, order = torch.sort(group_ids, stable=True)
        # a group's samples occupy sorted positions [end - count, end)
        ends = batch_counts.cumsum(0)
        sorted_position = torch.arange(sorted_ids.numel(), device=sorted_ids.device)
        # slot: the group's write position plus the sample's rank within its group
        slot = (sorted_position + (self.positions - ends + batch_counts)[sorted_ids]).remainder_(
            self.size)
        # a sample survives when fewer than `size` later samples of its group follow it;
        # the others go to the scratch row
        keep = sorted_position >= (ends - self.size)[sorted_ids]
        rows = torch.where(keep, sorted_ids, self.num_groups)
        self.storage.index_put_((rows, slot), values[order])
        self.positions.add_(batch_counts).remainder_(self.size)
        self.counts.add_(batch_counts).clamp_(max=self.size)

    @property
    def values(self) -> torch.Tensor:
        """The ``(num_groups, size)`` buffer contents (slot order, not time order)."""
        return self.storage[: self.num_groups]

    def means(self) -> torch.Tensor:
        """Mean of every group's buffered values (0 for an empty buffer)."""
        return self.values.sum(dim=1) / self.counts.clamp(min=1)

    def ready(self) -> torch.Tensor:
        """Boolean mask of the groups holding at least ``min_count`` values (or all of their
        training samples, see :meth:`limit_to_group_sizes_`)."""
        return self.counts >= self.required

    def ordered(self, group: int) -> torch.Tensor:
        """Values of one group, oldest first (for inspection and tests; syncs the host)."""
        count, position = int(self.counts[group]), int(self.positions[group])
        row = self.values[group]
        if count < self.size:
            return row[:count].clone()
        return torch.roll(row, shifts=-position)
