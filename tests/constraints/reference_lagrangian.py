"""The fairness problems' Lagrangian in Cooper's own form: the reference the package's one
formulation (strict violations for the dual step, a weighted per-sample loss for the primal
step) is checked against.

Written the direct way, as the paper states the problems: group means of the per-sample
losses, the differentiable violation of every group present in the batch, and Cooper's
``CMPState`` from them, whose ``compute_primal_lagrangian`` and ``compute_dual_lagrangian``
are differentiated by autograd.
"""

from __future__ import annotations

import cooper
import torch

from fairprune.constraints import (CEAGProblem, EqualizedLossProblem, NaiveFineTuning,
                                   StepInputs, batch_group_stats)


def differentiable_violation(problem, inputs: StepInputs) -> torch.Tensor:
    """``c_g`` of every group (0 where absent): the proxy the primal step descends."""
    G = problem.state.num_groups
    counts = torch.zeros(G).index_add_(0, inputs.group_ids, torch.ones(len(inputs.group_ids)))
    group_loss = torch.zeros(G).index_add(0, inputs.group_ids, inputs.per_sample_loss)
    group_loss = group_loss / counts.clamp(min=1)
    loss = inputs.per_sample_loss.mean()
    present = counts > 0
    if isinstance(problem, CEAGProblem):
        ref = problem.state.reference
        value = (group_loss - ref.group_loss) - (loss - ref.loss) - problem.tolerance
    elif isinstance(problem, EqualizedLossProblem):
        value = problem.loss_gap(group_loss, loss)
    else:
        raise TypeError(f"no constraints in {type(problem).__name__}")
    return torch.where(present, value, torch.zeros_like(value))


class ReferenceCMP(cooper.ConstrainedMinimizationProblem):
    """Cooper's ``ConstrainedMinimizationProblem`` around a fairprune problem."""

    def __init__(self, problem) -> None:
        super().__init__()
        self.problem = problem

    def compute_cmp_state(self, inputs: StepInputs) -> cooper.CMPState:
        if isinstance(self.problem, NaiveFineTuning):
            return cooper.CMPState(loss=inputs.per_sample_loss.mean())
        stats = batch_group_stats(inputs.per_sample_loss, inputs.correct, inputs.group_ids,
                                  self.problem.state.num_groups)
        state = cooper.ConstraintState(
            violation=differentiable_violation(self.problem, inputs),
            strict_violation=self.problem.strict_violation(stats, inputs))
        return cooper.CMPState(loss=inputs.per_sample_loss.mean(),
                               observed_constraints={self.problem.constraint: state})


def cmp_state(problem, inputs: StepInputs) -> cooper.CMPState:
    """Cooper's state of one batch (this calls the problem's strict violation once: with
    replay buffers, that writes the batch into them, as a training step does)."""
    return ReferenceCMP(problem).compute_cmp_state(inputs)


def constraint_state(problem, inputs: StepInputs) -> cooper.ConstraintState:
    """The one constraint state of a batch."""
    return next(iter(cmp_state(problem, inputs).observed_constraints.values()))
