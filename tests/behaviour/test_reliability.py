"""Faults during training: NaN loss, interruption, infeasible tolerance."""

import copy
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from skorch.callbacks import Callback

from fairprune import FairPrunedClassifier, FairnessToleranceWarning, PrunedModelCollapseWarning
from support import InterruptAt


class PoisonAt(Callback):
    """Fill the weights with NaN just before one batch of one epoch (both 1-based)."""

    def __init__(self, epoch, batch):
        self.epoch, self.batch, self.seen = epoch, batch, 0

    def on_batch_begin(self, net, batch=None, training=False, **kwargs):
        if not training:
            return
        self.seen += 1
        # skorch appends the batch's history row before the callbacks' on_batch_begin
        if len(net.history) == self.epoch and len(net.history[-1]["batches"]) == self.batch:
            with torch.no_grad():
                for p in net.module_.parameters():
                    p.fill_(float("nan"))


def test_nan_loss_stops_naming_epoch_and_batch_and_keeps_last_good_weights(digits, digits_dense):
    X, y = digits
    clf = FairPrunedClassifier(digits_dense, sparsity=0.5, pruning_epochs=1, max_epochs=3,
                               verbose=0, callbacks=[("poison", PoisonAt(epoch=3, batch=4))])
    with pytest.raises(FloatingPointError, match="at epoch 3, batch 4"):
        clf.fit(X, y, groups=y)
    weights = [p for p in clf.module_.parameters()]
    assert all(torch.isfinite(p).all() for p in weights)
    assert np.isfinite(clf.predict_proba(X)).all()
    assert clf.score(X, y) > 0.5


def test_keyboard_interrupt_leaves_a_usable_model_with_history(digits, digits_dense):
    X, y = digits
    clf = FairPrunedClassifier(digits_dense, sparsity=0.5, pruning_epochs=1, max_epochs=5,
                               verbose=0, callbacks=[("stop", InterruptAt(epoch=3))])
    clf.fit(X, y, groups=y)  # skorch semantics: the interrupt ends training quietly
    assert len(clf.history) == 3
    assert clf.train_report_ is not None and clf.predict(X).shape == y.shape


def test_far_too_tight_tolerance_keeps_multipliers_finite_and_says_it_collapsed(digits,
                                                                             digits_dense):
    """97% of every layer pruned, ε = 0 and a huge dual step: the multipliers grow, stay
    finite and non-negative, and the model collapses to one class: the fit says so (not
    just "tolerance not met")."""
    X, y = digits
    clf = FairPrunedClassifier(digits_dense, sparsity=0.97, dense_layers=(), tolerance=0.0,
                               dual_lr=1.0, pruning_epochs=1, max_epochs=4, verbose=0)
    with pytest.warns(PrunedModelCollapseWarning) as record:
        clf.fit(X, y, groups=y)
    assert np.isfinite(clf.multipliers_).all() and (clf.multipliers_ >= 0).all()
    message = str(record[0].message)
    assert "predicts class" in message and "multipliers summing to" in message
    assert "sparsity_=0.970" in message
    assert clf.fit_status_ == "collapsed" == clf.train_report_.attrs["fit_status"]


def test_a_tolerance_out_of_reach_without_collapse_names_the_worst_groups(digits,
                                                                        digits_dense):
    X, y = digits
    clf = FairPrunedClassifier(digits_dense, sparsity=0.9, dense_layers=(), tolerance=0.0,
                               pruning_epochs=1, max_epochs=2, verbose=0)
    with pytest.warns(FairnessToleranceWarning, match="worst groups") as record:
        clf.fit(X, y, groups=y)
    assert not [w for w in record if issubclass(w.category, PrunedModelCollapseWarning)]
    assert clf.fit_status_ == "tolerance_not_met" == clf.train_report_.attrs["fit_status"]
    assert clf.train_report_["violates"].any()


def test_missing_locator_column_and_one_sample_group(digits, digits_dense):
    X, y = digits
    frame = pd.DataFrame(X)
    frame.columns = [f"p{i}" for i in range(64)]
    clf = FairPrunedClassifier(digits_dense, groups="race", pruning_epochs=1, max_epochs=1, verbose=0)
    with pytest.raises(ValueError, match="X has no column/key 'race'"):
        clf.fit(frame, y)
    labels = np.where(np.arange(len(y)) == 0, "singleton", "rest")  # a group of one sample
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FairnessToleranceWarning)
        fitted = FairPrunedClassifier(digits_dense, sparsity=0.5, pruning_epochs=1, max_epochs=2,
                                      verbose=0).fit(X, y, groups=labels)
    report = fitted.disparity_report(X, y, groups=labels)
    assert report.set_index("group").loc["singleton", "n"] == 1
    assert np.isfinite(fitted.multipliers_).all()


@pytest.mark.parametrize("constraint_data", ["train", "heldout"])
def test_checkpoint_resume_matches_uninterrupted_run(digits, digits_dense, tmp_path,
                                                     constraint_data):
    """Also with held-out estimates: the last held-out pass, which drives the first dual steps
    after the resume, comes back from the checkpoint."""
    from skorch.callbacks import LoadInitState
    from skorch.dataset import ValidSplit

    from fairprune.callbacks import fair_checkpoint

    X, y = digits
    params = dict(sparsity=0.9, tolerance=0.01, dense_layers=(), pruning_epochs=2, max_epochs=3,
                  lr=0.05, verbose=0, random_state=5, constraint_data=constraint_data)
    if constraint_data == "heldout":
        params["train_split"] = ValidSplit(0.2, stratified=True, random_state=0)
    full = FairPrunedClassifier(digits_dense, **params).fit(X, y, groups=y)

    cp = fair_checkpoint(str(tmp_path / "cp"))
    first = FairPrunedClassifier(digits_dense, **params,
                                 callbacks=[("cp", cp), ("stop", InterruptAt(epoch=4))])
    first.fit(X, y, groups=y)  # interrupted at the start of epoch 4: 3 epochs saved
    from fairprune.callbacks.checkpoint import current_generation

    assert len(first.history) == 4
    assert (current_generation(tmp_path / "cp") / "fairness.pt").exists()

    cp2 = fair_checkpoint(str(tmp_path / "cp"))
    resumed = FairPrunedClassifier(digits_dense, **params,
                                   callbacks=[("cp", cp2), ("load", LoadInitState(cp2))])
    resumed.fit(X, y, groups=y)
    assert len(resumed.history) == len(full.history) == 5
    assert resumed.history[:, "phase"] == full.history[:, "phase"]
    assert np.array_equal(resumed.predict_proba(X), full.predict_proba(X))
    assert resumed.multipliers_.equals(full.multipliers_)
    assert resumed.sparsity_ == pytest.approx(full.sparsity_)


def test_save_and_load_params_refuse_mismatched_masks(digits, digits_dense, tmp_path):
    X, y = digits
    clf = FairPrunedClassifier(digits_dense, sparsity=0.5, pruning_epochs=1, max_epochs=1,
                               verbose=0).fit(X, y, groups=y)
    files = dict(f_params=tmp_path / "p.pt", f_masks=tmp_path / "m.pt", f_fairness=tmp_path / "f.pt")
    clf.save_params(**files)
    other = FairPrunedClassifier(digits_dense, sparsity=0.5, pruning_epochs=1, max_epochs=1,
                                 verbose=0).fit(X, y, groups=(y > 4))
    other.load_params(f_params=files["f_params"], f_masks=files["f_masks"])
    assert np.array_equal(other.predict(X), clf.predict(X))
    wrong = torch.nn.Sequential(torch.nn.Linear(64, 10), torch.nn.ReLU(), torch.nn.Linear(10, 10),
                                torch.nn.ReLU(), torch.nn.Linear(10, 10))
    target = FairPrunedClassifier(wrong, sparsity=0.5, pruning_epochs=1, max_epochs=1,
                                  verbose=0).fit(X, y, groups=y)
    with pytest.raises(ValueError, match="do not match the module"):
        target.load_params(f_masks=files["f_masks"])


# -- nothing silent: refits, labels, edge shapes, extreme numbers ------------------------------
def test_failed_refit_keeps_the_fitted_model(digits, digits_dense):
    X, y = digits
    clf = FairPrunedClassifier(digits_dense, sparsity=0.5, dense_layers=(), pruning_epochs=1,
                               max_epochs=1, verbose=0).fit(X, y, groups=y)
    before = clf.predict_proba(X)
    history, masks, sparsity = len(clf.history), clf.masks_, clf.sparsity_
    bad = np.where(X > 0.9, np.nan, X)
    with pytest.raises(ValueError, match="Input X contains NaN"):
        clf.fit(bad, y, groups=y)
    with pytest.raises(ValueError, match="missing label"):
        clf.fit(X, y, groups=[None] + list(y[1:]))
    assert len(clf.history) == history and clf.masks_ is masks and clf.sparsity_ == sparsity
    np.testing.assert_array_equal(clf.predict_proba(X), before)


def test_scores_and_reports_refuse_labels_outside_the_fitted_classes(digits, digits_dense):
    from fairprune.scorers import neg_max_excess_accuracy_gap_scorer

    X, y = digits
    clf = FairPrunedClassifier(digits_dense, sparsity=0.5, dense_layers=(), pruning_epochs=1,
                               max_epochs=1, verbose=0).fit(X, y, groups=y)
    for wrong in (np.array([f"c{v}" for v in y]), y + 10):
        with pytest.raises(ValueError, match="not fitted on"):
            neg_max_excess_accuracy_gap_scorer(clf, X, wrong, groups=y)
        with pytest.raises(ValueError, match="'y'"):
            clf.disparity_report(X, wrong, groups=y)


@pytest.mark.parametrize("groups, error, match", [
    ("ragged", ValueError, "'groups' must be 1-dimensional.*ragged"),
    ("dict", TypeError, "'groups' must be an array-like"),
    ("dicts", TypeError, "'groups' must hold hashable labels"),
])
def test_malformed_groups_name_the_argument(digits, digits_dense, groups, error, match):
    X, y = digits
    value = {"ragged": [[1, 2], [3]] * (len(y) // 2) + [[1]] * (len(y) % 2),
             "dict": {"a": y}, "dicts": [{"g": int(v)} for v in y]}[groups]
    clf = FairPrunedClassifier(digits_dense, pruning_epochs=1, max_epochs=1, verbose=0)
    with pytest.raises(error, match=match):
        clf.fit(X, y, groups=value)


def test_bad_device_and_frozen_module_name_the_argument(digits, digits_dense):
    X, y = digits
    with pytest.raises(ValueError, match="'device' parameter .* 'cuda:0'"):
        FairPrunedClassifier(digits_dense, device="gpu").fit(X, y, groups=y)
    frozen = copy.deepcopy(digits_dense).requires_grad_(False)
    with pytest.raises(ValueError, match="'dense_module' .* no trainable parameters"):
        FairPrunedClassifier(frozen).fit(X, y, groups=y)


@pytest.mark.parametrize("method", ["ceag", "equalized_loss"])
def test_huge_tolerances_are_valid_and_never_overflow(digits, digits_dense, method):
    X, y = digits
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        clf = FairPrunedClassifier(digits_dense, sparsity=0.5, dense_layers=(), method=method,
                                   tolerance=1.0, loss_tolerance=1e300, pruning_epochs=1,
                                   max_epochs=2, verbose=0).fit(X, y, groups=y)
    assert np.isfinite(clf.history[-1, "train_loss"])
    assert clf.history[-1, "n_violated"] == 0 and clf.multipliers_.eq(0).all()
    assert np.isfinite(clf.predict_proba(X)).all()


def test_groups_smaller_than_the_replay_buffer_are_constrained(digits, digits_dense):
    X, y = digits
    keep = (y != 4) | (np.cumsum(y == 4) <= 12)  # group 4: 12 samples, buffers of 40
    X, y = X[keep], y[keep]
    clf = FairPrunedClassifier(digits_dense, sparsity=0.9, tolerance=0.0, dense_layers=(),
                               replay_buffer_size=40, pruning_epochs=1, max_epochs=3,
                               verbose=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FairnessToleranceWarning)
        clf.fit(X, y, groups=y)
    assert bool(clf.fairness_.buffer.ready()[4])
    assert clf.history[-1, "multipliers"][4] > 0


class PoisonAfterLastStep(Callback):
    """Fill the weights with NaN after the last training step (its loss was finite)."""

    def on_batch_end(self, net, training=False, **kwargs):
        last = len(net.history[-1]["batches"]) == -(-1797 // net.batch_size)
        if training and len(net.history) == 2 and last:
            with torch.no_grad():
                next(net.module_.parameters()).fill_(float("inf"))


def test_non_finite_weights_after_the_last_step_are_caught(digits, digits_dense):
    X, y = digits
    clf = FairPrunedClassifier(digits_dense, sparsity=0.5, dense_layers=(), pruning_epochs=1,
                               max_epochs=1, verbose=0,
                               callbacks=[("poison", PoisonAfterLastStep())])
    with pytest.raises(FloatingPointError, match="in epoch 2, .*batch 15"):
        clf.fit(X, y, groups=y)
    assert all(torch.isfinite(p).all() for p in clf.module_.parameters())
    assert np.isfinite(clf.predict_proba(X)).all()


def test_a_model_with_no_finite_state_left_refuses_to_predict(digits, digits_dense):
    from sklearn.exceptions import NotFittedError

    X, y = digits
    poisoned = copy.deepcopy(digits_dense)
    with torch.no_grad():
        poisoned[0].weight[0, 0] = float("nan")
    clf = FairPrunedClassifier(poisoned, sparsity=0.5, dense_layers=(), pruning_epochs=1,
                               max_epochs=1, verbose=0)
    with pytest.raises(FloatingPointError):
        clf.fit(X, y, groups=y)
    with pytest.raises(NotFittedError, match="cannot be used"):
        clf.predict(X)


class InterruptingSGD(torch.optim.SGD):
    """SGD whose 5th step updates the weights and is then interrupted (before the masks)."""

    calls = 0

    def step(self, closure=None):
        result = super().step(closure)
        InterruptingSGD.calls += 1
        if InterruptingSGD.calls == 5:
            raise KeyboardInterrupt
        return result


def test_interrupt_inside_the_optimizer_step_keeps_masks_applied(digits, digits_dense):
    X, y = digits
    InterruptingSGD.calls = 0
    clf = FairPrunedClassifier(digits_dense, sparsity=0.8, dense_layers=(), pruning_epochs=1,
                               max_epochs=2, optimizer=InterruptingSGD, verbose=0)
    clf.fit(X, y, groups=y)  # skorch ends training quietly on KeyboardInterrupt
    assert abs(clf.sparsity_ - 0.8) < 0.01
    exported = clf.export()
    with torch.no_grad():
        direct = exported(torch.as_tensor(X)).argmax(1).numpy()
    np.testing.assert_array_equal(clf.predict(X), direct)


def test_interrupt_inside_the_dual_step_keeps_multipliers_feasible(digits, digits_dense,
                                                                   monkeypatch):
    from fairprune.training import GradientAscent

    X, y = digits
    original, calls = GradientAscent.step, {"n": 0}

    def step_then_interrupt(self):
        original(self)
        calls["n"] += 1
        if calls["n"] == 8:  # after the ascent, before the projection onto λ >= 0
            for group in self.param_groups:
                for param in group["params"]:
                    param.detach().sub_(1.0)
            raise KeyboardInterrupt

    monkeypatch.setattr(GradientAscent, "step", step_then_interrupt)
    clf = FairPrunedClassifier(digits_dense, sparsity=0.8, dense_layers=(), pruning_epochs=1,
                               max_epochs=2, verbose=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FairnessToleranceWarning)
        clf.fit(X, y, groups=y)
    assert calls["n"] == 8 and (clf.multipliers_ >= 0).all()


def test_batchnorm_model_with_a_last_batch_of_one_sample_trains(digits):
    X, y = digits
    X, y = X[:1793], y[:1793]  # 14 batches of 128 and one of a single sample
    torch.manual_seed(0)
    dense = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.BatchNorm1d(32),
                                torch.nn.ReLU(), torch.nn.Linear(32, 10))
    clf = FairPrunedClassifier(dense, sparsity=0.5, dense_layers=(), pruning_epochs=1,
                               max_epochs=1, verbose=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FairnessToleranceWarning)
        clf.fit(X, y, groups=y)
    assert len(clf.history[-1, "batches"]) == 14  # the single-sample batch is dropped
    with pytest.raises(ValueError, match="BatchNorm .* batch_size >= 2"):
        FairPrunedClassifier(dense, batch_size=1, dense_layers=(), verbose=0).fit(
            X[:10], y[:10], groups=y[:10])


@pytest.mark.parametrize("name, value", [
    ("tolerance", 1.0), ("loss_tolerance", 1e300), ("max_multiplier_sum", 1e300),
    ("dual_lr", 3e38), ("lr", 3e38), ("lr_gamma", 1.0), ("lr_gamma", 1e-300)])
@pytest.mark.parametrize("method", ["ceag", "equalized_loss"])
def test_extreme_valid_numbers_give_a_model_or_a_clear_error(digits, digits_dense, name, value,
                                                             method):
    """The extremes of every real parameter's valid range: the fit either ends with finite
    predictions or stops with FloatingPointError naming the epoch; no overflow anywhere."""
    X, y = digits
    clf = FairPrunedClassifier(digits_dense, sparsity=0.5, dense_layers=(), method=method,
                               pruning_epochs=1, max_epochs=1, verbose=0, **{name: value})
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        warnings.simplefilter("ignore", FairnessToleranceWarning)
        try:
            clf.fit(X, y, groups=y)
        except FloatingPointError as exc:
            assert "epoch" in str(exc)
            return
    assert np.isfinite(clf.predict_proba(X)).all()
    assert np.isfinite(clf.multipliers_).all()


@pytest.mark.parametrize("name, value", [("lr", 1e300), ("dual_lr", 1e300), ("lr_gamma", 2.0)])
def test_steps_beyond_float32_are_refused(digits, digits_dense, name, value):
    X, y = digits
    with pytest.raises(ValueError, match=f"'{name}' parameter"):
        FairPrunedClassifier(digits_dense, **{name: value}).fit(X, y, groups=y)


def test_the_warning_names_groups_whose_constraints_never_acted(digits, digits_dense):
    X, y = digits

    def group_nine_held_out(dataset, y=None, **kwargs):
        """A validation split holding every sample of class (and group) 9."""
        labels = np.asarray(y)
        train, valid = np.flatnonzero(labels != 9), np.flatnonzero(labels == 9)
        return torch.utils.data.Subset(dataset, train), torch.utils.data.Subset(dataset, valid)

    clf = FairPrunedClassifier(digits_dense, sparsity=0.9, tolerance=0.0, dense_layers=(),
                               pruning_epochs=1, max_epochs=1, verbose=0,
                               train_split=group_nine_held_out)
    with pytest.warns(FairnessToleranceWarning, match=r"constraints of \[9\] never acted"):
        clf.fit(X, y, groups=y)


class PoisonBatchNormStatistics(Callback):
    """Set a BatchNorm's running variance to NaN: at the last training batch, or at the end
    of training (after every check of the epoch loop)."""

    def __init__(self, when):
        self.when = when

    def _poison(self, net):
        norms = [m for m in net.module_.modules() if isinstance(m, torch.nn.BatchNorm1d)]
        with torch.no_grad():
            norms[0].running_var.fill_(float("nan"))

    def on_batch_end(self, net, training=False, **kwargs):
        last = len(net.history) == net.pruning_epochs + net.max_epochs
        if self.when == "last batch" and training and last and len(net.history[-1]["batches"]) == 14:
            self._poison(net)

    def on_train_end(self, net, **kwargs):
        if self.when == "train end":
            self._poison(net)


def _batchnorm_dense(X, y):
    torch.manual_seed(0)
    dense = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.BatchNorm1d(32),
                                torch.nn.ReLU(), torch.nn.Linear(32, 10))
    from fairprune.datasets.models import train_classifier

    return train_classifier(dense, X, y, epochs=2)


def test_non_finite_statistics_restore_the_previous_epoch(digits):
    """BatchNorm statistics are state too: NaN running variances at the end of an epoch are
    caught like non-finite weights, and the restored model predicts finite probabilities."""
    X, y = digits
    clf = FairPrunedClassifier(_batchnorm_dense(X, y), sparsity=0.5, dense_layers=(),
                               pruning_epochs=1, max_epochs=1, verbose=0,
                               callbacks=[("poison", PoisonBatchNormStatistics("last batch"))])
    with pytest.raises(FloatingPointError, match="weights, statistics or multipliers became NaN"):
        clf.fit(X, y, groups=y)
    assert np.isfinite(clf.predict_proba(X)).all()


def test_a_model_whose_outputs_are_not_finite_is_never_returned(digits):
    from sklearn.exceptions import NotFittedError

    X, y = digits
    clf = FairPrunedClassifier(_batchnorm_dense(X, y), sparsity=0.5, dense_layers=(),
                               pruning_epochs=1, max_epochs=1, verbose=0,
                               callbacks=[("poison", PoisonBatchNormStatistics("train end"))])
    with pytest.raises(FloatingPointError, match="not usable.*NaN/inf outputs on 1797 of 1797"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            clf.fit(X, y, groups=y)
    with pytest.raises(NotFittedError, match="cannot be used"):
        clf.predict(X)
