import numpy as np
import pandas as pd
import pytest
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.model_selection import cross_validate
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer

from fairprune.metrics import max_excess_accuracy_gap, pairwise_disparity
from fairprune.scorers import (
    make_disparity_scorer,
    neg_max_excess_accuracy_gap_scorer,
    neg_pairwise_disparity_scorer,
)


class StandIn(ClassifierMixin, BaseEstimator):
    """Minimal estimator: 'dense' predicts the first feature, 'sparse' flips group 'b'."""

    def __init__(self, groups=None):
        self.groups = groups

    def fit(self, X, y):
        self.classes_ = np.unique(y)
        return self

    def _x(self, X):
        return X.drop(columns=["g"]) if isinstance(X, pd.DataFrame) else X

    def predict_dense(self, X):
        return np.asarray(self._x(X))[:, 0].astype(int)

    def predict(self, X):
        pred = self.predict_dense(X)
        flip = np.asarray(X["g"] == "b") if isinstance(X, pd.DataFrame) else np.zeros(len(pred), bool)
        return np.where(flip, 1 - pred, pred)


@pytest.fixture
def data():
    y = np.array([0, 1, 0, 1, 0, 1, 0, 1])
    X = pd.DataFrame({"x": y, "g": ["a", "a", "a", "a", "b", "b", "a", "a"]})
    return X, y


def test_scorers_negate_the_metric_with_locator(data):
    X, y = data
    est = StandIn(groups="g").fit(X, y)
    dense, sparse = est.predict_dense(X), est.predict(X)
    assert neg_pairwise_disparity_scorer(est, X, y) == pytest.approx(
        -pairwise_disparity(y, dense, sparse, X["g"])
    )
    assert neg_max_excess_accuracy_gap_scorer(est, X, y) == pytest.approx(
        -max_excess_accuracy_gap(y, dense, sparse, X["g"])
    )
    assert neg_pairwise_disparity_scorer(est, X, y) == pytest.approx(-1.0)


def test_direct_groups_and_missing_groups_error(data):
    X, y = data
    est = StandIn().fit(X, y)
    assert neg_pairwise_disparity_scorer(est, X, y, groups=X["g"]) == pytest.approx(-1.0)
    with pytest.raises(ValueError, match="needs group labels"):
        neg_pairwise_disparity_scorer(est, X, y)


def test_pipeline_and_cross_validate(data):
    X, y = data
    pipe = make_pipeline(FunctionTransformer(lambda d: d), StandIn(groups="g"))
    result = cross_validate(
        pipe, pd.concat([X] * 3), np.tile(y, 3), cv=3,
        scoring={"pw": neg_pairwise_disparity_scorer, "eag": neg_max_excess_accuracy_gap_scorer},
        error_score="raise",
    )
    assert np.all(result["test_pw"] <= 0) and np.all(np.isfinite(result["test_eag"]))


def test_make_disparity_scorer_checks_metric_and_estimator(data):
    X, y = data
    with pytest.raises(TypeError, match="needs a callable metric"):
        make_disparity_scorer("pairwise")
    scorer = make_disparity_scorer(pairwise_disparity, greater_is_better=True)
    assert scorer(StandIn(groups="g").fit(X, y), X, y) == pytest.approx(1.0)

    class NoDense(ClassifierMixin, BaseEstimator):
        groups = "g"

        def predict(self, X):
            return np.zeros(len(X), int)

    with pytest.raises(TypeError, match="predict_dense"):
        scorer(NoDense(), X, y)
