"""The disparity report: one row per group, summary values on ``attrs``, and a plot."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from ._validation import check_tolerance
from .metrics import checked_predictions, correct, per_group_mean

__all__ = ["REPORT_COLUMNS", "disparity_report", "plot_disparity"]

REPORT_COLUMNS = [
    "group",
    "n",
    "dense_accuracy",
    "sparse_accuracy",
    "accuracy_gap",
    "excess_accuracy_gap",
    "violates",
]


def disparity_report(
    y_true: Any,
    y_pred_dense: Any,
    y_pred_sparse: Any,
    groups: Any,
    tolerance: float | None = None,
) -> pd.DataFrame:
    """Per-group accuracy of the dense and sparse models and the disparity of pruning.

    Parameters
    ----------
    y_true, y_pred_dense, y_pred_sparse, groups : array-like of shape (n_samples,)
        True labels, the dense and sparse models' predictions, each sample's group label.
    tolerance : float, optional
        ε; when given, ``violates`` marks the groups with ``ψ_g > ε``.

    Returns
    -------
    pandas.DataFrame
        One row per group with columns ``group, n, dense_accuracy, sparse_accuracy,
        accuracy_gap`` (Δ_g), ``excess_accuracy_gap`` (ψ_g) and ``violates`` (``ψ_g > ε``;
        ``<NA>`` without a tolerance). ``report.attrs`` holds ``overall_gap`` (Δ),
        ``pairwise_disparity`` (Ψ_PW), ``max_excess_accuracy_gap`` (max ψ_g),
        ``dense_accuracy``, ``sparse_accuracy``, ``tolerance`` and ``n_violating``.

    Examples
    --------
    >>> rep = disparity_report([1, 1, 1, 1], [1, 1, 1, 1], [1, 0, 1, 1], ["a", "a", "b", "b"],
    ...                        tolerance=0.1)
    >>> rep[["group", "accuracy_gap", "excess_accuracy_gap", "violates"]]
      group  accuracy_gap  excess_accuracy_gap  violates
    0     a           0.5                 0.25      True
    1     b           0.0                -0.25     False
    >>> rep.attrs["pairwise_disparity"], rep.attrs["max_excess_accuracy_gap"]
    (0.5, 0.25)
    """
    tolerance = check_tolerance(tolerance, owner="disparity_report")
    y_true, dense, sparse, labels, codes = checked_predictions(
        y_true, y_pred_dense, y_pred_sparse, groups)
    n_groups = len(labels)
    n = np.bincount(codes, minlength=n_groups)
    dense_ok, sparse_ok = correct(y_true, dense), correct(y_true, sparse)
    dense_acc = per_group_mean(dense_ok, codes, n_groups)
    sparse_acc = per_group_mean(sparse_ok, codes, n_groups)
    gaps = dense_acc - sparse_acc
    overall = float(dense_ok.mean() - sparse_ok.mean())
    excess = gaps - overall
    if tolerance is None:
        violates = pd.array([pd.NA] * n_groups, dtype="boolean")
    else:
        violates = pd.array(excess > tolerance, dtype="boolean")
    report = pd.DataFrame(
        {
            "group": pd.Series(list(labels), dtype=object),
            "n": n,
            "dense_accuracy": dense_acc,
            "sparse_accuracy": sparse_acc,
            "accuracy_gap": gaps,
            "excess_accuracy_gap": excess,
            "violates": violates,
        }
    )
    report.attrs.update(
        {
            "overall_gap": overall,
            "pairwise_disparity": float(gaps.max() - gaps.min()),
            "max_excess_accuracy_gap": float(excess.max()),
            "dense_accuracy": float(dense_ok.mean()),
            "sparse_accuracy": float(sparse_ok.mean()),
            "tolerance": tolerance,
            "n_violating": None if tolerance is None else int((excess > tolerance).sum()),
        }
    )
    return report


def plot_disparity(
    report: pd.DataFrame | Mapping[str, pd.DataFrame],
    ax=None,
    *,
    top_k: int | None = 30,
    tolerance: float | None = None,
):
    """Bar chart of ψ_g per group, sorted, with the ε line.

    Parameters
    ----------
    report : DataFrame or dict of str to DataFrame
        A :func:`disparity_report`, or several keyed by a label (e.g. ``{"NFT": r1,
        "CEAG": r2}``) drawn as grouped bars, sorted by the first report.
    ax : matplotlib Axes, optional
        Where to draw; a new figure otherwise. Works headless (Agg backend).
    top_k : int or None, default=30
        Show only the ``top_k`` groups with the largest ψ_g (of the first report), so plots of
        hundreds of groups stay readable. ``None`` shows all.
    tolerance : float, optional
        ε for the horizontal line; defaults to ``report.attrs["tolerance"]``.

    Returns
    -------
    matplotlib.axes.Axes
    """
    import matplotlib.pyplot as plt  # the user's backend, never switched here

    reports = dict(report) if isinstance(report, Mapping) else {"": report}
    if not reports:
        raise ValueError("plot_disparity needs at least one report.")
    for name, rep in reports.items():
        if not isinstance(rep, pd.DataFrame) or "excess_accuracy_gap" not in rep:
            raise TypeError(
                f"plot_disparity expects disparity_report DataFrames; got {type(rep).__name__}"
                f"{' for ' + repr(name) if name else ''}."
            )
    first = next(iter(reports.values()))
    order = first.sort_values("excess_accuracy_gap", ascending=False)["group"].tolist()
    if top_k is not None:
        order = order[:top_k]
    if ax is None:
        width = min(max(6.0, 0.35 * len(order) * max(1, len(reports))), 18.0)
        _, ax = plt.subplots(figsize=(width, 4.0))
    n_series = len(reports)
    bar_width = 0.8 / n_series
    positions = np.arange(len(order))
    for i, (name, rep) in enumerate(reports.items()):
        psi = rep.set_index(rep["group"].map(repr))["excess_accuracy_gap"]
        values = [psi.get(repr(g), np.nan) for g in order]
        ax.bar(positions + (i - (n_series - 1) / 2) * bar_width, values, bar_width,
               label=name or None)
    if tolerance is None:
        tolerance = first.attrs.get("tolerance")
    if tolerance is not None:
        ax.axhline(tolerance, color="crimson", linestyle="--", linewidth=1.2,
                   label=f"ε = {tolerance:g}")
    ax.axhline(0.0, color="black", linewidth=0.6)
    ax.set_xticks(positions)
    ax.set_xticklabels([str(g) for g in order], rotation=60 if len(order) > 8 else 0,
                       ha="right" if len(order) > 8 else "center", fontsize=8)
    ax.set_ylabel(r"excess accuracy gap $\psi_g$")
    ax.set_xlabel("group" + (f" (top {len(order)} of {len(first)})" if len(order) < len(first) else ""))
    if n_series > 1 or tolerance is not None:
        ax.legend(fontsize=8)
    return ax
