"""The fine-tuning problems: what the shared training step
(:class:`~fairprune.training.FineTuningEngine`) minimises and which violations drive the
multipliers.

* :class:`NaiveFineTuning` (NFT): minimise the loss, no constraint.
* :class:`CEAGProblem`: one inequality constraint per group, ``ψ_g − ε <= 0``, with proxy
  constraints: the *differentiable* violation (primal gradient) is the excess loss gap
  ``(L_g(θs) − L_g(θd)) − (L(θs) − L(θd)) − ε`` of the groups present in the batch; the
  *strict* violation (dual update) is the excess accuracy gap ``ψ_g − ε`` with sparse group
  accuracies read from replay buffers (or the batch when buffers are off).
* :class:`EqualizedLossProblem` (Tran et al., 2022): ``|L_g(θs) − L(θs)| − ε_L <= 0`` per group,
  with or without replay buffers of per-sample losses for the dual update.

There is one formulation of the Lagrangian ``L + Σ_g λ_g c_g`` in the package: a problem gives
the strict violations (:meth:`FairnessProblem.strict_violation`, the dual step) and a weighted
per-sample loss with the Lagrangian's gradient at the current multipliers
(:meth:`FairnessProblem.primal_objective`, the primal step). The differentiable violations
``c_g`` appear only through their gradient; the test suite builds Cooper's ``CMPState`` from
them the direct way and checks both steps against Cooper's own Lagrangians. The multipliers
are Cooper's (``DenseMultiplier``, made non-negative for inequalities by the problem's
``cooper.Constraint``).

State (multipliers, replay buffers, dense constants) lives in ``nn.Module`` objects that the
problem only references, so the state pickles and moves with the estimator while the problem
object itself (which Cooper makes hard to pickle) is rebuilt when needed.
"""

from __future__ import annotations

from dataclasses import dataclass

import cooper
import torch
from torch import nn

from .distributed import is_distributed, pooled_group_means, sum_over_processes
from .replay_buffer import ReplayBuffer
from .statistics import (BatchGroupStats, DenseReference, excess_gaps, flat_cells, promoted_dot,
                         weighted_overall)

__all__ = [
    "CEAGProblem",
    "EqualizedLossProblem",
    "FairnessProblem",
    "FairnessState",
    "NaiveFineTuning",
    "ParityPenaltyProblem",
    "SignedEqualizedLossProblem",
    "StepInputs",
    "project_capped_simplex",
]


@dataclass
class StepInputs:
    """What a problem needs from one training batch."""

    per_sample_loss: torch.Tensor  # (B,), differentiable
    correct: torch.Tensor  # (B,) float 0/1, detached
    group_ids: torch.Tensor  # (B,) long in [0, G)


class FairnessState(nn.Module):
    """Everything a fairness problem learns or measures, as one picklable module.

    Parameters
    ----------
    num_groups : int
        Number of groups ``G``.
    buffer_size : int
        Replay buffer capacity per group; 0 disables the buffers.
    constrained : bool
        Whether the problem has multipliers.
    device : torch.device or str, optional
        Where tensors live.
    heldout_buffer_size : int, default=0
        Capacity per group of the held-out replay buffers, filled with one held-out batch per
        training step when the dual step reads held-out data; 0: none.
    families : Tensor, optional
        ``(num_groups,)`` family of every constraint cell (:mod:`fairprune.cells`): each
        cell's drop is compared with its family's; the last entry is the scratch cell of rows
        in no cell, a family of its own, never reported. None: the groups, one family.
    """

    def __init__(
        self, num_groups: int, buffer_size: int, constrained: bool, device=None,
        heldout_buffer_size: int = 0, families: torch.Tensor | None = None,
    ) -> None:
        super().__init__()
        self.num_groups = num_groups
        #: the cells users see: all but the scratch cell (when there is one)
        self.n_reported = num_groups if families is None else num_groups - 1
        self.register_buffer("families", None if families is None else
                             torch.as_tensor(families, dtype=torch.long, device=device))
        self.reference = DenseReference(num_groups, device)
        self.buffer = ReplayBuffer(num_groups, buffer_size, device) if buffer_size > 0 else None
        self.multiplier = (
            # every constraint is reported at every step (0 where a group is absent or not
            # trusted), so a dense multiplier: dense gradients, no sparse tensors
            cooper.multipliers.DenseMultiplier(num_constraints=num_groups, device=device)
            if constrained
            else None
        )
        # running sums over the current epoch, for history diagnostics
        self.register_buffer("epoch_correct", torch.zeros(num_groups, device=device))
        self.register_buffer("epoch_count", torch.zeros(num_groups, device=device))
        # the same on the held-out (validation) rows, against the dense model on those rows
        self.heldout_reference = DenseReference(num_groups, device)
        for name in ("heldout_correct", "heldout_loss", "heldout_count"):
            self.register_buffer(name, torch.zeros(num_groups, device=device))
        # held-out rows per group and category 2·(dense right) + (sparse right), when the
        # validation step runs the dense model too (an upper bound of the held-out max ψ_g)
        self.register_buffer("heldout_pairs", torch.zeros(num_groups, 4, device=device),
                             persistent=False)
        # per-sample values of held-out batches, one batch per training step (Cotter et al.)
        self.heldout_buffer = (ReplayBuffer(num_groups, heldout_buffer_size, device)
                               if heldout_buffer_size > 0 else None)

    def __setstate__(self, state) -> None:
        """A state pickled before constraint cells existed has no scratch cell: every group is
        reported, one family."""
        super().__setstate__(state)
        self.__dict__.setdefault("n_reported", self.num_groups)
        if "families" not in self._buffers:
            self._buffers["families"] = None

    def multiplier_values(self) -> torch.Tensor:
        """The multipliers of the reported cells (zeros without constraints)."""
        if self.multiplier is None:
            return self.epoch_count.new_zeros(self.n_reported)
        return self.multiplier.weight.detach().flatten()[: self.n_reported]

    def bound_multipliers_(self, max_sum: float | None) -> None:
        """Project the multipliers onto ``{λ >= 0, Σ λ <= max_sum}`` (Euclidean; no sync).

        An extension of the paper, off by default. The primal Lagrangian
        ``L + Σ λ_g (L_g − L)`` weighs the overall loss by ``1 − Σ λ_g``; past 1 it pushes the
        overall loss *up*. Infeasible constraints (a group the sparse model can no longer
        predict) make multipliers grow without bound, which this projection prevents.
        Equality multipliers (signed) are left as they are. Returns before entering
        ``no_grad`` when there is nothing to project: the engine calls this every step.
        """
        if self.multiplier is None or max_sum is None:
            return
        if self.multiplier.constraint_type != cooper.ConstraintType.INEQUALITY:
            return
        weight = self.multiplier.weight
        with torch.no_grad():
            weight.copy_(project_capped_simplex(weight.flatten(), max_sum).view_as(weight))

    @torch.no_grad()
    def record(self, group_ids: torch.Tensor, correct: torch.Tensor, *,
               split: str = "train", loss: torch.Tensor | None = None,
               batch_counts: torch.Tensor | None = None,
               dense_correct: torch.Tensor | None = None) -> None:
        """Add a batch's per-sample correctness (and, for ``split="valid"``, losses and the
        dense model's correctness on the same rows) to the epoch's sums of that split;
        ``batch_counts`` (samples per group) saves counting them again."""
        heldout = _is_valid(split)
        if dense_correct is not None:
            group_ids, correct, dense_correct, *rest = flat_cells(
                group_ids, correct, dense_correct, *([] if loss is None else [loss]))
            loss = rest[0] if rest else None
        elif loss is not None:
            group_ids, correct, loss = flat_cells(group_ids, correct, loss)
        else:
            group_ids, correct = flat_cells(group_ids, correct)
        sums, counts = ((self.heldout_correct, self.heldout_count) if heldout
                        else (self.epoch_correct, self.epoch_count))
        correct = correct.to(sums.dtype)
        sums.index_add_(0, group_ids, correct)
        if batch_counts is None:
            counts.index_add_(0, group_ids, torch.ones_like(correct))
        else:
            counts.add_(batch_counts)
        if heldout and loss is not None:
            self.heldout_loss.index_add_(0, group_ids, loss.detach().to(sums.dtype))
        if heldout and dense_correct is not None:
            category = 2 * dense_correct.long() + (correct > 0.5).long()
            ones = torch.ones_like(correct, dtype=self.heldout_pairs.dtype)
            self.heldout_pairs.view(-1).index_add_(0, group_ids * 4 + category, ones)

    @torch.no_grad()
    def epoch_excess_gaps(self, *, split: str = "train") -> torch.Tensor:
        """``ψ_g`` of the epoch's training predictions — train mode, as the model learns — or,
        with ``split="valid"``, of the held-out rows (eval mode, end of epoch) against the
        dense model on the same rows. NaN for groups not seen."""
        correct, count = self.epoch_totals(split=split)
        seen = count > 0
        sparse = correct / count.clamp(min=1)
        reference = self.heldout_reference if _is_valid(split) else self.reference
        psi = excess_gaps(reference.group_accuracy - sparse, count, seen, self.families)
        psi = torch.where(seen, psi, torch.full_like(psi, float("nan")))
        return psi[: self.n_reported]

    @torch.no_grad()
    def epoch_totals(self, *, split: str = "train") -> tuple[torch.Tensor, torch.Tensor]:
        """Correct predictions and samples per group this epoch (``split`` "train" or
        "valid"), summed over data-parallel processes."""
        if _is_valid(split):
            return sum_over_processes(self.heldout_correct, self.heldout_count)
        return sum_over_processes(self.epoch_correct, self.epoch_count)

    @torch.no_grad()
    def heldout_pair_counts(self) -> torch.Tensor:
        """``(num_groups, 4)`` held-out rows this epoch per group and category
        ``2 · dense right + sparse right`` (zeros unless the validation step recorded the
        dense model's correctness), summed over data-parallel processes."""
        return sum_over_processes(self.heldout_pairs)[0][: self.n_reported]

    @torch.no_grad()
    def reset_epoch(self) -> None:
        """Start an epoch's sums (training and held-out)."""
        for buffer in (self.epoch_correct, self.epoch_count, self.heldout_correct,
                       self.heldout_loss, self.heldout_count, self.heldout_pairs):
            buffer.zero_()


def _is_valid(split: str) -> bool:
    """Whether ``split`` names the held-out rows ("valid") rather than training ("train")."""
    if split not in ("train", "valid"):
        raise ValueError(f"split must be 'train' or 'valid'; got {split!r}.")
    return split == "valid"


def project_capped_simplex(values: torch.Tensor, cap: float) -> torch.Tensor:
    """Euclidean projection of a vector onto ``{x >= 0, Σ x <= cap}``, without host sync.

    If clipping at 0 already meets the cap, that is the projection; otherwise it is the
    projection onto the simplex ``{x >= 0, Σ x = cap}`` (sort-based, Held et al. 1974;
    Duchi et al. 2008). Both are computed and the right one picked on the device.
    """
    clipped = values.clamp(min=0)
    ordered = torch.sort(values, descending=True).values
    cumulative = ordered.cumsum(0) - cap
    ranks = torch.arange(1, values.numel() + 1, device=values.device, dtype=values.dtype)
    support = ordered - cumulative / ranks > 0
    last = (support.to(torch.int64) * torch.arange(values.numel(), device=values.device)).max()
    threshold = cumulative[last] / (last + 1).to(values.dtype)
    on_simplex = (values - threshold).clamp(min=0)
    return torch.where(clipped.sum() <= cap, clipped, on_simplex)


def _buffer_estimates(buffer: ReplayBuffer) -> tuple[torch.Tensor, torch.Tensor]:
    """Group means of the replay buffers and their trust flags, pooled over data-parallel
    processes when there are several (see :mod:`fairprune.constraints.distributed`)."""
    if not is_distributed():
        return buffer.means(), buffer.ready()
    means, trusted, _ = pooled_group_means(
        buffer.values.sum(dim=1), buffer.counts, buffer.ready())
    return means, trusted


def _pooled_batch_means(values: torch.Tensor, inputs: StepInputs, stats: BatchGroupStats):
    """Per-group means of a batch's per-sample ``values``, pooled over data-parallel
    processes: ``(means, present, counts)``."""
    group_ids, values = flat_cells(inputs.group_ids, values)
    sums = torch.zeros_like(stats.counts).index_add_(0, group_ids, values.to(stats.counts.dtype))
    return pooled_group_means(sums, stats.counts)


class FairnessProblem:
    """Base class: holds a :class:`FairnessState`; constrained problems own the
    ``cooper.Constraint`` that makes the state's multipliers inequality (non-negative) or
    equality (signed) multipliers.

    Parameters
    ----------
    state : FairnessState
        Multipliers, buffers and dense constants (with multipliers when constrained).
    dual_from_heldout : bool, default=False
        Strict violations (dual step) from the held-out replay buffers, which receive one
        held-out batch per training step, instead of training batches (Cotter et al., 2019:
        "two datasets"); the primal step still uses the training batch's proxy.
    """

    constrained = True
    constraint_type = cooper.ConstraintType.INEQUALITY
    #: an unconstrained problem's fixed penalty added to the mean loss (None: the mean loss)
    penalty: str | None = None

    #: Tolerances are clipped here before they meet float32 tensors: any larger value is
    #: never binding (|ψ_g| <= 2 and losses stay far below it), and a huge one (1e300) would
    #: overflow to -inf and turn 0 · (-inf) into NaN in the Lagrangian.
    max_tolerance = 1e30

    def __init__(self, state: FairnessState, dual_from_heldout: bool = False) -> None:
        self.state = state
        self.dual_from_heldout = bool(dual_from_heldout)
        if self.constrained:
            if state.multiplier is None:
                raise ValueError(f"{type(self).__name__} needs a FairnessState with multipliers.")
            self.constraint = cooper.Constraint(
                constraint_type=self.constraint_type,
                formulation_type=cooper.formulations.Lagrangian,
                multiplier=state.multiplier,
            )

    def multipliers(self) -> list:
        """The problem's multipliers (empty without constraints)."""
        return [self.state.multiplier] if self.constrained else []

    def strict_violation(self, stats: BatchGroupStats, inputs: StepInputs) -> torch.Tensor:
        """``(G,)`` violations the multipliers ascend along (0 for untrusted groups)."""
        raise NotImplementedError

    def observe_heldout(self, group_ids: torch.Tensor, correct: torch.Tensor,
                        loss: torch.Tensor) -> None:
        """Add one held-out batch (eval mode, no gradient) to the held-out replay buffers
        that the dual step reads with ``dual_from_heldout``; a no-op otherwise."""
        buffer = self.state.heldout_buffer
        if self.dual_from_heldout and buffer is not None:
            buffer.update(group_ids, self.heldout_values(correct, loss))

    def heldout_values(self, correct: torch.Tensor, loss: torch.Tensor) -> torch.Tensor:
        """What the held-out buffers keep of each row: its correctness (accuracy gaps)."""
        return correct

    def primal_weights(self, stats: BatchGroupStats) -> torch.Tensor:
        """``μ_g``: the derivative of the multiplier terms ``Σ_g λ_g c_g`` of the primal
        Lagrangian with respect to the proxy ``(L_g − L)`` of every group present in the
        batch (detached)."""
        return self.state.multiplier.weight.detach().flatten()

    def primal_objective(self, per_sample_loss: torch.Tensor, stats: BatchGroupStats) -> torch.Tensor:
        """A differentiable scalar with the gradient of Cooper's primal Lagrangian
        ``L + Σ_g λ_g c_g`` (``c_g`` the differentiable violations) at the current multipliers.

        Every ``c_g`` depends on the weights only through ``L_g − L`` (the dense constants and
        ε drop out), so the Lagrangian's gradient is that of the per-sample weighted loss
        ``Σ_i w_i ℓ_i`` with ``w_i = (1 − Σ_g μ_g) / n + μ_{g_i} / n_{g_i}``: one weighting
        and one sum in the backward pass instead of the group sums' graph (tested equal to the
        gradient of Cooper's primal Lagrangian). ``stats`` may hold detached losses.
        """
        # μ_{g_i} / n_{g_i} per sample; summed over the batch it is Σ_g μ_g over the groups
        # present (each contributes n_g times μ_g / n_g), so absent groups need no mask
        mu = self.primal_weights(stats)
        share = (mu / stats.safe_counts)[stats.group_ids]
        families = self.state.families
        if families is not None:
            # each cell's proxy is L_c − L_f (its family's loss): the family's mean loss gets
            # −Σ_{c ∈ f, present} μ_c, spread over the batch's rows of that family
            present_mu = torch.where(stats.present, mu, 0.0)
            family_mu = torch.zeros_like(stats.counts).index_add_(0, families, present_mu)
            family_rows = torch.zeros_like(stats.counts).index_add_(0, families, stats.counts)
            row_family = families[stats.group_ids]
            share = share - (family_mu / family_rows.clamp(min=1))[row_family]
        if stats.cells_per_row > 1:  # marginal groups: a sample's share in each of its groups
            share = share.view(-1, stats.cells_per_row).sum(dim=1)
        n = max(per_sample_loss.numel(), 1)
        if families is not None:
            return promoted_dot(share + 1.0 / n, per_sample_loss)
        weights = share + (1 - share.sum()) / n
        return promoted_dot(weights, per_sample_loss)


class NaiveFineTuning(FairnessProblem):
    """Plain fine-tuning of the pruned model (NFT): the loss, no constraint."""

    constrained = False

    def __init__(self, state: FairnessState, tolerance: float = 0.0,
                 dual_from_heldout: bool = False) -> None:
        super().__init__(state, dual_from_heldout)
        self.tolerance = min(float(tolerance), self.max_tolerance)


class ParityPenaltyProblem(NaiveFineTuning):
    """The mean loss plus a fixed-weight penalty on the gap between two groups' mean losses,
    ``L + |L_a − L_b|`` (a smooth surrogate of the accuracy-parity gap; the bi-level paper's
    fairness term, weight 1). No multipliers. A batch without rows of both groups adds
    nothing."""

    penalty = "parity"

    def penalized_objective(self, per_sample_loss: torch.Tensor,
                            group_ids: torch.Tensor) -> torch.Tensor:
        """The differentiable objective of one batch."""
        stats = BatchGroupStats(per_sample_loss, per_sample_loss.detach(), group_ids,
                                self.state.num_groups)
        losses = stats.group_loss
        both = stats.present.all()
        gap = torch.where(both, (losses[0] - losses[1]).abs(), losses.new_zeros(()))
        return per_sample_loss.mean() + gap


class CEAGProblem(FairnessProblem):
    """Constrained excess accuracy gaps (Hashemizadeh et al., 2024).

    Groups absent from the batch contribute no primal term (their violation is 0). A group
    gets a dual update only once its estimate is trusted: its replay buffer is ready (full by
    default), or, without buffers, it is present in the batch; elsewhere its strict violation
    is 0, so plain SGD leaves its multiplier unchanged.

    With buffers, the overall accuracies inside ``ψ_g`` are means over the ready groups
    weighted by their training-set frequency, for both the dense and the sparse model. This is
    a consistent estimator of ``Δ`` even when groups are imbalanced (the paper's code takes an
    unweighted mean of the buffers for the sparse model but a sample-weighted one for the
    dense model, which is biased).
    """

    def __init__(self, state: FairnessState, tolerance: float,
                 dual_from_heldout: bool = False) -> None:
        super().__init__(state, dual_from_heldout)
        #: ε, the bound on every ψ_g
        self.tolerance = min(float(tolerance), self.max_tolerance)

    @torch.no_grad()
    def strict_violation(self, stats: BatchGroupStats, inputs: StepInputs) -> torch.Tensor:
        ref, buffer = self.state.reference, self.state.buffer
        if self.dual_from_heldout:
            sparse, trusted = _buffer_estimates(self.state.heldout_buffer)
            ref = self.state.heldout_reference
            weights = ref.group_frequency
        elif buffer is not None:
            buffer.update(inputs.group_ids, inputs.correct, stats.counts)
            sparse, trusted = _buffer_estimates(buffer)
            weights = ref.group_frequency
        elif is_distributed():
            sparse, trusted, weights = _pooled_batch_means(inputs.correct, inputs, stats)
        else:
            sparse, trusted, weights = stats.group_accuracy, stats.present, stats.counts
        psi = excess_gaps(ref.group_accuracy - sparse, weights, trusted, self.state.families)
        return torch.where(trusted, psi - self.tolerance, 0.0)


class EqualizedLossProblem(FairnessProblem):
    """Equalized loss: ``|L_g(θs) − L(θs)| <= ε_L`` for every group (ε_L = 0: the paper's EL).

    The band ``ε_L`` is in loss units (``band``, the estimator's ``loss_tolerance``). With
    replay buffers (of per-sample losses), the dual update reads group losses from the buffers
    and the overall loss as their training-frequency-weighted mean over ready groups.
    """

    signed = False  # the band: |L_g − L| − ε_L <= 0

    def __init__(self, state: FairnessState, band: float = 0.0,
                 dual_from_heldout: bool = False) -> None:
        super().__init__(state, dual_from_heldout)
        #: ε_L, the half-width of the band around the overall loss (loss units)
        self.band = min(float(band), self.max_tolerance)

    def heldout_values(self, correct: torch.Tensor, loss: torch.Tensor) -> torch.Tensor:
        """Held-out buffers of equalized loss keep per-sample losses."""
        return loss

    def loss_gap(self, group_loss: torch.Tensor, loss: torch.Tensor) -> torch.Tensor:
        """The constraint of every group: ``|L_g − L| − ε_L`` (band) or ``L_g − L`` (signed)."""
        gap = group_loss - loss
        return gap if self.signed else gap.abs() - self.band

    def primal_weights(self, stats: BatchGroupStats) -> torch.Tensor:
        weights = super().primal_weights(stats)
        if self.signed:
            return weights
        # d|L_g − L| = sign(L_g − L) d(L_g − L)
        return weights * torch.sign(stats.group_loss.detach() - stats.loss.detach())

    @torch.no_grad()
    def strict_violation(self, stats: BatchGroupStats, inputs: StepInputs) -> torch.Tensor:
        buffer = self.state.buffer
        if self.dual_from_heldout:
            losses, trusted = _buffer_estimates(self.state.heldout_buffer)
            frequency = self.state.heldout_reference.group_frequency
            gap = self.loss_gap(losses, weighted_overall(losses, frequency, trusted))
            return torch.where(trusted, gap, 0.0)
        if buffer is None:
            group_loss, loss, present = stats.group_loss.detach(), stats.loss.detach(), stats.present
            if is_distributed():
                group_loss, present, counts = _pooled_batch_means(
                    inputs.per_sample_loss.detach(), inputs, stats)
                loss = (group_loss * counts).sum() / counts.sum().clamp(min=1)
            gap = self.loss_gap(group_loss, loss)
            return torch.where(present, gap, torch.zeros_like(gap))
        buffer.update(stats.group_ids, stats.per_sample_loss, stats.counts)
        losses, trusted = _buffer_estimates(buffer)
        overall = weighted_overall(losses, self.state.reference.group_frequency, trusted)
        return torch.where(trusted, self.loss_gap(losses, overall), 0.0)


class SignedEqualizedLossProblem(EqualizedLossProblem):
    """Equalized loss as the paper's code states it by default: ``L_g(θs) − L(θs) = 0`` for
    every group, an *equality* with signed multipliers (a group whose loss is below the
    overall loss gets a negative weight change). No tolerance.
    """

    constraint_type = cooper.ConstraintType.EQUALITY
    signed = True

    def __init__(self, state: FairnessState, band: float = 0.0,
                 dual_from_heldout: bool = False) -> None:
        super().__init__(state, 0.0, dual_from_heldout)
