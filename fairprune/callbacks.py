"""skorch callbacks the estimator installs: GMP steps, fairness logging, lr milestones."""

from __future__ import annotations

import math
import warnings

import numpy as np
import torch
from skorch.callbacks import Callback

from .pruning import MaskSet, channel_masks, cubic_sparsity, magnitude_masks

__all__ = [
    "EpochSelection",
    "FairnessLogger",
    "GradualPruning",
    "MilestoneLR",
    "NonFiniteLossGuard",
    "fair_checkpoint",
    "lr_at_epoch",
]


class GradualPruning(Callback):
    """Prune ``net.module_`` at the start of every GMP epoch (cubic schedule, Zhu & Gupta).

    Epochs ``0 .. net.pruning_epochs - 1`` ramp the sparsity from 0 to ``net.sparsity`` (the
    last GMP epoch reaches it; ``pruning_epochs=1`` is one-shot pruning). Masks are recomputed
    from the current weights' magnitudes and kept in ``net.masks_``; the training step
    re-applies them after every optimizer step. Records ``sparsity`` (the schedule's target)
    in the history every epoch.
    """

    def on_epoch_begin(self, net, dataset_train=None, dataset_valid=None, **kwargs):
        epoch = len(net.history) - 1
        if epoch < net.pruning_epochs:
            target = cubic_sparsity(
                epoch,
                net.sparsity,
                end_step=net.pruning_epochs - 1,
                frequency=net.pruning_frequency,
            )
            net.set_masks_(self.masks_for(net, target))
        net.history.record("sparsity", net.masks_.target_sparsity)

    @staticmethod
    def masks_for(net, target: float) -> MaskSet:
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


class FairnessLogger(Callback):
    """Record per-epoch fairness diagnostics in the history.

    Keys: ``phase`` ("gmp" or the method), ``train_acc`` (accuracy of the epoch's training
    predictions), ``train_max_eag`` (max ψ_g) and ``train_psi_pw`` (Ψ_PW) of the epoch's
    training predictions against the dense model's training accuracy, ``multipliers`` (one
    float per group, JSON-serialisable), ``max_multiplier`` and ``n_violated`` (groups with
    ψ_g > ε in the epoch). One host synchronisation per epoch.
    """

    def on_epoch_begin(self, net, **kwargs):
        net.fairness_.reset_epoch()

    def on_epoch_end(self, net, **kwargs):
        state = net.fairness_
        correct, count = state.epoch_totals()
        net.history.record("phase", net.current_phase_())
        net.history.record("train_acc", float(correct.sum() / count.sum().clamp(min=1)))
        psi = state.epoch_excess_gaps().cpu().numpy()  # NaN for groups not seen this epoch
        seen = ~np.isnan(psi)
        net.history.record("train_eag", [round(float(v), 6) for v in psi])
        net.history.record("train_max_eag", float(psi[seen].max()) if seen.any() else math.nan)
        # ψ_g = Δ_g − Δ with one Δ for all groups, so max ψ − min ψ = max Δ − min Δ = Ψ_PW
        net.history.record(
            "train_psi_pw", float(psi[seen].max() - psi[seen].min()) if seen.any() else math.nan
        )
        multipliers = state.multiplier_values().cpu().numpy().astype(np.float32)
        net.history.record("multipliers", [round(float(v), 7) for v in multipliers])
        net.history.record("max_multiplier", float(multipliers.max()))
        net.history.record("n_violated", int(np.nansum(psi > net.tolerance)))


class EpochSelection(Callback):
    """Keep the fine-tuning epoch with the best validation accuracy (``epoch_selection``).

    Only epochs after GMP are candidates (earlier ones are less sparse than asked). The
    weights and fairness state of the best epoch so far are copied at its end and restored at
    the end of training; ``net.selected_epoch_`` holds its 1-based number and the history a
    ``selected`` flag per epoch. Ties keep the earlier epoch. Without a validation score (no
    ``train_split``) nothing is selected; ``fit`` refuses that combination beforehand.
    """

    def on_train_begin(self, net, **kwargs):
        net.selection_state_ = None

    def on_epoch_end(self, net, **kwargs):
        if net.epoch_selection is None:
            return
        epoch = len(net.history)
        score = net.history[-1].get("valid_acc")
        is_candidate = epoch > net.pruning_epochs and score is not None and math.isfinite(score)
        best = net.selection_state_
        selected = is_candidate and (best is None or score > best["score"])
        if selected:
            net.selection_state_ = {
                "epoch": epoch,
                "score": float(score),
                "module": {k: v.detach().clone() for k, v in net.module_.state_dict().items()},
                "fairness": {k: v.detach().clone() for k, v in net.fairness_.state_dict().items()},
            }
        net.history.record("selected", bool(selected))

    def on_train_end(self, net, **kwargs):
        best = getattr(net, "selection_state_", None)
        if net.epoch_selection is None or best is None:
            return
        net.module_.load_state_dict(best["module"])
        net.fairness_.load_state_dict(best["fairness"])
        net.masks_.apply_(net.module_)
        net.selected_epoch_ = best["epoch"]
        net.selection_state_ = None


def lr_at_epoch(net, epoch: int) -> float:
    """Learning rate of epoch ``epoch`` (0-based): ``net.lr`` decayed by ``net.lr_gamma`` at
    each milestone (fractions of all epochs, GMP included) already passed."""
    total = net.pruning_epochs + net.max_epochs
    milestones = net.lr_milestones or ()
    passed = sum(epoch >= round(m * total) for m in milestones)
    return net.lr * net.lr_gamma**passed


class MilestoneLR(Callback):
    """Multiply the learning rate by ``gamma`` at fractions of all epochs (GMP included).

    The paper decays the primal learning rate at 60%, 80% and 90% of training. Records ``lr``.
    """

    def on_epoch_begin(self, net, **kwargs):
        lr = lr_at_epoch(net, len(net.history) - 1)
        for group in net.optimizer_.param_groups:
            group["lr"] = lr
        net.history.record("lr", lr)


class NonFiniteLossGuard(Callback):
    """Stop training on a NaN/inf training loss, keeping the last good weights.

    The check reads the loss value skorch already moved to the host for its history, so it
    adds no synchronisation. Weights, masks and fairness state are snapshotted at the start of
    every epoch and restored on failure; the error names the epoch and batch.
    """

    def on_epoch_begin(self, net, **kwargs):
        net.snapshot_()

    def on_batch_end(self, net, batch=None, training=False, **kwargs):
        if not training:
            return
        batches = net.history[-1]["batches"]
        loss = batches[-1].get("train_loss")
        if loss is not None and not math.isfinite(loss):
            epoch, batch_index = len(net.history), len(batches)
            net.restore_snapshot_()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                raise FloatingPointError(
                    f"The training loss became {loss} at epoch {epoch}, batch {batch_index} "
                    "(1-based). Training stopped; the weights of the end of the previous "
                    "epoch were restored. Lower 'lr', check the inputs for NaN/inf, or "
                    "clip gradients (skorch.callbacks.GradientNormClipping)."
                )


def fair_checkpoint(dirname: str, **kwargs):
    """A skorch ``Checkpoint`` saving everything a resumed fit needs, every epoch.

    Model weights, optimizer state, history, pruning masks (``masks.pt``), fairness state —
    multipliers, replay buffers, dense reference — (``fairness.pt``) and the multipliers'
    optimizer (``dual_optimizer.pt``). Pair it with ``skorch.callbacks.LoadInitState``::

        cp = fair_checkpoint("run1")
        clf = FairPrunedClassifier(dense, callbacks=[cp, LoadInitState(cp)])

    Re-running ``fit`` after an interruption then continues from the last saved epoch; with
    the same ``random_state`` the result matches an uninterrupted run (tested on CPU).
    """
    from skorch.callbacks import Checkpoint

    params = dict(monitor=None, f_masks="masks.pt", f_fairness="fairness.pt",
                  f_dual_optimizer="dual_optimizer.pt", f_criterion=None)
    params.update(kwargs)
    return Checkpoint(dirname=dirname, **params)
