"""The pruning phase: a pruning update at every update epoch of the schedule, by the chosen
criterion (:mod:`fairprune.pruning.criteria`)."""

from __future__ import annotations

import warnings

import torch
from skorch.callbacks import Callback
from torch.utils.data import DataLoader

from ..pruning import MaskSet, PruningContext, channel_masks, check_criterion
from ..training.evaluation import batch_tensors, forward
from ..training.phases import current_epoch, is_pruning_epoch, pruning_target

__all__ = ["GradualPruning"]


class GradualPruning(Callback):
    """Prune ``net.module_`` at every update epoch of the pruning schedule.

    Epochs ``0 .. net.pruning_epochs - 1`` form the pruning phase; the schedule
    (:func:`~fairprune.training.phases.pruning_target`, cubic by default) says which epochs
    update the masks and at which sparsity, the last update reaching ``net.sparsity``. Masks
    come from ``net.pruning_criterion`` (magnitude, FairGRAPE or learned scores) and are
    installed with ``net.set_masks_``; the training step re-applies them after every optimizer
    step. A learned criterion also moves its masks after every backward pass of the pruning
    phase (``on_grad_computed``). Records ``sparsity`` (the schedule's target) in the history
    every epoch.
    """

    def on_epoch_begin(self, net, dataset_train=None, dataset_valid=None, **kwargs):
        epoch = current_epoch(net)
        target = pruning_target(net, epoch)
        if target is not None:
            net.set_masks_(self.masks_for(net, target, dataset_train))
            if self.is_last_update(net, epoch) and net.sparsity_ < net.sparsity - 0.005:
                warnings.warn(
                    f"{net.pruning} pruning reached sparsity_={net.sparsity_:.3f} of the pruned "
                    f"layers, not sparsity={net.sparsity:g}: every layer keeps at least one "
                    "channel, and the output layer's channels (the classes) are never pruned.",
                    UserWarning, stacklevel=2)
        elif not is_pruning_epoch(net, epoch):
            net.__dict__["pruning_state_"] = None  # learned scores: done with the pruning phase
        net.history.record("sparsity", net.masks_.target_sparsity)

    @staticmethod
    def is_last_update(net, epoch: int) -> bool:
        """Whether no later epoch of the pruning phase updates the masks."""
        return all(pruning_target(net, later) is None
                   for later in range(epoch + 1, net.pruning_epochs))

    def on_grad_computed(self, net, named_parameters, batch=None, training=False, **kwargs):
        state = net.__dict__.get("pruning_state_")
        if not training or state is None or not is_pruning_epoch(net, current_epoch(net)):
            return
        criterion = check_criterion(net.pruning_criterion)
        criterion.after_backward(self.context(net), state, net.masks_.target_sparsity)

    @staticmethod
    def context(net, dataset=None) -> PruningContext:
        """What a criterion may read of ``net`` (and the training rows ``dataset``)."""
        def batches(batch_size: int):
            loader = DataLoader(dataset, batch_size=batch_size, shuffle=False)
            for batch in loader:
                yield batch_tensors(batch, net.device)

        return PruningContext(
            module=net.module_, layer_names=list(net.prunable_layers_), masks=net.masks_,
            scope=net.pruning_scope, n_groups=net.fairness_.num_groups,
            batches=None if dataset is None else batches,
            loss_fn=lambda logits, y: net.criterion_(logits, y),
            forward=lambda module, x: forward(module, x, net.device),
            extra={"state": net.__dict__.get("pruning_state_")})

    def masks_for(self, net, target: float, dataset=None) -> MaskSet:
        """Masks of ``net.module_`` at sparsity ``target`` (the net's criterion, or channel
        pruning)."""
        if net.pruning == "unstructured":
            criterion = check_criterion(net.pruning_criterion)
            if net.__dict__.get("pruning_state_") is None:
                state = criterion.start(self.context(net))
                if state is not None and current_epoch(net) > 0:
                    warnings.warn(
                        f"pruning_criterion={criterion.name!r} starts its learned scores at "
                        f"epoch {current_epoch(net) + 1}, from the current weights: a fit "
                        "resumed inside the pruning phase (checkpoint, partial_fit) does not "
                        "carry the scores of the interrupted one, so its masks differ from an "
                        "uninterrupted run's.", UserWarning, stacklevel=2)
                net.__dict__["pruning_state_"] = state
            with torch.no_grad():
                masks = criterion.masks(self.context(net, dataset), target)
            mask_set = MaskSet(masks)
        else:
            example = net.example_input_
            masks, plan = channel_masks(net.module_, net.prunable_layers_, target, example)
            mask_set = MaskSet(masks, plan, tuple(example.shape[1:]))
        mask_set.target_sparsity = float(target)
        return mask_set.to(net.device)
