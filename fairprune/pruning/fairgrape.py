"""FairGRAPE's group-balanced importance and greedy selection (Lin, Kim & Joo, ECCV 2022).

Two steps, both on plain tensors (no skorch):

1. :func:`group_importance`: for every group ``k`` and every mini-batch, the gradient of the
   mean loss of that group's rows in the batch; a weight's importance for ``k`` is
   ``(|w| · |∂L_k/∂w|)²``, summed over the mini-batches. One forward pass per batch and one
   backward pass per group *present in the batch* (the graph is kept between them), so a batch
   of ``B`` rows costs at most ``min(G, B)`` backward passes, and the sums take ``G × P``
   numbers for ``P`` weights: what the algorithm needs.
2. :func:`greedy_keep_mask`: per layer, each group's target is its share of the layer's total
   importance; kept weights are chosen greedily, the group with the largest deficit (its share
   of the kept importance furthest below its target) adding its most important weights not yet
   kept. The greedy is vectorised: a round hands one group a block of weights, so a layer takes
   at most ``max_rounds`` rounds of tensor operations instead of one Python step per weight
   (blocks of one weight, FairGRAPE's own granularity, whenever the layer keeps at most
   ``max_rounds · para_batch`` weights).

Where this departs from the published code, on purpose: its importance routine calls
``optimizer.step()`` between groups and batches, so the weights move while importance is
measured; here the weights are never touched (BatchNorm's running statistics are restored
after the pass, the module's mode too). Its ``para_batch`` counter re-chooses the group every
``para_batch + 1`` picks; here a choice adds exactly ``para_batch`` weights.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence

import torch
from torch import nn

__all__ = ["greedy_keep_mask", "group_importance"]


def _flat_cells(group_ids: torch.Tensor, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows of several cells (marginal groups: one column per attribute) as one cell each."""
    if group_ids.dim() == 1:
        return group_ids, values
    width = group_ids.shape[1]
    return group_ids.reshape(-1), values.unsqueeze(1).expand(-1, width).reshape(-1)


def group_importance(
    module: nn.Module,
    weight_names: Sequence[str],
    batches: Iterable[tuple],
    n_groups: int,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    forward: Callable[[nn.Module, object], torch.Tensor],
    *,
    train_mode: bool = True,
) -> dict[str, torch.Tensor]:
    """FairGRAPE's importance of every weight for every group.

    Parameters
    ----------
    module : torch.nn.Module
        The current (masked) model; its weights are not changed.
    weight_names : sequence of str
        Parameter names of the weights to score (``"layer.weight"``).
    batches : iterable of (x, y, group_ids)
        Mini-batches; ``group_ids`` holds codes in ``[0, n_groups)`` (2-D for marginal
        groups: a row then counts for the group of each column).
    n_groups : int
        Number of groups ``G``.
    loss_fn : callable
        Per-sample loss ``loss_fn(logits, y) -> (B,)``; a group's loss is the mean over its rows
        in the batch (FairGRAPE's ``CrossEntropyLoss()`` reduction).
    forward : callable
        ``forward(module, x) -> logits``.
    train_mode : bool, default=True
        Run the module in training mode (batch statistics, dropout), as FairGRAPE does; the
        BatchNorm running statistics are restored afterwards.

    Returns
    -------
    dict of str to Tensor
        ``{name: (G, *weight.shape)}`` importance sums, float32, on the weights' device.
    """
    weights = [module.get_parameter(name) for name in weight_names]
    sums = {name: torch.zeros((n_groups, *w.shape), dtype=torch.float32, device=w.device)
            for name, w in zip(weight_names, weights)}
    saved_buffers = {name: b.detach().clone() for name, b in module.named_buffers()}
    requires = [w.requires_grad for w in weights]
    was_training = module.training
    module.train(train_mode)
    try:
        for w in weights:
            w.requires_grad_(True)
        with torch.enable_grad():
            for x, y, group_ids in batches:
                logits = forward(module, x)
                per_sample = loss_fn(logits, y).float()
                cells, losses = _flat_cells(group_ids, per_sample)
                present = torch.unique(cells).tolist()  # a host sync per batch: outside training
                magnitudes = [w.detach().abs().float() for w in weights]
                for position, k in enumerate(present):
                    group_loss = losses[cells == k].mean()
                    grads = torch.autograd.grad(group_loss, weights,
                                                retain_graph=position < len(present) - 1)
                    for name, magnitude, grad in zip(weight_names, magnitudes, grads):
                        sums[name][k] += (magnitude * grad.float().abs()).square_()
    finally:
        for w, flag in zip(weights, requires):
            w.requires_grad_(flag)
        module.train(was_training)
        with torch.no_grad():
            for name, buffer in module.named_buffers():
                if name in saved_buffers:
                    buffer.copy_(saved_buffers[name])
    return sums


def _take_unselected(order: torch.Tensor, pointer: int, count: int,
                     selected: torch.Tensor) -> tuple[torch.Tensor, int]:
    """The next ``count`` entries of ``order`` from ``pointer`` on that are not ``selected``,
    and the pointer just past the last one taken (fewer when ``order`` runs out)."""
    window = max(2 * count, 16)
    while True:
        stop = min(pointer + window, order.numel())
        candidates = order[pointer:stop]
        free = ~selected[candidates]
        if int(free.sum()) >= count or stop == order.numel():
            positions = torch.nonzero(free).flatten()[:count]
            if positions.numel() == 0:
                return candidates[:0], stop
            return candidates[positions], pointer + int(positions[-1]) + 1
        window *= 2


@torch.no_grad()
def greedy_keep_mask(
    importance: torch.Tensor,
    candidates: torch.Tensor,
    n_keep: int,
    *,
    para_batch: int = 1,
    relative: bool = False,
    max_rounds: int = 1024,
) -> torch.Tensor:
    """FairGRAPE's greedy choice of the weights one layer keeps.

    Parameters
    ----------
    importance : Tensor
        Shape ``(G, *weight.shape)``: the importance of every weight for every group
        (:func:`group_importance`).
    candidates : Tensor
        Bool, the weight's shape: the weights that may be kept (those the current mask
        keeps).
    n_keep : int
        How many to keep (at most the number of candidates).
    para_batch : int, default=1
        Weights added per choice of a group (FairGRAPE's ``para_batch``).
    relative : bool, default=False
        Rank a group's weights by their importance for it relative to their importance for
        all groups (FairGRAPE's ``delta_p``), not by the importance itself.
    max_rounds : int, default=1024
        At most this many choices per layer: a choice adds ``max(para_batch,
        ceil(n_keep / max_rounds))`` weights.

    Returns
    -------
    Tensor of the weight's shape
        1 for kept weights, 0 for the others.

    Notes
    -----
    Targets are each group's share of the layer's total importance over the candidates. The
    shares of the kept importance start uniform (``1/G``, as in FairGRAPE) and the group with
    the lowest ``share − target`` chooses next (ties: the lowest group code). A group ranks
    the candidates by decreasing importance (ties: lowest position first) and takes the first
    ones not kept yet.
    """
    n_groups = importance.shape[0]
    shape = importance.shape[1:]
    flat = importance.reshape(n_groups, -1)  # a view: no copy of the (G, n) importance
    pool = torch.nonzero(candidates.reshape(-1)).flatten()
    if not 0 <= n_keep <= pool.numel():
        raise ValueError(f"n_keep must be in [0, {pool.numel()}] (the candidates); got {n_keep}.")
    keep = torch.zeros(flat.shape[1], dtype=torch.bool, device=flat.device)
    if n_keep == 0:
        return keep.reshape(shape).to(importance.dtype)
    scores = flat if pool.numel() == flat.shape[1] else flat[:, pool]  # (G, n_candidates)
    totals = scores.sum(dim=1, dtype=torch.float64)
    target = totals / totals.sum() if float(totals.sum()) > 0 else torch.full_like(totals, 1 / n_groups)
    column_totals = scores.sum(dim=0).clamp(min=torch.finfo(scores.dtype).tiny) if relative else None

    def order_of(group: int) -> torch.Tensor:
        """The candidates by decreasing (relative) importance for ``group``, built when the
        group first chooses (int32 positions: half the memory of int64)."""
        ranking = scores[group] / column_totals if relative else scores[group]
        return pool[torch.argsort(ranking, descending=True, stable=True)].to(torch.int32)

    orders: dict[int, torch.Tensor] = {}
    pointers = [0] * n_groups
    kept_sums = torch.zeros(n_groups, dtype=torch.float64, device=flat.device)
    block = max(int(para_batch), math.ceil(n_keep / max_rounds))
    n_kept = 0
    exhausted = torch.zeros(n_groups, dtype=torch.bool, device=flat.device)
    while n_kept < n_keep:
        total = kept_sums.sum()
        share = kept_sums / total if float(total) > 0 else torch.full_like(kept_sums, 1 / n_groups)
        deficit = torch.where(exhausted, torch.inf, share - target)
        group = int(torch.argmin(deficit))
        if group not in orders:
            orders[group] = order_of(group)
        chosen, pointers[group] = _take_unselected(orders[group], pointers[group],
                                                   min(block, n_keep - n_kept), keep)
        if chosen.numel() == 0:
            exhausted[group] = True
            continue
        chosen = chosen.long()
        keep[chosen] = True
        kept_sums += flat[:, chosen].sum(dim=1, dtype=torch.float64)
        n_kept += chosen.numel()
    return keep.reshape(shape).to(importance.dtype)
