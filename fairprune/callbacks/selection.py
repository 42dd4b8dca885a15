"""NFT+ES: keep the fine-tuning epoch with the best held-out accuracy."""

from __future__ import annotations

import math

from skorch.callbacks import Callback

from ..training.phases import is_fine_tuning_epoch

__all__ = ["EpochSelection"]


class EpochSelection(Callback):
    """Keep the fine-tuning epoch with the best validation accuracy (``epoch_selection``).

    Only epochs after GMP are candidates (earlier ones are less sparse than asked). The
    weights and fairness state of the best epoch so far are copied at its end and restored at
    the end of training; ``net.selected_epoch_`` holds its 1-based number and the history a
    ``selected`` flag per epoch. Ties keep the earlier epoch. Without a validation score (no
    ``train_split``) nothing is selected; ``fit`` refuses that combination beforehand.
    """

    def on_train_begin(self, net, **kwargs):
        self.best_ = None

    def on_epoch_end(self, net, **kwargs):
        if net.epoch_selection is None:
            return
        epoch = len(net.history)  # 1-based number of the epoch that just ended
        score = net.history[-1].get("valid_acc")
        is_candidate = (is_fine_tuning_epoch(net, epoch - 1) and score is not None
                        and math.isfinite(score))
        best = getattr(self, "best_", None)
        selected = is_candidate and (best is None or score > best["score"])
        if selected:
            self.best_ = {
                "epoch": epoch,
                "score": float(score),
                "module": {k: v.detach().clone() for k, v in net.module_.state_dict().items()},
                "fairness": {k: v.detach().clone() for k, v in net.fairness_.state_dict().items()},
            }
        net.history.record("selected", bool(selected))

    def on_train_end(self, net, **kwargs):
        best = getattr(self, "best_", None)
        self.best_ = None
        if net.epoch_selection is None or best is None:
            return
        net.module_.load_state_dict(best["module"])
        net.fairness_.load_state_dict(best["fairness"])
        net.masks_.apply_(net.module_)
        net.selected_epoch_ = best["epoch"]
