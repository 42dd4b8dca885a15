"""One training step shared by NFT, EL and CEAG: only the problem object differs.

Plain PyTorch and cooper-optim (no skorch): usable in a hand-written training loop.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

import cooper

from ..constraints.problems import FairnessProblem, StepInputs
from ..constraints.statistics import batch_group_stats
from ..pruning.masks import MaskSet

__all__ = ["FineTuningEngine", "GradientAscent", "check_group_ids", "make_dual_optimizer", "set_dual_gradients"]


def check_group_ids(group_ids: torch.Tensor, num_groups: int) -> None:
    """Group ids must be integers in ``[0, num_groups)``: a clear error instead of an opaque
    index error deep inside torch. (Reads values: called on CPU tensors only.)"""
    if group_ids.dtype.is_floating_point or group_ids.dtype == torch.bool:
        raise TypeError(f"group_ids must be an integer tensor; got dtype {group_ids.dtype}.")
    if not group_ids.numel():
        return
    low, high = (int(value) for value in torch.aminmax(group_ids))
    if low < 0 or high >= num_groups:
        raise ValueError(
            f"group_ids must lie in [0, {num_groups}); got values from {low} to {high}.")


def set_dual_gradients(multiplier: torch.nn.Module, strict_violation: torch.Tensor) -> None:
    """Gradients of Cooper's dual Lagrangian with respect to the multipliers, set directly.

    For the Lagrangian formulation the dual Lagrangian is ``Σ_g λ_g · g_g`` (``g`` the strict
    violations), whose gradient with respect to ``λ`` is ``g`` itself: writing it into
    ``.grad`` gives what Cooper's ``CMPState.compute_dual_lagrangian().backward()`` gives
    (tested) without building and differentiating an autograd graph every step.
    """
    weight, grad = multiplier.weight, strict_violation
    if grad.requires_grad:
        grad = grad.detach()
    if grad.dtype != weight.dtype:
        grad = grad.to(weight.dtype)
    if grad.shape != weight.shape:  # checked here: even a no-op reshape costs a dispatch
        grad = grad.reshape(weight.shape)
    weight.grad = grad


class GradientAscent:
    """Gradient ascent on the multipliers: ``λ ← λ + lr · ∇λ`` (they then clip themselves at 0).

    The update of ``torch.optim.SGD(lr=lr, maximize=True)`` without momentum, bit for bit,
    without torch.optim's per-call bookkeeping (profiling hooks, grad-mode switches), which
    on a vector of multipliers costs more than the update itself. Has the optimizer methods
    skorch and checkpoints use: ``step``, ``zero_grad``, ``state_dict``, ``load_state_dict``.
    """

    def __init__(self, params, lr: float) -> None:
        self.param_groups = [{"params": list(params), "lr": float(lr)}]
        self.state: dict = {}

    def step(self) -> None:
        for group in self.param_groups:
            for param in group["params"]:
                if param.grad is not None:  # detach(): in place on the leaf, no autograd record
                    param.detach().add_(param.grad, alpha=group["lr"])

    def zero_grad(self, set_to_none: bool = True) -> None:
        for group in self.param_groups:
            for param in group["params"]:
                param.grad = None

    def state_dict(self) -> dict:
        return {"param_groups": [{"lr": group["lr"]} for group in self.param_groups]}

    def load_state_dict(self, state_dict: dict) -> None:
        for group, saved in zip(self.param_groups, state_dict["param_groups"]):
            group["lr"] = saved["lr"]

    def __repr__(self) -> str:
        return f"GradientAscent(lr={self.param_groups[0]['lr']:g})"


def make_dual_optimizer(kind: str, parameters, lr: float):
    """The multipliers' optimizer: plain projected SGD ascent (the paper) or Cooper's nuPI.

    ``"sgd"`` is :class:`GradientAscent`; nuPI (a PI controller on the constraint
    violations) damps the oscillations of the multipliers and with ``Kp = 0`` reduces to
    the same ascent. Note: cooper-optim 1.0.1's nuPI
    update branches on tensor values in Python, one host sync per step on a GPU; the
    SGD path is free of syncs.
    """
    if kind == "sgd":
        return GradientAscent(parameters, lr)
    if kind == "nupi":
        return cooper.optim.nuPI(parameters, lr=lr, Kp=1.0, maximize=True)
    raise ValueError(f"The 'dual_optimizer' must be 'sgd' or 'nupi'; got {kind!r}.")


class FineTuningEngine:
    """Alternating dual–primal updates of a fairness problem, then the pruning masks.

    Per step: the dual variables ascend along the strict violations, the primal variables
    descend along the Lagrangian at the updated multipliers, and the masks zero the pruned
    weights again. Everything stays on the device: no host synchronisation.

    Parameters
    ----------
    problem : FairnessProblem
        NFT, EL or CEAG.
    primal_optimizer : torch.optim.Optimizer
        Optimizer of the model's weights.
    dual_optimizer : torch.optim.Optimizer, optional
        Optimizer of the multipliers (``maximize=True``); required for constrained problems.
    masks : MaskSet, optional
        Masks re-applied after every primal step.
    max_multiplier_sum : float or None, default=None
        After every dual step the multipliers are projected onto
        ``{λ >= 0, Σ λ_g <= max_multiplier_sum}`` (see
        :meth:`FairnessState.bound_multipliers_`); ``None`` leaves them unbounded, as the paper
        and :class:`~fairprune.FairPrunedClassifier` do by default.
    grad_scaler : torch.amp.GradScaler, optional
        Loss scaling of the primal step for float16 autocast. Gradients are unscaled before
        ``on_grad`` (gradient clipping sees true values); a step with inf/NaN gradients is
        skipped. The dual step needs no scaling: its gradients are the float32 violations.
    """

    def __init__(
        self,
        problem: FairnessProblem,
        primal_optimizer: torch.optim.Optimizer,
        dual_optimizer: torch.optim.Optimizer | None = None,
        masks: MaskSet | None = None,
        max_multiplier_sum: float | None = None,
        grad_scaler: torch.amp.GradScaler | None = None,
    ) -> None:
        if problem.constrained and dual_optimizer is None:
            raise ValueError(f"{type(problem).__name__} needs a dual optimizer.")
        self.problem = problem
        self.primal_optimizer = primal_optimizer
        self.dual_optimizer = dual_optimizer if problem.constrained else None
        self.masks = masks
        self.max_multiplier_sum = max_multiplier_sum
        self.grad_scaler = grad_scaler

    def step(
        self,
        module: nn.Module,
        per_sample_loss: torch.Tensor,
        correct: torch.Tensor,
        group_ids: torch.Tensor,
        on_grad: Callable[[], None] | None = None,
    ) -> torch.Tensor:
        """Update multipliers, weights and masks from one batch; return the mean loss."""
        if group_ids.device.type == "cpu":  # free on CPU; on a GPU it would cost a sync
            check_group_ids(group_ids, self.problem.state.num_groups)
        self.primal_optimizer.zero_grad(set_to_none=True)
        problem = self.problem
        detached_loss = per_sample_loss.detach()
        batch_counts = None
        if not problem.constrained:  # NFT: the plain mean loss, no group statistics
            objective = (per_sample_loss.mean() if problem.penalty is None
                         else problem.penalized_objective(per_sample_loss, group_ids))
        else:
            # group sums of detached losses for the dual update; the primal objective weights
            # the differentiable per-sample losses (see FairnessProblem.primal_objective)
            stats = batch_group_stats(detached_loss, correct, group_ids,
                                      problem.state.num_groups)
            strict = problem.strict_violation(stats, StepInputs(per_sample_loss, correct, group_ids))
            set_dual_gradients(problem.state.multiplier, strict)
            self.dual_optimizer.step()
            for multiplier in problem.multipliers():
                multiplier.post_step_()
            problem.state.bound_multipliers_(self.max_multiplier_sum)
            objective = problem.primal_objective(per_sample_loss, stats)
            batch_counts = stats.counts
        scaler = self.grad_scaler
        if scaler is None:
            objective.backward()
        else:
            scaler.scale(objective).backward()
            scaler.unscale_(self.primal_optimizer)
        if on_grad is not None:
            on_grad()
        if scaler is None:
            self.primal_optimizer.step()
        else:
            scaler.step(self.primal_optimizer)
            scaler.update()
        if self.masks is not None:
            self.masks.apply_(module)
        problem.state.record(group_ids, correct, batch_counts=batch_counts)
        return detached_loss.mean()
