"""Everything a fresh fit sets up once it knows its data: dense reference, fairness state,
layers to prune, loss scaling and the multipliers' step."""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping

import numpy as np
import torch
from skorch.callbacks import Callback
from skorch.utils import to_tensor

from ..exceptions import DenseModelWarning
from ..groups import FEATURES_KEY
from ..pruning import MaskSet, check_criterion, prunable_layers
from ..training.engine import make_dual_optimizer
from ..training.evaluation import per_sample_evaluation
from ..training.methods import auto_dual_lr, is_constrained, make_fairness_state
from ..training.precision import make_grad_scaler

__all__ = ["FairnessSetup"]


class FairnessSetup(Callback):
    """At the start of a new fit (not when a fit continues): measure the dense reference on the
    training split once, build the fairness state (multipliers, replay buffers), find the
    prunable layers, and choose the multipliers' step (``dual_lr_``) and optimizer.

    Runs first among the callbacks, so that ``LoadInitState`` can load a checkpoint into the
    state it builds.
    """

    def on_train_begin(self, net, X=None, y=None, **kwargs):
        if net.fairness_ is not None:
            return
        dataset_train, dataset_valid = net.get_split_datasets(X, y)
        check_criterion(net.pruning_criterion).check_groups(net.group_encoder_.n_groups)
        net.__dict__["pruning_state_"] = None
        cells = net.constraint_cells_  # the groups, or (group, rate) cells: gap_metric
        n_groups = cells.n_codes
        state = make_fairness_state(net.method, n_groups, net.replay_buffer_size, net.device,
                                    net.constraint_data, families=cells.families_)
        losses, correct, group_ids = per_sample_evaluation(net, net.dense_module_, dataset_train)
        state.reference.fill(losses, correct, group_ids)
        self.check_dense_accuracy(float(state.reference.accuracy), y)
        if state.buffer is not None:  # small groups: ready once they hold all their samples
            state.buffer.limit_to_group_sizes_(
                torch.bincount(group_ids.reshape(-1), minlength=n_groups))
        if dataset_valid is not None and len(dataset_valid):  # held-out monitoring
            losses, correct, valid_ids = per_sample_evaluation(net, net.dense_module_,
                                                               dataset_valid)
            state.heldout_reference.fill(losses, correct, valid_ids)
            if state.heldout_buffer is not None:
                state.heldout_buffer.limit_to_group_sizes_(
                    torch.bincount(valid_ids.reshape(-1), minlength=n_groups))
        masks = MaskSet()
        masks.target_sparsity = 0.0
        net.set_fairness_state_(state, masks)
        net.prunable_layers_ = prunable_layers(net.module_, tuple(net.dense_layers))
        if net.pruning == "channel":
            net.example_input_ = self.example_input(net, dataset_train)
        net.grad_scaler_ = make_grad_scaler(net.mixed_precision, net.device)
        steps_per_epoch = max(1, math.ceil(len(dataset_train) / net.batch_size))
        net.dual_lr_ = auto_dual_lr(net.dual_lr, net.method, cells.n_cells, steps_per_epoch,
                                    net.max_epochs)
        if is_constrained(net.method):
            net.set_dual_optimizer_(make_dual_optimizer(
                net.dual_optimizer, state.multiplier.parameters(), net.dual_lr_))

    @staticmethod
    def check_dense_accuracy(accuracy: float, y) -> None:
        """:class:`DenseModelWarning` when the dense model is within 0.02 of always
        predicting the majority class on the fit data."""
        y = np.asarray(y, dtype=np.int64)
        majority = np.bincount(y).max() / max(len(y), 1)
        if accuracy <= majority + 0.02:
            warnings.warn(
                f"dense_module's accuracy on the fit data is {accuracy:.3f}, within 0.02 of "
                f"always predicting the majority class ({majority:.3f}): it looks untrained, "
                "or X is not what it was trained on (other scaling, column order or "
                "encoding). Pruning cannot keep what the dense model does not have.",
                DenseModelWarning, stacklevel=2)

    @staticmethod
    def example_input(net, dataset) -> torch.Tensor:
        """Two copies of the first sample: what channel pruning traces the module with."""
        first = dataset[0][0] if len(dataset) else None
        x = first[FEATURES_KEY] if isinstance(first, Mapping) and FEATURES_KEY in first else None
        if x is None or not hasattr(x, "shape"):
            raise ValueError(
                "pruning='channel' needs array inputs X (one tensor per sample) to trace "
                "the module's channel dependencies."
            )
        return to_tensor(np.stack([np.asarray(x)] * 2), device=net.device)
