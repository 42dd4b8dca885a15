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


def test_compare_candidates_pairs_the_folds():
    """Candidates 0 and 1 differ by the same amount in every fold: their paired difference is
    told apart from 0 though their own intervals overlap; 1 and 2 differ only by noise. The
    intervals are Student's t with the corrected k-fold standard error."""
    from scipy.stats import t

    from fairprune.model_selection import compare_candidates

    folds = np.array([[0.02, 0.06, 0.03], [0.03, 0.07, 0.04], [0.04, 0.05, 0.05]])
    results = {"param_tolerance": [0.0, 0.01, 0.05]}
    for i in range(3):
        results[f"split{i}_test_max_excess_accuracy_gap"] = list(-folds[:, i])
    candidates, differences = compare_candidates(results)
    assert list(candidates["candidate"]) == [0.0, 0.01, 0.05]
    np.testing.assert_allclose(candidates["mean"], folds.mean(axis=1))
    half = t.ppf(0.975, 2) * np.sqrt((1 / 3 + 1 / 2) * folds.var(axis=1, ddof=1))
    np.testing.assert_allclose(candidates["ci_high"] - candidates["mean"], half)
    assert candidates.loc[0, "ci_high"] > candidates.loc[1, "ci_low"]  # overlapping
    row = differences.set_index(["a", "b"]).loc[(0.0, 0.01)]
    assert row["difference"] == pytest.approx(-0.01) and bool(row["distinguishable"])
    assert not differences.set_index(["a", "b"]).loc[(0.01, 0.05), "distinguishable"]
    with pytest.raises(ValueError, match="at least 2 folds"):
        compare_candidates({"param_tolerance": [0.0],
                            "split0_test_max_excess_accuracy_gap": [-0.1]})
    with pytest.raises(ValueError, match="'param_eps' is not in cv_results_"):
        compare_candidates(results, param="param_eps")


def test_a_candidate_whose_grid_does_not_set_the_tolerance_is_not_dropped():
    """A list-of-dicts grid leaves param_tolerance masked for some candidates: they take
    default_tolerance, and without it the rule says which candidates lack one."""
    results = {
        "mean_test_accuracy": [0.90, 0.95],
        "mean_test_max_excess_accuracy_gap": [-0.01, -0.03],
        "param_tolerance": np.ma.masked_array([0.02, 0.0], mask=[False, True]),
    }
    assert best_feasible(default_tolerance=0.05)(results) == 1
    with pytest.raises(ValueError, match=r"candidates \[1\] have no 'param_tolerance'"):
        best_feasible()(results)
