import numpy as np
import pytest
from sklearn.model_selection import GridSearchCV

from fairprune import FairPrunedClassifier
from fairprune.groups import by_target
from fairprune.model_selection import best_feasible
from fairprune.scorers import neg_max_excess_accuracy_gap_scorer


def test_rule_picks_most_accurate_feasible_and_falls_back():
    results = {"mean_test_accuracy": [0.99, 0.95, 0.97], "mean_test_max_excess_accuracy_gap": [-0.2, -0.01, -0.04],
               "param_tolerance": np.ma.masked_array([0.05, 0.05, 0.05])}
    assert best_feasible()(results) == 2
    results["param_tolerance"] = np.ma.masked_array([0.001, 0.001, 0.001])
    with pytest.warns(UserWarning, match="No candidate meets its tolerance"):
        assert best_feasible()(results) == 1
    with pytest.raises(ValueError, match="needs 'mean_test_max_excess_accuracy_gap'"):
        best_feasible()({"mean_test_accuracy": [1.0]})
    with pytest.raises(ValueError, match="default_tolerance"):
        best_feasible(tolerance_param="param_x")(results)


def test_gridsearch_refits_best_feasible(digits, digits_dense):
    X, y = digits
    clf = FairPrunedClassifier(digits_dense, sparsity=0.9, groups=by_target, pruning_epochs=1,
                               max_epochs=2, lr=0.05, verbose=0)
    search = GridSearchCV(
        clf, {"tolerance": [0.01, 0.2]}, cv=2, refit=best_feasible(), error_score="raise",
        scoring={"accuracy": "accuracy", "max_excess_accuracy_gap": neg_max_excess_accuracy_gap_scorer},
    ).fit(X, y)
    assert hasattr(search, "best_estimator_")
    results = search.cv_results_
    idx = search.best_index_
    assert -results["mean_test_max_excess_accuracy_gap"][idx] <= results["param_tolerance"][idx]


def test_the_upper_bound_rule_needs_the_folds_to_agree():
    """Candidate 0 meets ε on average but its folds disagree; candidate 1 is a little less
    accurate and meets ε in every fold: the mean rule picks 0, the upper bound picks 1."""
    results = {
        "mean_test_accuracy": [0.95, 0.93],
        "mean_test_max_excess_accuracy_gap": [-0.04, -0.04],
        "split0_test_max_excess_accuracy_gap": [-0.00, -0.041],
        "split1_test_max_excess_accuracy_gap": [-0.08, -0.039],
        "split2_test_max_excess_accuracy_gap": [-0.04, -0.040],
        "param_tolerance": [0.05, 0.05],
    }
    assert best_feasible()(results) == 0
    assert best_feasible(bound="upper")(results) == 1
    with pytest.raises(ValueError, match="'bound'"):
        best_feasible(bound="max")
