"""Constraints on true- and true-negative rates (``gap_metric``): cells, their Lagrangian,
the report's rate columns and the scorers."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.datasets import load_digits

from fairprune import FairPrunedClassifier, disparity_report
from fairprune.cells import ConstraintCells
from fairprune.constraints.problems import CEAGProblem, FairnessState
from fairprune.constraints.statistics import batch_group_stats, excess_gaps
from fairprune.datasets.models import make_mlp, train_classifier
from fairprune.metrics import max_excess_tnr_gap, max_excess_tpr_gap
from fairprune.scorers import neg_max_excess_tnr_gap_scorer, neg_max_excess_tpr_gap_scorer


@pytest.fixture(scope="module")
def binary_digits():
    X, y = load_digits(return_X_y=True)
    X = (X / 16).astype("float32")
    target = (y >= 5).astype(int)
    torch.manual_seed(0)
    dense = make_mlp(64, 2, (32,))
    train_classifier(dense, X, target, epochs=10, seed=0)
    return X, target, y % 3, dense


def _by_hand(y, dense, sparse, groups, positive: bool):
    rows = (y == 1) if positive else (y == 0)
    gaps, sizes = {}, {}
    for g in np.unique(groups):
        cell = rows & (groups == g)
        gaps[g] = (dense[cell] == y[cell]).mean() - (sparse[cell] == y[cell]).mean()
        sizes[g] = cell.sum()
    overall = (dense[rows] == y[rows]).mean() - (sparse[rows] == y[rows]).mean()
    return {g: gaps[g] - overall for g in gaps}, gaps


def test_report_rate_columns_agree_with_a_hand_computation():
    rng = np.random.default_rng(0)
    n = 500
    y = rng.integers(0, 2, n)
    groups = rng.choice(["a", "b", "c"], n)
    dense = np.where(rng.random(n) < 0.9, y, 1 - y)
    sparse = np.where(rng.random(n) < 0.75, y, 1 - y)
    report = disparity_report(y, dense, sparse, groups, tolerance=0.02, n_boot=200,
                              random_state=0).set_index("group")
    for positive, rate in ((True, "tpr"), (False, "tnr")):
        excess, gaps = _by_hand(y, dense, sparse, groups, positive)
        for g in excess:
            assert report.loc[g, f"{rate}_gap"] == pytest.approx(gaps[g])
            assert report.loc[g, f"excess_{rate}_gap"] == pytest.approx(excess[g])
            assert (report.loc[g, f"excess_{rate}_gap_ci_low"] <= excess[g]
                    <= report.loc[g, f"excess_{rate}_gap_ci_high"])
        assert report.attrs[f"max_excess_{rate}_gap"] == pytest.approx(max(excess.values()))
        low, high = report.attrs[f"max_excess_{rate}_gap_ci"]
        assert low <= report.attrs[f"max_excess_{rate}_gap"] <= high
    assert max_excess_tpr_gap(y, dense, sparse, groups) == pytest.approx(
        report.attrs["max_excess_tpr_gap"])
    assert max_excess_tnr_gap(y, dense, sparse, groups) == pytest.approx(
        report.attrs["max_excess_tnr_gap"])


def test_a_group_without_positives_has_nan_rates_and_no_tpr_cell():
    y = np.array([1, 0, 1, 0, 0, 0])
    groups = np.array(["a", "a", "b", "b", "c", "c"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        report = disparity_report(y, y, 1 - y, groups).set_index("group")
    assert np.isnan(report.loc["c", "tpr_gap"]) and np.isnan(report.loc["c", "excess_tpr_gap"])
    cells = ConstraintCells("tpr", 2).fit(np.array([0, 0, 1, 1, 2, 2]), y, 3)
    assert cells.names_ == [(0, "tpr"), (1, "tpr")]
    assert cells.transform(np.array([0, 0, 2]), np.array([1, 0, 0])).tolist() == [0, 2, 2]


def test_scorers_return_minus_the_reports_maxima(binary_digits):
    X, y, groups, dense = binary_digits
    clf = FairPrunedClassifier(dense, sparsity=0.9, dense_layers=(), pruning_epochs=1,
                               max_epochs=1, verbose=0).fit(X, y, groups=groups)
    report = clf.disparity_report(X, y, groups=groups)
    assert neg_max_excess_tpr_gap_scorer(clf, X, y, groups=groups) == pytest.approx(
        -report.attrs["max_excess_tpr_gap"])
    assert neg_max_excess_tnr_gap_scorer(clf, X, y, groups=groups) == pytest.approx(
        -report.attrs["max_excess_tnr_gap"])


def test_cell_excess_gaps_compare_with_their_family():
    gaps = torch.tensor([0.3, 0.1, 0.2, 0.0, 0.5])
    weights = torch.tensor([1.0, 3.0, 2.0, 2.0, 7.0])
    families = torch.tensor([0, 0, 1, 1, 2])
    psi = excess_gaps(gaps, weights, torch.ones(5, dtype=torch.bool), families)
    torch.testing.assert_close(psi, torch.tensor([0.15, -0.05, 0.1, -0.1, 0.0]))


def test_cell_primal_objective_has_the_lagrangian_gradient():
    """L + Σ_c λ_c (L_c − L_family(c)), with the scratch cell (no constraint) last."""
    torch.manual_seed(0)
    families = torch.tensor([0, 0, 1, 1, 2])  # two TPR cells, two TNR cells, scratch
    state = FairnessState(5, 0, True, families=families)
    with torch.no_grad():
        state.multiplier.weight.copy_(torch.tensor([0.3, 0.7, 0.2, 0.5, 0.0]))
    problem = CEAGProblem(state, 0.0)
    theta = torch.randn(16, requires_grad=True)
    ids = torch.tensor([0, 1, 2, 3] * 3 + [0, 2, 1, 1])
    losses = theta.square()
    stats = batch_group_stats(losses.detach(), torch.ones(16), ids, 5)
    (grad,) = torch.autograd.grad(problem.primal_objective(losses, stats), theta,
                                  retain_graph=True)
    lam = state.multiplier.weight.detach()
    family_loss = {f: losses[families[ids] == f].mean() for f in (0, 1)}
    lagrangian = losses.mean() + sum(
        lam[c] * (losses[ids == c].mean() - family_loss[int(families[c])]) for c in range(4))
    (expected,) = torch.autograd.grad(lagrangian, theta)
    torch.testing.assert_close(grad, expected)


@pytest.mark.parametrize("gap_metric, rates", [("tpr", {"tpr"}), ("tnr", {"tnr"}),
                                                ("equalized_odds", {"tpr", "tnr"})])
def test_multipliers_name_the_cells(binary_digits, gap_metric, rates):
    X, y, groups, dense = binary_digits
    clf = FairPrunedClassifier(dense, sparsity=0.9, dense_layers=(), gap_metric=gap_metric,
                               pruning_epochs=1, max_epochs=2, verbose=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clf.fit(X, y, groups=groups)
    index = clf.multipliers_.index
    assert set(index.get_level_values("rate")) == rates
    assert len(index) == 3 * len(rates)
    name = {"tpr": "tpr_gap", "tnr": "tnr_gap"}.get(gap_metric, "rate_gap")
    assert len(clf.history[-1, f"train_excess_{name}"]) == len(index)
    cells = clf.constraint_report(X, y, groups=groups)
    assert len(cells) == len(index)
    assert cells.attrs["max_excess_gap"] == pytest.approx(cells["excess_gap"].max())


def test_multiclass_tpr_has_one_multiplier_per_group_and_class_cell():
    X, y = load_digits(return_X_y=True)
    X = (X / 16).astype("float32")
    torch.manual_seed(0)
    dense = make_mlp(64, 10, (32,))
    train_classifier(dense, X, y, epochs=5, seed=0)
    rng = np.random.default_rng(0)
    groups = rng.choice(["u", "v"], len(y))
    keep = ~((groups == "v") & (y == 7))  # group v has no row of class 7
    X, y, groups = X[keep], y[keep], groups[keep]
    clf = FairPrunedClassifier(dense, sparsity=0.8, dense_layers=(), gap_metric="tpr",
                               pruning_epochs=1, max_epochs=1, verbose=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clf.fit(X, y, groups=groups)
    assert len(clf.multipliers_) == 19
    assert ("v", "recall 7") not in clf.multipliers_.index
    assert ("u", "recall 7") in clf.multipliers_.index


@pytest.mark.parametrize("value", ["recall", "fpr"])
def test_unknown_gap_metric_names_the_parameter(binary_digits, value):
    X, y, groups, dense = binary_digits
    with pytest.raises(ValueError, match="gap_metric"):
        FairPrunedClassifier(dense, gap_metric=value, verbose=0).fit(X, y, groups=groups)


def test_rate_metrics_need_ceag_and_tnr_needs_a_binary_target(binary_digits):
    X, y, groups, dense = binary_digits
    with pytest.raises(ValueError, match="gap_metric"):
        FairPrunedClassifier(dense, gap_metric="tpr", method="equalized_loss",
                             verbose=0).fit(X, y, groups=groups)
    with pytest.raises(ValueError, match="binary"):
        ConstraintCells("equalized_odds", 10)


def test_violates_follows_the_constrained_metric(binary_digits):
    X, y, groups, dense = binary_digits
    clf = FairPrunedClassifier(dense, sparsity=0.97, tolerance=0.0, dense_layers=(),
                               gap_metric="tpr", method="nft", pruning_epochs=1, max_epochs=1,
                               verbose=0).fit(X, y, groups=groups)
    report = clf.disparity_report(X, y, groups=groups)
    cells = clf.constraint_report(X, y, groups=groups)
    over = set(cells.loc[cells["violates"].astype(bool), "group"])
    assert set(report.loc[report["violates"].astype(bool), "group"]) == over
    assert report.attrs["gap_metric"] == "tpr"
    assert pd.isna(report.attrs.get("max_excess_gap")) is False


def test_grid_search_selects_on_the_constrained_rate(binary_digits):
    from sklearn.model_selection import GridSearchCV

    from fairprune.model_selection import best_feasible

    X, y, groups, dense = binary_digits
    frame = pd.DataFrame(X).rename(columns=str).assign(g=groups)
    clf = FairPrunedClassifier(dense, sparsity=0.9, groups="g", gap_metric="tpr",
                               dense_layers=(), pruning_epochs=1, max_epochs=2, verbose=0)
    search = GridSearchCV(
        clf, {"tolerance": [0.005, 0.2]}, cv=2, error_score="raise",
        refit=best_feasible(disparity="max_excess_tpr_gap"),
        scoring={"accuracy": "accuracy", "max_excess_tpr_gap": neg_max_excess_tpr_gap_scorer})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        search.fit(frame, y)
    results, index = search.cv_results_, search.best_index_
    feasible = -results["mean_test_max_excess_tpr_gap"] <= results["param_tolerance"].astype(float)
    assert feasible[1]  # ε = 0.2 is far above any fold's gap
    assert feasible[index]
    assert results["mean_test_accuracy"][index] == results["mean_test_accuracy"][feasible].max()
