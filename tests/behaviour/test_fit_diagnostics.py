"""A fit that says when it cannot be trusted: a dense model that looks untrained or outputs
probabilities, a tolerance given in percent, a pruned model that collapsed."""

from __future__ import annotations

import copy
import warnings

import numpy as np
import pytest
import torch
from skorch.callbacks import Callback

from fairprune import (DenseModelWarning, FairPrunedClassifier, FairnessToleranceWarning,
                       PrunedModelCollapseWarning)
from fairprune.datasets.models import make_mlp

QUICK = dict(sparsity=0.5, dense_layers=(), pruning_epochs=1, max_epochs=1, verbose=0)


def fit_quietly(clf, X, y):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FairnessToleranceWarning)
        return clf.fit(X, y, groups=y)


def test_a_trained_dense_model_gives_no_dense_model_warning(digits, digits_dense):
    X, y = digits
    with warnings.catch_warnings():
        warnings.simplefilter("error", DenseModelWarning)
        clf = fit_quietly(FairPrunedClassifier(digits_dense, **QUICK), X, y)
    assert clf.fit_status_ in ("ok", "tolerance_not_met")


def test_an_untrained_dense_model_is_called_out(digits):
    X, y = digits
    torch.manual_seed(0)
    untrained = make_mlp(64, 10, (16,))
    with pytest.warns(DenseModelWarning, match="looks untrained, or X is not what it was"):
        fit_quietly(FairPrunedClassifier(untrained, **QUICK), X, y)


def test_inputs_scaled_unlike_the_training_data_are_called_out(digits, digits_dense):
    """The dense MLP was trained on pixels in [0, 1]; fed raw 0..16 pixels far off scale,
    it is no better than the majority class."""
    X, y = digits
    shifted = (X - 40.0).astype(np.float32)
    with pytest.warns(DenseModelWarning, match="within 0.02 of always predicting"):
        fit_quietly(FairPrunedClassifier(digits_dense, **QUICK), shifted, y)


def test_a_module_ending_in_softmax_is_called_out(digits, digits_dense):
    X, y = digits
    with_softmax = torch.nn.Sequential(copy.deepcopy(digits_dense), torch.nn.Softmax(dim=1))
    with pytest.warns(DenseModelWarning, match="look like probabilities"):
        fit_quietly(FairPrunedClassifier(with_softmax, **QUICK), X, y)


@pytest.mark.parametrize("tolerance, hint", [(2, "did you mean 0.02"), (5.0, "did you mean 0.05")])
def test_a_tolerance_in_percent_is_refused_with_a_hint(digits, digits_dense, tolerance, hint):
    X, y = digits
    with pytest.raises(ValueError, match=f"'tolerance' .* fraction in \\[0, 1\\].*{hint}"):
        FairPrunedClassifier(digits_dense, tolerance=tolerance, **QUICK).fit(X, y, groups=y)
    with pytest.raises(ValueError, match="'tolerance'"):
        FairPrunedClassifier(digits_dense, tolerance=1e9, **QUICK).fit(X, y, groups=y)


class ForceOneClass(Callback):
    """Make the sparse model answer class 0 for every row at the end of each epoch."""

    def on_epoch_end(self, net, **kwargs):
        last = [m for m in net.module_.modules() if isinstance(m, torch.nn.Linear)][-1]
        with torch.no_grad():
            last.weight.zero_()
            last.bias.copy_(torch.arange(last.bias.numel(), 0, -1, dtype=last.bias.dtype))


def test_a_collapse_to_one_class_is_said_with_its_evidence(digits, digits_dense):
    X, y = digits
    clf = FairPrunedClassifier(digits_dense, callbacks=[("one_class", ForceOneClass())], **QUICK)
    with pytest.warns(PrunedModelCollapseWarning, match="predicts class 0 for 100.0%"):
        clf.fit(X, y, groups=y)
    assert clf.fit_status_ == "collapsed"
    assert (clf.predict(X) == 0).all()


def test_a_model_that_keeps_almost_none_of_the_dense_models_lead_has_collapsed():
    """The rule behind ``fit_status_ == "collapsed"`` beyond one class: a sparse model close
    to the majority-class rate while the dense model is well above it (the Adult demo's case
    with every layer pruned at 99%: 0.768 against a majority rate of 0.759 and a dense 0.870)."""
    from fairprune.estimator import _collapse

    y = np.array([0] * 76 + [1] * 24)  # majority rate 0.76
    dense = y.copy()
    dense[:10] = 1 - dense[:10]  # 0.90: a lead of 0.14 over the majority rate
    barely = np.zeros_like(y)
    barely[76:78] = 1  # right on 2 of the positives ...
    barely[:2] = 1  # ... and wrong on 2 negatives: 0.76, none of the lead kept
    assert "keeps 0% of the dense model's lead" in _collapse(y, dense, barely)
    some = y.copy()
    some[:5] = 1 - some[:5]
    some[76:88] = 0  # 0.83: keeps 50% of the lead
    assert _collapse(y, dense, some) is None
    assert _collapse(y, y.copy(), y.copy()) is None  # a perfect model keeps all of it
    untrained = np.zeros_like(y)  # a dense model with no lead: nothing to lose
    assert _collapse(y, untrained, untrained.copy() + (np.arange(100) == 99)) is None
