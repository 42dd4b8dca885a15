"""Which phase an epoch is in: the one place that knows the schedule.

A fit runs ``pruning_epochs`` epochs of gradual magnitude pruning (GMP, plain fine-tuning
while the sparsity ramps up), then ``max_epochs`` epochs of fine-tuning with the chosen
method. Epochs are numbered from 0 across both phases; the learning-rate milestones are
fractions of all of them (the paper's schedule). Every callback, the training step and the
GMP cache ask this module instead of comparing epoch numbers themselves.
"""

from __future__ import annotations

__all__ = [
    "GMP",
    "current_epoch",
    "epochs_to_run",
    "includes_whole_gmp_phase",
    "is_fine_tuning_epoch",
    "is_pruning_epoch",
    "lr_at_epoch",
    "lr_milestone_epochs",
    "phase_of",
    "pruning_target",
    "stage_of",
    "total_epochs",
]

#: Name of the pruning phase (the fine-tuning phase is named after the method).
GMP = "gmp"


def total_epochs(net) -> int:
    """Pruning plus fine-tuning epochs of one fit."""
    return net.pruning_epochs + net.max_epochs


def current_epoch(net) -> int:
    """0-based number of the epoch in progress (skorch has already added its history row)."""
    return len(net.history) - 1


def is_pruning_epoch(net, epoch: int) -> bool:
    """Whether ``epoch`` (0-based) belongs to the GMP phase."""
    return epoch < net.pruning_epochs


def is_fine_tuning_epoch(net, epoch: int) -> bool:
    """Whether ``epoch`` (0-based) comes after the GMP phase (the model is fully sparse)."""
    return not is_pruning_epoch(net, epoch)


def phase_of(net, epoch: int) -> str:
    """``"gmp"`` during the pruning epochs, then the method's name."""
    return GMP if is_pruning_epoch(net, epoch) else net.method


def stage_of(net, epoch: int) -> str:
    """The phase and the epoch within it, 1-based: ``"gmp 2/15"``, ``"ceag 1/45"``."""
    if is_pruning_epoch(net, epoch):
        return f"{GMP} {epoch + 1}/{net.pruning_epochs}"
    return f"{net.method} {epoch + 1 - net.pruning_epochs}/{net.max_epochs}"


def epochs_to_run(net) -> int:
    """Epochs a call still runs: all of them for a fresh model, the rest after resuming from
    a checkpoint (none when the checkpoint is complete: re-running a finished script gives
    the finished model). ``partial_fit`` and ``warm_start`` continue a finished model by
    ``max_epochs`` more."""
    total, done = total_epochs(net), len(net.history)
    if done < total:
        return total - done
    return 0 if net.__dict__.get("fit_mode_") == "fresh" else net.max_epochs


def includes_whole_gmp_phase(net, epochs: int) -> bool:
    """Whether running ``epochs`` epochs from here covers the whole GMP phase (a fresh fit
    that reaches fine-tuning): only then can the GMP cache stand in for those epochs."""
    return not len(net.history) and epochs >= net.pruning_epochs


def pruning_target(net, epoch: int) -> float | None:
    """The sparsity a pruning update at the start of ``epoch`` (0-based) reaches, or None
    when the epoch has no update (outside the GMP phase, or between two updates).

    ``pruning_schedule="cubic"`` (Zhu & Gupta): updates every ``pruning_frequency`` epochs and
    at the last GMP epoch, which reaches ``sparsity``; the first update (epoch 0) is at
    sparsity 0. ``"geometric"`` (FairGRAPE): ``ceil(pruning_epochs / pruning_frequency)``
    updates every ``pruning_frequency`` epochs, each keeping the same fraction of the
    weights, the first at epoch 0 already pruning, the last reaching ``sparsity``.
    """
    from ..pruning.schedule import cubic_sparsity, geometric_sparsity

    if not is_pruning_epoch(net, epoch):
        return None
    frequency = net.pruning_frequency
    schedule = getattr(net, "pruning_schedule", "cubic")
    if schedule == "geometric":
        if epoch % frequency:
            return None
        n_updates = -(-net.pruning_epochs // frequency)
        return geometric_sparsity(epoch, net.sparsity, n_updates, frequency=frequency)
    if epoch % frequency and epoch != net.pruning_epochs - 1:
        return None
    return cubic_sparsity(epoch, net.sparsity, end_step=net.pruning_epochs - 1,
                          frequency=frequency)


def lr_milestone_epochs(net) -> list[int]:
    """The learning-rate milestones as 0-based epoch numbers (sorted, repeats kept)."""
    total = total_epochs(net)
    return sorted(round(m * total) for m in (net.lr_milestones or ()))


def lr_at_epoch(net, epoch: int) -> float:
    """Learning rate of ``epoch`` (0-based): ``net.pruning_lr`` in the GMP epochs when it is
    set, else ``net.lr`` decayed by ``net.lr_gamma`` at each milestone already passed."""
    pruning_lr = getattr(net, "pruning_lr", None)
    if pruning_lr is not None and is_pruning_epoch(net, epoch):
        return float(pruning_lr)
    passed = sum(epoch >= m for m in lr_milestone_epochs(net))
    return net.lr * net.lr_gamma**passed
