"""sensitive_features (fairlearn's name) for the fairness groups, groups for CV splitters."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import sklearn
from sklearn.model_selection import GroupKFold, cross_validate

from fairprune import FairnessToleranceWarning, FairPrunedClassifier
from fairprune.scorers import neg_max_excess_accuracy_gap_scorer


class RecordingGroupKFold(GroupKFold):
    """GroupKFold that remembers the groups it split by."""

    received: list = []

    def split(self, X, y=None, groups=None):
        RecordingGroupKFold.received.append(np.asarray(groups))
        return super().split(X, y, groups)


def _setup(digits):
    X, y = digits
    person = np.arange(len(y)) % 7  # who the sample comes from: the CV split
    race = np.where(y < 5, "a", "b")  # what the constraints protect
    return X, y, person, race


def _clf(dense, **params):
    return FairPrunedClassifier(dense, dense_layers=(), pruning_epochs=1, max_epochs=1,
                                verbose=0, **params)


@pytest.mark.parametrize("how", ["routing", "locator"])
def test_group_kfold_splits_by_person_while_constraints_use_race(digits, digits_dense, how):
    X, y, person, race = _setup(digits)
    RecordingGroupKFold.received = []
    with sklearn.config_context(enable_metadata_routing=True), warnings.catch_warnings():
        warnings.simplefilter("ignore", FairnessToleranceWarning)
        if how == "routing":
            est = _clf(digits_dense).set_fit_request(sensitive_features=True)
            result = cross_validate(est, X, y, cv=RecordingGroupKFold(3),
                                    scoring=neg_max_excess_accuracy_gap_scorer, return_estimator=True,
                                    params={"groups": person, "sensitive_features": race})
        else:
            frame = pd.DataFrame(X).rename(columns=str).assign(race=race)
            result = cross_validate(_clf(digits_dense, groups="race"), frame, y,
                                    cv=RecordingGroupKFold(3), scoring=neg_max_excess_accuracy_gap_scorer,
                                    return_estimator=True, params={"groups": person})
    assert len(RecordingGroupKFold.received) == 1
    np.testing.assert_array_equal(RecordingGroupKFold.received[0], person)
    for fitted in result["estimator"]:
        assert fitted.groups_.tolist() == ["a", "b"]  # race, not the 7 person ids
    assert np.isfinite(result["test_score"]).all()


def test_both_names_at_once_is_an_error(digits, digits_dense):
    X, y, person, race = _setup(digits)
    with pytest.raises(ValueError, match="both as 'groups' and as 'sensitive_features'"):
        _clf(digits_dense).fit(X, y, groups=race, sensitive_features=race)
    fitted = _clf(digits_dense).fit(X, y, sensitive_features=race)
    with pytest.raises(ValueError, match="both as 'groups' and as 'sensitive_features'"):
        neg_max_excess_accuracy_gap_scorer(fitted, X, y, groups=race, sensitive_features=race)
    report = fitted.disparity_report(X, y, sensitive_features=race)
    assert report["group"].tolist() == ["a", "b"]
    assert neg_max_excess_accuracy_gap_scorer(fitted, X, y, sensitive_features=race) == pytest.approx(
        -report.attrs["max_excess_accuracy_gap"])


def test_heldout_monitoring_matches_a_report_on_the_validation_rows(digits, digits_dense):
    """With a validation split, history gives the held-out ψ_g of every epoch (eval mode, end
    of epoch, against the dense model on those rows); without one, the keys are absent."""
    import torch

    from fairprune import disparity_report

    X, y = digits
    n_valid = 300

    def last_rows(dataset, y=None, **kwargs):
        n = len(dataset)
        return (torch.utils.data.Subset(dataset, range(n - n_valid)),
                torch.utils.data.Subset(dataset, range(n - n_valid, n)))

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FairnessToleranceWarning)
        clf = _clf(digits_dense, sparsity=0.8, train_split=last_rows).fit(
            X, y, groups=y)
        plain = _clf(digits_dense, sparsity=0.8).fit(X, y, groups=y)
    Xv, yv = X[-n_valid:], y[-n_valid:]
    report = disparity_report(yv, clf.predict_dense(Xv), clf.predict(Xv), yv)
    last = clf.history[-1]
    assert last["valid_max_excess_accuracy_gap"] == pytest.approx(report.attrs["max_excess_accuracy_gap"],
                                                  abs=1e-6)
    assert last["valid_pairwise_disparity"] == pytest.approx(report.attrs["pairwise_disparity"], abs=1e-6)
    np.testing.assert_allclose(last["valid_excess_accuracy_gap"], report["excess_accuracy_gap"], atol=1e-6)
    assert all("valid_max_excess_accuracy_gap" in row for row in clf.history)
    assert not any("valid_max_excess_accuracy_gap" in row or "valid_excess_accuracy_gap" in row for row in plain.history)
