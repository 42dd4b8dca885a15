"""Gradual magnitude pruning, one mask update per GMP epoch."""

from __future__ import annotations

import warnings

from skorch.callbacks import Callback

from ..pruning import MaskSet, channel_masks, cubic_sparsity, magnitude_masks
from ..training.phases import current_epoch, is_pruning_epoch

__all__ = ["GradualPruning"]


class GradualPruning(Callback):
    """Prune ``net.module_`` at the start of every GMP epoch (cubic schedule, Zhu & Gupta).

    Epochs ``0 .. net.pruning_epochs - 1`` ramp the sparsity from 0 to ``net.sparsity`` (the
    last GMP epoch reaches it; ``pruning_epochs=1`` is one-shot pruning). Masks are recomputed
    from the current weights' magnitudes and installed with ``net.set_masks_``; the training
    step re-applies them after every optimizer step. Records ``sparsity`` (the schedule's
    target) in the history every epoch.
    """

    def on_epoch_begin(self, net, dataset_train=None, dataset_valid=None, **kwargs):
        epoch = current_epoch(net)
        if is_pruning_epoch(net, epoch):
            target = cubic_sparsity(
                epoch,
                net.sparsity,
                end_step=net.pruning_epochs - 1,
                frequency=net.pruning_frequency,
            )
            net.set_masks_(self.masks_for(net, target))
            if epoch == net.pruning_epochs - 1 and net.sparsity_ < net.sparsity - 0.005:
                warnings.warn(
                    f"{net.pruning} pruning reached sparsity_={net.sparsity_:.3f} of the pruned "
                    f"layers, not sparsity={net.sparsity:g}: every layer keeps at least one "
                    "channel, and the output layer's channels (the classes) are never pruned.",
                    UserWarning, stacklevel=2)
        net.history.record("sparsity", net.masks_.target_sparsity)

    @staticmethod
    def masks_for(net, target: float) -> MaskSet:
        """Masks of ``net.module_`` at sparsity ``target`` (magnitude or channel pruning)."""
        layers = net.prunable_layers_
        if net.pruning == "unstructured":
            masks = magnitude_masks(net.module_, layers, target, net.pruning_scope)
            mask_set = MaskSet(masks)
        else:
            example = net.example_input_
            masks, plan = channel_masks(net.module_, layers, target, example)
            mask_set = MaskSet(masks, plan, tuple(example.shape[1:]))
        mask_set.target_sparsity = float(target)
        return mask_set.to(net.device)
