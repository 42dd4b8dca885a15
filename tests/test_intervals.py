"""Bootstrap intervals of the disparity report: the categories' algebra, the paired and
group-stratified resampling, reproducibility, verdicts and coverage."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fairprune import disparity_report
from fairprune.exceptions import SmallGroupWarning
from fairprune.intervals import (MIN_GROUP_SIZE, bootstrap_category_counts, category_counts,
                                 row_categories, statistics_of_counts)
from fairprune.report import RATE_COLUMNS


def predictions(n=600, n_groups=4, seed=0, binary=True):
    rng = np.random.default_rng(seed)
    groups = rng.integers(0, n_groups, n)
    classes = 2 if binary else 5
    y = rng.integers(0, classes, n)
    dense = np.where(rng.random(n) < 0.9, y, rng.integers(0, classes, n))
    sparse = np.where(rng.random(n) < 0.8 - 0.05 * groups, y, rng.integers(0, classes, n))
    return y, dense, sparse, groups


cases = st.tuples(st.integers(1, 60), st.integers(1, 5), st.integers(0, 10_000),
                  st.booleans())


@given(cases)
@settings(max_examples=60, deadline=None)
def test_statistics_of_the_observed_counts_are_the_report_by_hand(case):
    """The category counts reproduce every column computed the naive way, row by row."""
    n, n_groups, seed, binary = case
    y, dense, sparse, groups = predictions(n, n_groups, seed, binary)
    pos_label = 1 if binary else None
    categories, k = row_categories(y, dense, sparse, pos_label)
    present = np.unique(groups)
    codes = np.searchsorted(present, groups)
    stats = statistics_of_counts(category_counts(categories, codes, len(present), k), binary)
    for code, g in enumerate(present):
        rows = groups == g
        dense_acc, sparse_acc = (dense[rows] == y[rows]).mean(), (sparse[rows] == y[rows]).mean()
        assert stats["dense_accuracy"][code] == pytest.approx(dense_acc)
        assert stats["accuracy_gap"][code] == pytest.approx(dense_acc - sparse_acc)
        overall = (dense == y).mean() - (sparse == y).mean()
        assert stats["excess_accuracy_gap"][code] == pytest.approx(dense_acc - sparse_acc - overall)
        if binary:
            positives = rows & (y == 1)
            expected = (sparse[positives] == 1).mean() if positives.any() else np.nan
            assert stats["sparse_tpr"][code] == pytest.approx(expected, nan_ok=True)


def test_resampling_keeps_group_sizes_and_pairs_the_two_models():
    """Every resample has each group's size; a group where both models agree on every row
    has a gap of exactly 0 in every resample (paired), however the rows are drawn."""
    y = np.array([1, 0, 1, 1, 0, 1, 0, 0])
    dense = np.array([1, 0, 1, 0, 0, 1, 1, 0])
    sparse = np.array([1, 0, 1, 0, 1, 0, 0, 1])  # group 0 (first 4 rows): same as dense
    groups = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    categories, k = row_categories(y, dense, sparse, 1)
    counts = category_counts(categories, groups, 2, k)
    boot, used = bootstrap_category_counts(counts, 500, np.random.default_rng(0))
    assert boot.shape == (500, 2, len(used)) and set(used) == set(categories)
    assert (boot.sum(axis=2) == [4, 4]).all()
    stats = statistics_of_counts(boot, binary=True, categories=used)
    assert (stats["accuracy_gap"][:, 0] == 0).all()
    assert stats["accuracy_gap"][:, 1].std() > 0


def test_the_binomial_chain_draws_the_multinomial_of_the_group_shares():
    counts = np.array([[30, 0, 50, 20], [5, 5, 0, 90]])
    boot, used = bootstrap_category_counts(counts, 20_000, np.random.default_rng(1))
    assert used.tolist() == [0, 1, 2, 3]
    shares = boot.mean(axis=0) / counts.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(shares, counts / 100, atol=0.005)
    # multinomial variance n p (1 - p) and covariance -n p q of two categories
    np.testing.assert_allclose(boot[:, 0, 0].var(), 100 * 0.3 * 0.7, rtol=0.05)
    np.testing.assert_allclose(np.cov(boot[:, 0, 0], boot[:, 0, 2])[0, 1], -100 * 0.3 * 0.5,
                               rtol=0.07)


def test_interval_columns_verdicts_and_attrs_are_consistent():
    y, dense, sparse, groups = predictions(3000, 5, seed=1)
    report = disparity_report(y, dense, sparse, groups, tolerance=0.02, n_boot=400,
                              random_state=0)
    for name in ["accuracy_gap", "excess_accuracy_gap", *RATE_COLUMNS]:
        low, high = report[f"{name}_ci_low"], report[f"{name}_ci_high"]
        assert (low <= high).all()
        assert ((low <= report[name] + 1e-12) & (report[name] <= high + 1e-12)).mean() >= 0.8
    low, high = report["excess_accuracy_gap_ci_low"], report["excess_accuracy_gap_ci_high"]
    expected = np.where(low > 0.02, "violates", np.where(high <= 0.02, "within", "undecided"))
    assert report["verdict"].tolist() == expected.tolist()
    assert {"violates", "within"} & set(report["verdict"])
    for name in ("max_excess_accuracy_gap_ci", "pairwise_disparity_ci"):
        lo, hi = report.attrs[name]
        assert 0 <= lo <= hi
    assert report.attrs["n_boot"] == 400 and report.attrs["ci"] == 0.95
    plain = disparity_report(y, dense, sparse, groups, tolerance=0.02)
    pd.testing.assert_frame_equal(report[plain.columns], plain)
    assert "verdict" not in plain and "max_excess_accuracy_gap_ci" not in plain.attrs


def test_same_seed_same_intervals_other_seed_other_intervals():
    y, dense, sparse, groups = predictions(800, 3, seed=2)
    a, b, c = (disparity_report(y, dense, sparse, groups, 0.05, n_boot=200, random_state=seed)
               for seed in (7, 7, 8))
    pd.testing.assert_frame_equal(a, b)
    assert a.attrs == b.attrs
    assert not a["excess_accuracy_gap_ci_low"].equals(c["excess_accuracy_gap_ci_low"])


def test_without_a_tolerance_the_verdict_is_missing():
    y, dense, sparse, groups = predictions(400, 2, seed=3)
    report = disparity_report(y, dense, sparse, groups, n_boot=50, random_state=0)
    assert report["verdict"].isna().all()


def test_multiclass_targets_get_gap_intervals_but_no_rate_columns():
    y, dense, sparse, groups = predictions(900, 3, seed=4, binary=False)
    report = disparity_report(y, dense, sparse, groups, 0.05, n_boot=100, random_state=0)
    assert "excess_accuracy_gap_ci_high" in report and "dense_tpr_ci_low" not in report


def test_a_nominal_90_percent_interval_covers_the_true_excess_gap():
    """A pool with known ψ_g; many stratified samples of it; the 90% interval of each sample
    covers the pool's ψ_g of every group in at least ~85% of the samples."""
    rng = np.random.default_rng(0)
    n_pool, n_groups = 200_000, 3
    pool = predictions(n_pool, n_groups, seed=5)
    truth = disparity_report(*pool)["excess_accuracy_gap"].to_numpy()
    covered, trials = np.zeros(n_groups), 200
    for _ in range(trials):
        rows = rng.choice(n_pool, 1500, replace=False)
        report = disparity_report(*(a[rows] for a in pool), n_boot=400, ci=0.9,
                                  random_state=rng)
        low, high = report["excess_accuracy_gap_ci_low"], report["excess_accuracy_gap_ci_high"]
        covered += ((low <= truth) & (truth <= high)).to_numpy()
    assert (covered / trials >= 0.85).all(), covered / trials


def test_small_groups_are_flagged_and_named_in_a_warning():
    y, dense, sparse, groups = predictions(400, 2, seed=6)
    groups = groups.astype(object)
    groups[:MIN_GROUP_SIZE - 1] = "tiny"
    with pytest.warns(SmallGroupWarning, match="tiny"):
        report = disparity_report(y, dense, sparse, groups)
    assert report.set_index("group")["small_group"].to_dict() == {0: False, 1: False,
                                                                 "tiny": True}
    with warnings.catch_warnings():
        warnings.simplefilter("error", SmallGroupWarning)
        disparity_report(*predictions(400, 2, seed=6))  # no small group: no warning


@pytest.mark.parametrize("kwargs, match", [
    (dict(n_boot=-1), "'n_boot'"), (dict(n_boot=2.5), "'n_boot'"), (dict(n_boot=True), "'n_boot'"),
    (dict(n_boot=10, ci=1.0), "'ci'"), (dict(n_boot=10, ci=0), "'ci'"),
    (dict(n_boot=10, random_state="seed"), "'random_state'"),
])
def test_bad_bootstrap_arguments_are_refused_by_name(kwargs, match):
    with pytest.raises(ValueError, match=match):
        disparity_report(*predictions(100, 2), **kwargs)


def test_metric_frames_pass_their_bootstrap_to_fairlearn():
    pytest.importorskip("fairlearn")
    from fairprune.report import metric_frames

    y, dense, sparse, groups = predictions(300, 2, seed=7)
    frames = metric_frames(y, dense, sparse, groups, n_boot=20, ci_quantiles=[0.05, 0.95],
                           random_state=0)
    low, high = frames["sparse"].by_group_ci
    assert (low["accuracy"] <= high["accuracy"]).all()
