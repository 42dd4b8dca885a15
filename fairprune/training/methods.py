"""From the estimator's parameters to a fairness problem, its state and its dual step.

The method decides only which :mod:`fairprune.constraints` problem the shared training step
drives; GMP epochs always run plain fine-tuning (the paper switches the constraints on once
the target sparsity is reached).
"""

from __future__ import annotations

from ..constraints.problems import CEAGProblem, EqualizedLossProblem, FairnessProblem
from ..constraints.problems import (FairnessState, NaiveFineTuning, ParityPenaltyProblem,
                                   SignedEqualizedLossProblem)
from .phases import GMP

__all__ = [
    "AUTO_DUAL_STEP",
    "AUTO_DUAL_STEP_EL",
    "HELDOUT_BUFFER_SIZE",
    "METHODS",
    "auto_dual_lr",
    "is_constrained",
    "make_fairness_state",
    "make_problem",
]

#: The fine-tuning methods, in the order the docs list them.
METHODS = ("ceag", "equalized_loss", "nft")

#: ``dual_lr="auto"`` for CEAG is ``AUTO_DUAL_STEP / (n_groups · fine-tuning steps)``: over the
#: fine-tuning phase a multiplier facing a steady violation ``v`` gathers at most
#: ``AUTO_DUAL_STEP · v / n_groups``, whatever the schedule's length (ablation in the docs).
AUTO_DUAL_STEP = 100.0
#: The same for equalized loss, whose loss-gap violations rarely vanish.
AUTO_DUAL_STEP_EL = 10.0
#: Slots per group of the held-out buffers when ``replay_buffer_size=0`` (the paper's 40).
HELDOUT_BUFFER_SIZE = 40


def is_constrained(method: str) -> bool:
    """Whether ``method`` has Lagrange multipliers (everything but NFT)."""
    return method != "nft"


def auto_dual_lr(dual_lr, method: str, n_groups: int, steps_per_epoch: int,
                 fine_tuning_epochs: int) -> float:
    """The multipliers' step: ``dual_lr`` itself, or the automatic step for ``"auto"``."""
    if dual_lr != "auto":
        return float(dual_lr)
    scale = AUTO_DUAL_STEP_EL if method == "equalized_loss" else AUTO_DUAL_STEP
    return scale / (n_groups * steps_per_epoch * max(1, fine_tuning_epochs))


def make_fairness_state(method: str, n_groups: int, replay_buffer_size: int,
                        device, constraint_data: str = "train", families=None) -> FairnessState:
    """Multipliers (constrained methods), replay buffers, the dense reference and, when the
    dual step reads held-out data, held-out buffers of :data:`HELDOUT_BUFFER_SIZE` slots
    (``replay_buffer_size`` when buffers are on)."""
    constrained = is_constrained(method)
    buffer_size = replay_buffer_size if constrained else 0
    heldout = constrained and constraint_data == "heldout"
    heldout_size = (replay_buffer_size or HELDOUT_BUFFER_SIZE) if heldout else 0
    return FairnessState(n_groups, buffer_size, constrained, device,
                         heldout_buffer_size=heldout_size, families=families)


def make_problem(phase: str, state: FairnessState, *, tolerance: float,
                 loss_tolerance: float, loss_constraint: str,
                 constraint_data: str = "train",
                 pruning_fairness: str | None = None) -> FairnessProblem:
    """The problem the training step drives in ``phase`` (``"gmp"`` or a method name);
    ``constraint_data="heldout"`` feeds the dual updates from the held-out split.

    The GMP phase runs plain fine-tuning, unless the pruning criterion learns its masks under
    a fairness term (``pruning_fairness``): ``"penalty"``, the two-group parity penalty, or
    ``"lagrangian"``, CEAG's constraints from the first epoch on."""
    from_heldout = constraint_data == "heldout"
    if phase == GMP and pruning_fairness == "penalty":
        return ParityPenaltyProblem(state)
    if phase == GMP and pruning_fairness == "lagrangian":
        return CEAGProblem(state, tolerance, dual_from_heldout=from_heldout)
    if phase in (GMP, "nft"):
        return NaiveFineTuning(state, tolerance)
    if phase == "ceag":
        return CEAGProblem(state, tolerance, dual_from_heldout=from_heldout)
    if loss_constraint == "equality":
        return SignedEqualizedLossProblem(state, dual_from_heldout=from_heldout)
    return EqualizedLossProblem(state, band=loss_tolerance, dual_from_heldout=from_heldout)
