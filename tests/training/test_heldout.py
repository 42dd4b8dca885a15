"""constraint_data="heldout": the multipliers learn from a split the weights never train on."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from skorch.callbacks import Callback
from skorch.dataset import ValidSplit

from fairprune import FairnessToleranceWarning, FairPrunedClassifier

N_VALID = 300


def last_rows(dataset, y=None, **kwargs):
    n = len(dataset)
    return (torch.utils.data.Subset(dataset, range(n - N_VALID)),
            torch.utils.data.Subset(dataset, range(n - N_VALID, n)))


class TracedMLP(torch.nn.Module):
    """An MLP plus one weight column per sample (its one-hot id): a sample's column moves only
    if that sample enters a gradient (no weight decay, kept dense)."""

    def __init__(self, dense: torch.nn.Module, n_samples: int) -> None:
        super().__init__()
        self.body = dense
        self.ids = torch.nn.Linear(n_samples, 10, bias=False)
        torch.nn.init.normal_(self.ids.weight, std=0.01)

    def forward(self, x):
        return self.body(x[:, :64]) + self.ids(x[:, 64:])


@pytest.mark.parametrize("method", ["ceag", "equalized_loss"])
def test_heldout_rows_never_enter_a_primal_gradient(digits, digits_dense, method):
    X, y = digits
    n = len(y)
    X_traced = np.hstack([X, np.eye(n, dtype=np.float32)])
    model = TracedMLP(digits_dense, n)
    before = model.ids.weight.detach().clone()
    clf = FairPrunedClassifier(model, method=method, constraint_data="heldout", sparsity=0.8,
                               tolerance=0.0, dense_layers=("ids",), pruning_epochs=1,
                               max_epochs=3, train_split=last_rows, verbose=0,
                               optimizer__weight_decay=0.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FairnessToleranceWarning)
        clf.fit(X_traced, y, groups=y)
    after = clf.module_.ids.weight.detach()
    moved = (after != before).any(dim=0).numpy()
    assert moved[: n - N_VALID].all()        # every training sample entered a gradient
    assert not moved[n - N_VALID:].any()     # no held-out sample ever did
    assert np.abs(clf.history[-1, "multipliers"]).max() > 0  # the held-out pass drove them


class RecordHeldoutEstimates(Callback):
    """The held-out buffers' means after every training batch of the fine-tuning epochs."""

    def initialize(self):
        self.means_ = []
        return self

    def on_batch_end(self, net, training=False, **kwargs):
        buffer = net.fairness_.heldout_buffer
        if training and buffer is not None and net.method in ("ceag", "equalized_loss"):
            self.means_.append((len(net.history), buffer.means().clone()))


def test_heldout_estimates_change_from_step_to_step(digits, digits_dense):
    """Every training step adds a held-out batch to the held-out buffers: the estimates that
    drive the dual step move within an epoch (not one estimate per epoch)."""
    X, y = digits
    recorder = RecordHeldoutEstimates()
    params = dict(sparsity=0.9, tolerance=0.0, dense_layers=(), pruning_epochs=1, max_epochs=2,
                  train_split=last_rows, verbose=0, callbacks=[("record", recorder)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FairnessToleranceWarning)
        clf = FairPrunedClassifier(digits_dense, constraint_data="heldout", **params).fit(
            X, y, groups=y)
    second = [means for epoch, means in recorder.means_ if epoch == 2]
    training_batches = [b for b in clf.history[1, "batches"] if "train_loss" in b]
    assert len(second) == len(training_batches) > 3
    changes = [not torch.equal(a, b) for a, b in zip(second, second[1:])]
    assert sum(changes) >= len(changes) // 2
    assert (clf.multipliers_ > 0).any()
    assert clf.fairness_.heldout_buffer.ready().all()


def test_heldout_estimates_drive_the_dual_step(digits, digits_dense):
    """The dual step reads the held-out buffers, not the training batches: with every
    held-out estimate equal to the dense model's (no violation), no multiplier moves."""
    X, y = digits

    class PerfectHeldout(Callback):
        def on_batch_end(self, net, training=False, **kwargs):
            buffer = net.fairness_.heldout_buffer
            if buffer is not None:  # sparse held-out accuracy 1 in every group
                buffer.storage.fill_(1.0)
                buffer.counts.fill_(buffer.size)

        def on_batch_begin(self, net, training=False, **kwargs):
            self.on_batch_end(net, training=training)

    params = dict(sparsity=0.9, tolerance=0.0, dense_layers=(), pruning_epochs=1, max_epochs=2,
                  train_split=last_rows, verbose=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FairnessToleranceWarning)
        trained = FairPrunedClassifier(digits_dense, **params).fit(X, y, groups=y)
        heldout = FairPrunedClassifier(digits_dense, constraint_data="heldout",
                                       callbacks=[("perfect", PerfectHeldout())],
                                       **params).fit(X, y, groups=y)
    assert (trained.multipliers_ > 0).any()
    # held-out ψ_g of a perfect sparse model is Δ_g = dense - 1 <= 0 minus Δ: below ε = 0
    # only where the dense model is below its own mean; some groups move, not all
    assert heldout.multipliers_.sum() < trained.multipliers_.sum()


def test_heldout_with_the_gmp_cache_and_many_groups(digits, digits_dense, tmp_path):
    X, y = digits
    groups = np.arange(len(y)) % 1000  # 1000 groups, one or two samples each
    params = dict(constraint_data="heldout", sparsity=0.8, dense_layers=(), pruning_epochs=2,
                  max_epochs=2, train_split=ValidSplit(0.3, random_state=0), verbose=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FairnessToleranceWarning)
        plain = FairPrunedClassifier(digits_dense, **params).fit(X, y, groups=groups)
        FairPrunedClassifier(digits_dense, memory=tmp_path, **params).fit(X, y, groups=groups)
        loaded = FairPrunedClassifier(digits_dense, memory=tmp_path, **params).fit(
            X, y, groups=groups)
    np.testing.assert_array_equal(loaded.predict_proba(X), plain.predict_proba(X))
    np.testing.assert_array_equal(loaded.multipliers_, plain.multipliers_)
    assert np.isfinite(plain.multipliers_).all() and (plain.multipliers_ > 0).any()


def test_heldout_needs_a_validation_split(digits, digits_dense):
    X, y = digits
    with pytest.raises(ValueError, match="'constraint_data' .* 'train_split' is None"):
        FairPrunedClassifier(digits_dense, constraint_data="heldout").fit(X, y, groups=y)
