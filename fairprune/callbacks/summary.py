"""The end of a fit: the training report and the warning when CEAG missed its tolerance."""

from __future__ import annotations

import warnings

import numpy as np
import torch
from skorch.callbacks import Callback

from .._data import GROUPS_KEY, iter_logits
from ..exceptions import FairnessToleranceWarning
from ..report import disparity_report

__all__ = ["FitSummary"]


class FitSummary(Callback):
    """At the end of training, ``net.train_report_``: the disparity report of the final model
    on the training split (eval mode). With CEAG, a :class:`FairnessToleranceWarning` names the
    worst groups when ``max ψ_g`` exceeds the tolerance there.
    """

    def on_train_end(self, net, X=None, y=None, **kwargs):
        if not len(net.history):
            return
        net.restore_invariants_()  # an interrupt may have stopped a step half-way
        dataset_train, _ = net.get_split_datasets(X, y)
        sparse, labels, codes = [], [], []
        for logits, Xi, yi in iter_logits(net, net.module_, dataset_train):
            sparse.append(logits.argmax(1).cpu())
            labels.append(torch.as_tensor(np.asarray(yi)))
            codes.append(torch.as_tensor(np.asarray(Xi[GROUPS_KEY])))
        dense = [logits.argmax(1).cpu()
                 for logits, _, _ in iter_logits(net, net.dense_module_, dataset_train)]
        report = disparity_report(
            torch.cat(labels).numpy(), torch.cat(dense).numpy(), torch.cat(sparse).numpy(),
            net.groups_[torch.cat(codes).numpy()], net.tolerance,
        )
        net.train_report_ = report
        worst = report.attrs["max_excess_accuracy_gap"]
        if net.method == "ceag" and worst > net.tolerance:
            top = report.nlargest(3, "excess_accuracy_gap")
            names = ", ".join(
                f"{g!r} ({v:+.3f})" for g, v in zip(top["group"], top["excess_accuracy_gap"])
            )
            buffer = net.fairness_.buffer
            idle = [] if buffer is None else net.groups_[~buffer.ready().cpu().numpy()].tolist()
            cause = (f"The constraints of {idle[:5]} never acted: their replay buffers never "
                     "filled (no training sample after the split?)." if idle else
                     "The tolerance may be infeasible at this sparsity, or training too short.")
            warnings.warn(
                f"Training ended with max excess accuracy gap {worst:.4f} > tolerance "
                f"{net.tolerance:g} on the training data (worst groups: {names}). {cause} See "
                "clf.train_report_ and history[:, 'train_max_eag'].",
                FairnessToleranceWarning,
                stacklevel=6,  # the user's fit call: callback, notify, skorch, _train, fit
            )
