"""Keep the best fine-tuning epoch on held-out data: by accuracy (NFT+ES), or the most
accurate one whose held-out max ψ_g meets ε ("fair")."""

from __future__ import annotations

import math

from skorch.callbacks import Callback

import numpy as np

from ..cells import gap_name
from ..intervals import max_excess_upper_bound
from ..training.phases import is_fine_tuning_epoch
from ..training.state import capture, restore

__all__ = ["EpochSelection"]


class EpochSelection(Callback):
    """Keep the best fine-tuning epoch on the validation split (``epoch_selection``).

    ``"accuracy"``: the highest validation accuracy (the paper's NFT+ES, on held-out training
    data). ``"fair"``: the most accurate epoch among those whose held-out max ψ_g
    (``valid_max_excess_accuracy_gap``) is within the tolerance, else the epoch with the lowest held-out
    max ψ_g — the rule of :func:`fairprune.model_selection.best_feasible`, per epoch. With
    ``selection_bound="upper"`` the held-out max ψ_g's one-sided 95% bootstrap upper bound
    (``valid_max_excess_accuracy_gap_upper`` in the history, seeded by ``random_state`` and
    the epoch) takes the point estimate's place, in feasibility and in the fallback.

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
        if net.selection_bound == "upper":
            pairs = net.fairness_.heldout_pair_counts().cpu().numpy()
            seed = None if net.random_state is None else net.random_state * 1_000_003 + epoch
            net.history.record("valid_max_excess_accuracy_gap_upper",
                               max_excess_upper_bound(np.rint(pairs), random_state=seed))
        score = self.score(net, net.history[-1])
        is_candidate = is_fine_tuning_epoch(net, epoch - 1) and score is not None
        best = getattr(self, "best_", None)
        selected = is_candidate and (best is None or score > best["score"])
        if selected:
            self.best_ = {"epoch": epoch, "score": score,
                          "state": capture(net, ("module", "fairness"))}
        net.history.record("selected", bool(selected))

    @staticmethod
    def score(net, row) -> tuple | None:
        """The epoch's rank key (greater is better), or None when it cannot be ranked."""
        accuracy = row.get("valid_acc")
        if accuracy is None or not math.isfinite(accuracy):
            return None
        if net.epoch_selection == "accuracy":
            return (float(accuracy),)
        disparity = row.get("valid_max_excess_accuracy_gap_upper"
                            if net.selection_bound == "upper"
                            else f"valid_max_excess_{gap_name(net.gap_metric)}")
        if disparity is None or not math.isfinite(disparity):
            return None
        feasible = disparity <= net.tolerance
        return (feasible, float(accuracy) if feasible else -float(disparity))

    def on_train_end(self, net, **kwargs):
        best = getattr(self, "best_", None)
        self.best_ = None
        if net.epoch_selection is None or best is None:
            return
        restore(net, best["state"])  # masks re-applied
        net.set_selected_epoch_(best["epoch"])
