"""Stop on a non-finite training loss and put the last good state back."""

from __future__ import annotations

import math
import warnings

import torch
from skorch.callbacks import Callback

from ..training.state import capture, restore

__all__ = ["NonFiniteLossGuard", "all_finite"]


class NonFiniteLossGuard(Callback):
    """Stop training on a NaN/inf training loss, keeping the last good weights.

    The check reads the loss value skorch already moved to the host for its history, so it
    adds no synchronisation. Weights, fairness state and optimizer state are copied at the
    start of every epoch and restored on failure; the error names the epoch and batch.
    """

    def on_train_begin(self, net, **kwargs):
        self.snapshot_ = None

    def on_epoch_begin(self, net, **kwargs):
        self.snapshot_ = capture(net, ("module", "fairness", "optimizer"))

    def on_batch_end(self, net, batch=None, training=False, **kwargs):
        if not training:
            return
        batches = net.history[-1]["batches"]
        loss = batches[-1].get("train_loss")
        if loss is not None and not math.isfinite(loss):
            epoch, batch_index = len(net.history), len(batches)
            self.restore_(net)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                raise FloatingPointError(
                    f"The training loss became {loss} at epoch {epoch}, batch {batch_index} "
                    "(1-based). Training stopped; the weights of the end of the previous "
                    "epoch were restored. Lower 'lr', check the inputs for NaN/inf, or "
                    "clip gradients (skorch.callbacks.GradientNormClipping)."
                )

    def on_epoch_end(self, net, **kwargs):
        # the last step's update comes after its loss was checked: check the result once an
        # epoch (one host sync)
        if not all_finite(net):
            epoch, batches = len(net.history), len(net.history[-1]["batches"])
            self.restore_(net)
            raise FloatingPointError(
                f"The weights, statistics or multipliers became NaN/inf in epoch {epoch}, at the "
                f"latest in its last step (batch {batches}, 1-based), after every loss of the epoch was "
                "finite. Training stopped; the weights of the end of the previous epoch were "
                "restored. Lower 'lr' or clip gradients (skorch.callbacks.GradientNormClipping).")

    def on_train_end(self, net, **kwargs):
        self.snapshot_ = None

    def restore_(self, net) -> None:
        """Put back the state of the start of the epoch (and drop the copy); refuse to leave
        a model behind when that state is not finite either."""
        snapshot, self.snapshot_ = getattr(self, "snapshot_", None), None
        if snapshot is None:
            return
        restore(net, snapshot)
        if not all_finite(net):
            net.mark_unusable_("its weights are NaN/inf and no finite state could be restored")
            raise FloatingPointError(
                "The weights were already NaN/inf at the start of the epoch, so no finite "
                "state is left to restore; the model is not usable. Check dense_module and "
                "the inputs for NaN/inf.")


def all_finite(net) -> bool:
    """Whether the sparse model's weights and statistics (BatchNorm running means and
    variances included) and the multipliers are all finite (one sync)."""
    tensors = [p.detach() for p in net.module_.parameters()]
    tensors += [b.detach() for b in net.module_.buffers() if b.is_floating_point()]
    tensors += [b.detach() for b in net.fairness_.buffers() if b.is_floating_point()]
    tensors += [p.detach() for p in net.fairness_.parameters()]
    return bool(torch.stack([torch.isfinite(t).all() for t in tensors]).all())
