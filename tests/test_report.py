import numpy as np
import pandas as pd
import pytest

from fairprune import disparity_report, plot_disparity
from fairprune.report import RATE_COLUMNS, REPORT_COLUMNS, SUMMARY_COLUMNS, metric_frames


def test_report_table_and_attrs():
    y = np.array([1, 1, 1, 1, 0, 0])
    dense = np.array([1, 1, 1, 1, 0, 0])
    sparse = np.array([1, 0, 1, 1, 0, 1])
    groups = ["a", "a", "b", "b", "c", "c"]
    rep = disparity_report(y, dense, sparse, groups, tolerance=0.1)
    assert list(rep.columns) == REPORT_COLUMNS + SUMMARY_COLUMNS + RATE_COLUMNS  # binary y
    assert rep["n"].tolist() == [2, 2, 2]
    assert rep["accuracy_gap"].tolist() == pytest.approx([0.5, 0.0, 0.5])
    assert rep["excess_accuracy_gap"].tolist() == pytest.approx([0.5 - 1 / 3, -1 / 3, 0.5 - 1 / 3])
    assert rep["violates"].tolist() == [True, False, True]
    assert rep.attrs["overall_gap"] == pytest.approx(1 / 3)
    assert rep.attrs["pairwise_disparity"] == pytest.approx(0.5)
    assert rep.attrs["max_excess_accuracy_gap"] == pytest.approx(1 / 6)
    assert rep.attrs["n_violating"] == 2


def test_report_without_tolerance_marks_violations_unknown():
    rep = disparity_report([1, 0], [1, 0], [1, 1], ["a", "b"])
    assert rep["violates"].isna().all()
    assert rep.attrs["tolerance"] is None


@pytest.mark.parametrize("tol, error", [(-0.1, ValueError), (float("nan"), ValueError), ("x", TypeError)])
def test_bad_tolerance(tol, error):
    with pytest.raises(error, match="'tolerance' parameter of disparity_report"):
        disparity_report([1], [1], [1], ["a"], tolerance=tol)


def test_plot_headless_many_groups_top_k(tmp_path):
    rng = np.random.default_rng(0)
    n = 3000
    groups = rng.integers(0, 150, n)
    y = rng.integers(0, 2, n)
    rep = disparity_report(y, y, np.where(rng.random(n) < 0.1, 1 - y, y), groups, tolerance=0.05)
    ax = plot_disparity(rep, top_k=20)
    assert len(ax.patches) == 20
    heights = [p.get_height() for p in ax.patches]
    assert heights == sorted(heights, reverse=True)
    assert heights[0] == pytest.approx(rep["excess_accuracy_gap"].max())
    ax.figure.savefig(tmp_path / "p.png")
    assert (tmp_path / "p.png").stat().st_size > 0
    both = plot_disparity({"NFT": rep, "CEAG": rep}, top_k=None)
    assert len(both.patches) == 2 * 150


def test_plot_never_switches_the_users_backend():
    import matplotlib
    import matplotlib.pyplot as plt

    before = matplotlib.get_backend()
    matplotlib.use("svg")  # a user's choice (non-interactive, works headless)
    try:
        report = disparity_report([0, 1, 1, 0], [0, 1, 1, 0], [0, 1, 0, 0], ["a", "a", "b", "b"])
        ax = plot_disparity(report)
        assert matplotlib.get_backend() == "svg"
        plt.close(ax.figure)
    finally:
        matplotlib.use(before)


def test_binary_rates_match_fairlearn_and_the_summary_survives_csv(tmp_path):
    rng = np.random.default_rng(0)
    n = 400
    groups = rng.choice(["a", "b", "c"], n)
    y = rng.integers(0, 2, n)
    dense = np.where(rng.random(n) < 0.9, y, 1 - y)
    sparse = np.where((groups == "c") & (rng.random(n) < 0.5), 0, dense)  # c loses positives
    rep = disparity_report(y, dense, sparse, groups, tolerance=0.05)
    frames = metric_frames(y, dense, sparse, groups)
    for model in ("dense", "sparse"):
        by_group = frames[model].by_group
        for ours, theirs in (("accuracy", "accuracy"), ("tpr", "tpr"), ("fpr", "fpr"),
                             ("selection_rate", "selection_rate")):
            column = "sparse_accuracy" if (model, ours) == ("sparse", "accuracy") else (
                "dense_accuracy" if ours == "accuracy" else f"{model}_{ours}")
            np.testing.assert_allclose(rep[column].to_numpy(), by_group[theirs].to_numpy())
    assert rep.set_index("group").loc["c", "sparse_tpr"] < rep.set_index("group").loc[
        "c", "dense_tpr"]
    path = tmp_path / "report.csv"
    rep.to_csv(path, index=False)
    back = pd.read_csv(path)
    for name in SUMMARY_COLUMNS:
        assert back[name].nunique() == 1
        assert back[name].iloc[0] == pytest.approx(rep[name].iloc[0])
    assert back["max_excess_accuracy_gap"].iloc[0] == pytest.approx(
        rep.attrs["max_excess_accuracy_gap"])


def test_rates_only_for_binary_targets():
    rep = disparity_report([0, 1, 2, 2], [0, 1, 2, 2], [0, 1, 1, 2], ["a", "a", "b", "b"])
    assert not set(RATE_COLUMNS) & set(rep.columns)
    assert set(RATE_COLUMNS) <= set(disparity_report(
        [0, 1, 2, 2], [0, 1, 2, 2], [0, 1, 1, 2], ["a", "a", "b", "b"], pos_label=2).columns)
