"""Contracts of a fitted estimator: continuing a fit (warm start, partial_fit, after a pickle
round trip) and the inputs predict takes after fit."""

import io
import pickle
import warnings

import numpy as np
import pytest
import torch

from fairprune import FairPrunedClassifier

QUICK = dict(sparsity=0.9, pruning_epochs=1, max_epochs=2, verbose=0, lr=0.1)


def fitted(dense, X, y, **params):
    clf = FairPrunedClassifier(dense, **{**QUICK, **params})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return clf.fit(X, y, groups=y)


def quietly(call, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return call(*args, **kwargs)


# -- warm starts -------------------------------------------------------------------------------
def test_a_warm_start_applies_a_new_tolerance(digits, digits_dense):
    """set_params(tolerance=...) then a warm-start fit: the next steps use the new ε (the
    step used to be cached with the old one)."""
    X, y = digits
    clf = fitted(digits_dense, X, y, warm_start=True, tolerance=0.05)
    clf.set_params(tolerance=0.0)
    quietly(clf.fit, X, y, groups=y)
    (engine,) = clf.engines_.values()
    assert engine.problem.tolerance == 0.0


def test_a_warm_start_refuses_a_changed_run_parameter(digits, digits_dense):
    X, y = digits
    clf = fitted(digits_dense, X, y, warm_start=True)
    epochs, sparsity = len(clf.history), clf.sparsity_
    clf.set_params(sparsity=0.5)
    with pytest.raises(ValueError, match=r"sparsity was 0\.9, is now 0\.5"):
        clf.fit(X, y, groups=y)
    assert len(clf.history) == epochs and clf.sparsity_ == sparsity  # the fitted model kept
    clf.set_params(sparsity=0.9, dual_lr=0.5)  # a numeric dual step is applied
    quietly(clf.fit, X, y, groups=y)
    assert clf.dual_lr_ == 0.5
    assert all(g["lr"] == 0.5 for g in clf.dual_optimizer_.param_groups)
    clf.set_params(warm_start=False, sparsity=0.5)  # a fresh fit takes anything
    quietly(clf.fit, X, y, groups=y)
    assert clf.sparsity_ == pytest.approx(0.5, abs=0.01)


# -- pickles -----------------------------------------------------------------------------------
def test_continuing_after_a_pickle_round_trip_equals_continuing_the_original(digits,
                                                                             digits_dense):
    X, y = digits
    clf = fitted(digits_dense, X, y, tolerance=0.0)
    copy = pickle.loads(pickle.dumps(clf))
    quietly(clf.partial_fit, X, y, groups=y)
    before = copy.multipliers_.to_numpy().copy()
    quietly(copy.partial_fit, X, y, groups=y)
    assert not np.array_equal(copy.multipliers_.to_numpy(), before)  # the multipliers moved
    np.testing.assert_allclose(copy.multipliers_.to_numpy(), clf.multipliers_.to_numpy())
    np.testing.assert_array_equal(copy.predict(X), clf.predict(X))


class _TensorFinder(pickle.Pickler):
    """Pickler that records the tensors it meets."""

    def __init__(self, file):
        super().__init__(file)
        self.tensors = []

    def persistent_id(self, obj):
        if isinstance(obj, torch.Tensor):
            self.tensors.append(obj)
            return len(self.tensors)
        return None


def test_every_tensor_of_a_fitted_model_pickles_through_the_device_aware_part(digits,
                                                                              digits_dense):
    """skorch maps the tensors of its ``cuda_dependent_attributes_`` to the loading machine's
    device; a tensor anywhere else in the pickle (a dual optimizer or an LR scheduler holding a
    copy of the optimizer) would make a model pickled on a GPU fail to load on a CPU."""
    X, y = digits
    clf = fitted(digits_dense, X, y)
    state = clf.__getstate__()
    state.pop("__cuda_dependent_attributes__")
    finder = _TensorFinder(io.BytesIO())
    finder.dump(state)
    assert finder.tensors == []


# -- inputs after fit ------------------------------------------------------------------------
def test_predict_checks_inputs_as_fit_does(digits, digits_dense):
    X, y = digits
    clf = fitted(digits_dense, X, y)
    expected = clf.predict(X[:5])
    with pytest.raises(ValueError, match=r"per-sample shape \(10,\).*\(64,\)"):
        clf.predict(torch.zeros(3, 10))
    with pytest.raises(ValueError, match=r"X must have 2 dimensions.*reshape\(1, -1\)"):
        clf.predict(torch.as_tensor(X[0]))
    # numeric inputs are converted to the fitted dtype, as scikit-learn's estimators do
    np.testing.assert_array_equal(clf.predict(torch.as_tensor(X[:5], dtype=torch.float64)),
                                  expected)
    np.testing.assert_array_equal(clf.predict_proba(X[:5].astype(np.float64)).argmax(1),
                                  expected)
    assert clf.predict((X[:5] * 16).round().astype(np.int64)).shape == (5,)
    with pytest.raises(ValueError, match="X must be numeric"):
        X_text = X[:5].astype(object)
        X_text[0, 0] = "north"
        clf.predict(X_text)


def test_random_state_is_a_32_bit_seed(digits, digits_dense):
    X, y = digits
    with pytest.raises(ValueError, match="'random_state' parameter"):
        FairPrunedClassifier(digits_dense, random_state=2**62, **QUICK).fit(X, y, groups=y)
    clf = fitted(digits_dense, X, y, random_state=2**32 - 1)  # the largest seed trains
    assert clf.sparsity_ == pytest.approx(0.9, abs=0.01)
