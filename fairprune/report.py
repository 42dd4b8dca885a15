"""The disparity report: one row per group, summary values on ``attrs``, and a plot."""

from __future__ import annotations

import numbers
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from ._validation import InvalidParameterError, check_tolerance
from .exceptions import SmallGroupWarning
from .intervals import (MIN_GROUP_SIZE, bootstrap_category_counts, category_counts,
                        percentile_interval, row_categories, statistics_of_counts)
from .cells import gap_name
from .groups import MarginalGroupEncoder, label_attributes
from .metrics import checked_predictions, excess_from_gaps

__all__ = [
    "RATE_COLUMNS",
    "constraint_report",
    "REPORT_COLUMNS",
    "SUMMARY_COLUMNS",
    "disparity_report",
    "metric_frames",
    "plot_disparity",
    "plot_history",
]

REPORT_COLUMNS = [
    "group",
    "n",
    "dense_accuracy",
    "sparse_accuracy",
    "accuracy_gap",
    "excess_accuracy_gap",
    "violates",
    "small_group",
]
#: The summary of the table, repeated on every row so that it survives ``to_csv`` and
#: ``to_parquet`` (it is also on ``report.attrs``).
SUMMARY_COLUMNS = ["overall_gap", "pairwise_disparity", "max_excess_accuracy_gap", "tolerance"]
#: Binary targets only: true and false positive rates and selection rate of both models,
#: and the drops of the true-positive and true-negative rates with their excess gaps.
RATE_COLUMNS = [*(f"{model}_{rate}" for rate in ("tpr", "fpr", "selection_rate")
                  for model in ("dense", "sparse")),
                "tpr_gap", "excess_tpr_gap", "tnr_gap", "excess_tnr_gap"]


def _positive_label(y_true, dense, sparse, pos_label):
    """The positive class of a binary problem, or None when the targets are not binary."""
    if pos_label is not None:
        return pos_label
    values = set(np.unique(y_true).tolist()) | set(np.unique(dense).tolist()) | set(
        np.unique(sparse).tolist())
    return 1 if values <= {0, 1} else None


def disparity_report(
    y_true: Any,
    y_pred_dense: Any,
    y_pred_sparse: Any,
    groups: Any,
    tolerance: float | None = None,
    pos_label: Any = None,
    *,
    n_boot: int = 0,
    ci: float = 0.95,
    random_state: Any = None,
    group_mode: str = "intersectional",
    attributes: list[str] | None = None,
) -> pd.DataFrame:
    """Per-group accuracy of the dense and sparse models and the disparity of pruning.

    Parameters
    ----------
    y_true, y_pred_dense, y_pred_sparse, groups : array-like of shape (n_samples,)
        True labels, the dense and sparse models' predictions, each sample's group label.
    tolerance : float, optional
        ε; when given, ``violates`` marks the groups with ``ψ_g > ε``.
    pos_label : optional
        Positive class of a binary target. By default 1 when every label is 0 or 1; the
        rate columns are left out for other targets unless it is given.
    n_boot : int, default=0
        Bootstrap resamples for intervals (0: none). The bootstrap is paired (one resample
        serves both models) and stratified by group (rows resampled within each group), see
        :mod:`fairprune.intervals`; 1,000 is a good default for a report you act on.
    ci : float, default=0.95
        Level of the percentile intervals, in (0, 1).
    random_state : int, numpy.random.Generator or None, default=None
        Seed of the resampling: the same seed gives the same intervals.
    group_mode : {"intersectional", "marginal"}, default="intersectional"
        With several attributes (a several-column frame, or tuple labels): one group per
        combination of their values, or one group per value of each attribute, every row
        counted once per attribute (the excess gaps then all compare with the same overall
        drop). Marginal reports have an ``attribute`` column, and their bootstrap resamples
        rows within each combination of values, so that every attribute's groups move together.
    attributes : list of str, optional
        Attribute names of a marginal report (default: the frame's columns, else
        ``"attribute 0"``, ...).

    Returns
    -------
    pandas.DataFrame
        One row per group with columns ``group, n, dense_accuracy, sparse_accuracy,
        accuracy_gap`` (Δ_g), ``excess_accuracy_gap`` (ψ_g) and ``violates`` (``ψ_g > ε``;
        ``<NA>`` without a tolerance); then the summary on every row (:data:`SUMMARY_COLUMNS`:
        Δ, Ψ_PW, max ψ_g, ε), so that it survives ``to_csv``; for binary targets the true and
        false positive rates and selection rates of both models, the drops of the true-positive
        and true-negative rates (``tpr_gap``, ``tnr_gap``: dense minus sparse) and their excess
        over the drop among all positives / all negatives (``excess_tpr_gap``,
        ``excess_tnr_gap``; attrs ``max_excess_tpr_gap``, ``max_excess_tnr_gap``), all in
        :data:`RATE_COLUMNS` and NaN where a group has no positive or no negative sample; ``small_group`` (fewer rows than
        :data:`fairprune.intervals.MIN_GROUP_SIZE`: a :class:`SmallGroupWarning` names them).
        With ``n_boot > 0``, ``<column>_ci_low`` and ``<column>_ci_high`` for the gaps and
        the rates, and ``verdict``: ``"violates"`` (the interval of ψ_g lies above ε),
        ``"within"`` (at or below ε) or ``"undecided"`` (``<NA>`` without a tolerance).
        ``report.attrs`` holds ``overall_gap``, ``pairwise_disparity``,
        ``max_excess_accuracy_gap``, ``dense_accuracy``, ``sparse_accuracy``, ``tolerance``
        and ``n_violating``; with intervals also ``max_excess_accuracy_gap_ci`` and
        ``pairwise_disparity_ci`` as ``(low, high)``, ``n_boot`` and ``ci``.

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
    n_boot, ci, rng = _check_bootstrap(n_boot, ci, random_state)
    if group_mode not in ("intersectional", "marginal"):
        raise InvalidParameterError(
            "The 'group_mode' parameter of disparity_report must be 'intersectional' or "
            f"'marginal'. Got {group_mode!r} instead.")
    if attributes is None:
        attributes = label_attributes(None, groups)
    y_true, dense, sparse, labels, codes = checked_predictions(
        y_true, y_pred_dense, y_pred_sparse, groups)
    pos_label = _positive_label(y_true, dense, sparse, pos_label)
    binary = pos_label is not None
    categories, n_categories = row_categories(y_true, dense, sparse, pos_label)
    counts = category_counts(categories, codes, len(labels), n_categories)
    aggregate, attribute_column = None, None
    if group_mode == "marginal":  # rows counted once per attribute: sums of intersections
        encoder = MarginalGroupEncoder().fit(labels, attributes)
        aggregate = np.zeros((encoder.n_groups, len(labels)))
        aggregate[encoder.transform(labels), np.arange(len(labels))[:, None]] = 1.0
        counts = (aggregate @ counts).astype(np.int64)
        attribute_column = [attribute for attribute, _ in encoder.classes_]
        labels = [value for _, value in encoder.classes_]
    n_groups = len(labels)
    stats = statistics_of_counts(counts, binary)
    n = counts.sum(axis=1)
    excess = stats["excess_accuracy_gap"]
    if tolerance is None:
        violates = pd.array([pd.NA] * n_groups, dtype="boolean")
    else:
        violates = pd.array(excess > tolerance, dtype="boolean")
    report = pd.DataFrame(
        {
            "group": pd.Series(list(labels), dtype=object),
            "n": n,
            "dense_accuracy": stats["dense_accuracy"],
            "sparse_accuracy": stats["sparse_accuracy"],
            "accuracy_gap": stats["accuracy_gap"],
            "excess_accuracy_gap": excess,
            "violates": violates,
            "small_group": n < MIN_GROUP_SIZE,
            "overall_gap": float(stats["overall_gap"]),
            "pairwise_disparity": stats["pairwise_disparity"],
            "max_excess_accuracy_gap": stats["max_excess_accuracy_gap"],
            "tolerance": np.nan if tolerance is None else tolerance,
        }
    )
    if binary:
        for name in RATE_COLUMNS:
            report[name] = stats[name]
    if binary:
        for rate in ("tpr", "tnr"):
            report.attrs[f"max_excess_{rate}_gap"] = stats[f"max_excess_{rate}_gap"]
    if attribute_column is not None:
        report.insert(0, "attribute", attribute_column)
    report.attrs.update(
        {
            "overall_gap": float(stats["overall_gap"]),
            "pairwise_disparity": stats["pairwise_disparity"],
            "max_excess_accuracy_gap": stats["max_excess_accuracy_gap"],
            "dense_accuracy": float(stats["overall_dense_accuracy"]),
            "sparse_accuracy": float(stats["overall_sparse_accuracy"]),
            "tolerance": tolerance,
            "n_violating": None if tolerance is None else int((excess > tolerance).sum()),
        }
    )
    report.attrs["group_mode"] = group_mode
    if n_boot:
        resample_counts = counts if aggregate is None else category_counts(
            categories, codes, aggregate.shape[1], n_categories)
        _add_intervals(report, resample_counts, binary, n_boot, ci, rng, tolerance, aggregate)
    small = report.loc[report["small_group"], "group"].tolist()
    if small:
        warnings.warn(
            f"{len(small)} group(s) have fewer than {MIN_GROUP_SIZE} rows: {small[:10]}"
            f"{' ...' if len(small) > 10 else ''}. Their accuracies move by several points "
            "from one sample of rows to another; read them with intervals (n_boot=1000) and "
            "with care.", SmallGroupWarning, stacklevel=2)
    return report


def constraint_report(y_true: Any, y_pred_dense: Any, y_pred_sparse: Any, codes: np.ndarray,
                      cells, labels, tolerance: float | None = None) -> pd.DataFrame:
    """One row per constraint cell (:mod:`fairprune.cells`): its rows, both models' rate
    on them, the drop, and the excess over its family's drop.

    Parameters
    ----------
    y_true, y_pred_dense, y_pred_sparse : array-like of shape (n_samples,)
        Class indices.
    codes : numpy.ndarray
        Group codes of the estimator's encoding (``(n,)``, or ``(n, attributes)`` for
        marginal groups).
    cells : ConstraintCells
        The fitted cells.
    labels : sequence
        Group label of every code.
    tolerance : float, optional
        ε, for ``violates``.

    Returns
    -------
    pandas.DataFrame
        Columns ``group, rate, n, dense_rate, sparse_rate, gap, excess_gap, violates``;
        ``attrs``: ``max_excess_gap``, ``gap_metric``, ``tolerance``. A cell without rows here
        has NaN rates.
    """
    y_true, dense, sparse = (np.asarray(v) for v in (y_true, y_pred_dense, y_pred_sparse))
    ids = np.asarray(cells.transform(codes, y_true))
    width = 1 if ids.ndim == 1 else ids.shape[1]
    ids = ids.reshape(-1)
    dense_right = np.repeat(dense == y_true, width).astype(np.float64)
    sparse_right = np.repeat(sparse == y_true, width).astype(np.float64)
    size = cells.n_cells + 1
    counts = np.bincount(ids, minlength=size)[: cells.n_cells].astype(np.float64)
    safe = np.maximum(counts, 1)
    dense_rate = np.where(counts > 0, np.bincount(ids, dense_right, size)[: cells.n_cells] / safe,
                          np.nan)
    sparse_rate = np.where(counts > 0,
                           np.bincount(ids, sparse_right, size)[: cells.n_cells] / safe, np.nan)
    gap = dense_rate - sparse_rate
    families = (np.zeros(cells.n_cells, dtype=np.int64) if cells.families_ is None
                else cells.families_[: cells.n_cells])
    excess = np.full(cells.n_cells, np.nan)
    for family in np.unique(families):
        members = families == family
        excess[members] = excess_from_gaps(gap[members], counts[members])
    violates = (pd.array([pd.NA] * cells.n_cells, dtype="boolean") if tolerance is None
                else pd.array(excess > tolerance, dtype="boolean"))
    report = pd.DataFrame({
        "group": pd.Series([labels[g] for g, _ in cells.names_], dtype=object),
        "rate": [rate for _, rate in cells.names_],
        "n": counts.astype(np.int64), "dense_rate": dense_rate, "sparse_rate": sparse_rate,
        "gap": gap, "excess_gap": excess, "violates": violates,
    })
    seen = excess[~np.isnan(excess)]
    report.attrs.update(max_excess_gap=float(seen.max()) if seen.size else float("nan"),
                        gap_metric=cells.gap_metric, tolerance=tolerance)
    return report


def _check_bootstrap(n_boot, ci, random_state):
    """The bootstrap's arguments, checked: ``(n_boot, ci, generator)``."""
    if isinstance(n_boot, bool) or not isinstance(n_boot, numbers.Integral) or n_boot < 0:
        raise InvalidParameterError(
            f"The 'n_boot' parameter of disparity_report must be an int >= 0 (0: no "
            f"intervals). Got {n_boot!r} instead.")
    if isinstance(ci, bool) or not isinstance(ci, numbers.Real) or not 0 < ci < 1:
        raise InvalidParameterError(
            f"The 'ci' parameter of disparity_report must be a float in (0, 1), e.g. 0.95. "
            f"Got {ci!r} instead.")
    if random_state is not None and not isinstance(random_state, (numbers.Integral,
                                                                   np.random.Generator)):
        raise InvalidParameterError(
            "The 'random_state' parameter of disparity_report must be None, an int or a "
            f"numpy.random.Generator. Got {random_state!r} instead.")
    return int(n_boot), float(ci), np.random.default_rng(random_state)


def _add_intervals(report: pd.DataFrame, counts: np.ndarray, binary: bool, n_boot: int,
                   ci: float, rng: np.random.Generator, tolerance: float | None,
                   aggregate: np.ndarray | None = None) -> None:
    """Interval columns, the verdict and the summary intervals, from ``n_boot`` paired,
    group-stratified resamples (:mod:`fairprune.intervals`); ``aggregate`` sums the
    resampled strata into the report's groups (marginal groups)."""
    resampled, categories = bootstrap_category_counts(counts, n_boot, rng)
    if aggregate is not None:
        resampled = np.einsum("gs,bsc->bgc", aggregate, resampled)
    replicates = statistics_of_counts(resampled, binary, categories)
    for name in ["accuracy_gap", "excess_accuracy_gap", *(RATE_COLUMNS if binary else [])]:
        low, high = percentile_interval(replicates[name], ci)
        report[f"{name}_ci_low"], report[f"{name}_ci_high"] = low, high
    if tolerance is None:
        report["verdict"] = pd.array([pd.NA] * len(report), dtype="string")
    else:
        low, high = report["excess_accuracy_gap_ci_low"], report["excess_accuracy_gap_ci_high"]
        verdict = np.where(low > tolerance, "violates",
                           np.where(high <= tolerance, "within", "undecided"))
        report["verdict"] = pd.array(verdict, dtype="string")
    summaries = ["max_excess_accuracy_gap", "pairwise_disparity"]
    if binary:
        summaries += ["max_excess_tpr_gap", "max_excess_tnr_gap"]
    for name in summaries:
        low, high = percentile_interval(replicates[name], ci)
        report.attrs[f"{name}_ci"] = (float(low), float(high))
    report.attrs.update(n_boot=n_boot, ci=ci)


def metric_frames(y_true: Any, y_pred_dense: Any, y_pred_sparse: Any,
                  sensitive_features: Any, metrics: Mapping | None = None, *,
                  n_boot: int | None = None, ci_quantiles: list[float] | None = None,
                  random_state: Any = None) -> dict:
    """fairlearn ``MetricFrame`` objects of the dense and the sparse model.

    A bridge to fairlearn's toolbox (``.by_group``, ``.difference()``, ``.ratio()`` ...)
    for the same predictions a :func:`disparity_report` describes. Needs the optional
    ``fairlearn`` dependency (``pip install "fairprune[fairlearn]"``).

    Parameters
    ----------
    y_true, y_pred_dense, y_pred_sparse, sensitive_features : array-like of shape (n_samples,)
        True labels, both models' predictions and each sample's group label.
    metrics : mapping of str to callable, optional
        fairlearn-style metrics ``f(y_true, y_pred)``. Default: accuracy, and for binary
        targets (labels 0 and 1) also true and false positive rates and selection rate.
    n_boot, ci_quantiles, random_state : optional
        Passed to fairlearn's ``MetricFrame`` for its bootstrap intervals (``by_group_ci``,
        ``difference_ci()`` ...): plain row resampling, unpaired across the two frames; the
        report's own intervals (:func:`disparity_report` with ``n_boot``) are paired and
        stratified by group.

    Returns
    -------
    dict
        ``{"dense": MetricFrame, "sparse": MetricFrame}``.
    """
    try:
        from fairlearn import metrics as fl
    except ImportError as exc:
        raise ImportError(
            "metric_frames needs fairlearn: pip install 'fairprune[fairlearn]'.") from exc
    from sklearn.metrics import accuracy_score

    y_true, dense, sparse, labels, codes = checked_predictions(
        y_true, y_pred_dense, y_pred_sparse, sensitive_features)
    groups = pd.Series(np.asarray(labels, dtype=object)[codes], name="group")
    if metrics is None:
        metrics = {"accuracy": accuracy_score}
        if _positive_label(y_true, dense, sparse, None) is not None:
            metrics.update(tpr=fl.true_positive_rate, fpr=fl.false_positive_rate,
                           selection_rate=fl.selection_rate)
    bootstrap = {} if not n_boot else {"n_boot": n_boot, "ci_quantiles": ci_quantiles or
                                       [0.025, 0.975], "random_state": random_state}
    return {model: fl.MetricFrame(metrics=dict(metrics), y_true=y_true, y_pred=pred,
                                  sensitive_features=groups, **bootstrap)
            for model, pred in (("dense", dense), ("sparse", sparse))}


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


def plot_history(clf, axes=None, *, top_k: int | None = 10):
    """ψ_g, multipliers and training accuracy over the epochs of a fitted estimator.

    Three panels sharing the epoch axis, with the GMP epochs shaded: the training excess
    accuracy gap of each group (``history[:, "train_excess_accuracy_gap"]``) with the ε line, each group's
    Lagrange multiplier, and the training accuracy. The matplotlib backend is left as it is.

    Parameters
    ----------
    clf : FairPrunedClassifier
        A fitted estimator (its ``history`` and ``groups_``).
    axes : sequence of three matplotlib Axes, optional
        Where to draw; a new figure otherwise.
    top_k : int or None, default=10
        Draw the ``top_k`` groups with the largest final ψ_g (None: all).

    Returns
    -------
    numpy.ndarray of matplotlib Axes
    """
    import matplotlib.pyplot as plt

    history = clf.history
    if not len(history):
        raise ValueError("plot_history needs a fitted estimator: its history is empty.")
    epochs = np.arange(1, len(history) + 1)
    name = gap_name(getattr(clf, "gap_metric", "accuracy"))
    psi = np.array(history[:, f"train_excess_{name}"], dtype=float)
    multipliers = np.array(history[:, "multipliers"], dtype=float)
    names = [str(g) for g in clf.constraint_index_]
    order = np.argsort(-np.nan_to_num(psi[-1], nan=-np.inf))
    order = order if top_k is None else order[:top_k]
    if axes is None:
        _, axes = plt.subplots(3, 1, sharex=True, figsize=(7, 7))
    axes = np.asarray(axes)
    gmp = [epoch for epoch, phase in zip(epochs, history[:, "phase"]) if phase == "gmp"]
    for ax in axes:
        if gmp:
            ax.axvspan(min(gmp) - 0.5, max(gmp) + 0.5, color="0.9", label="GMP")
    for g in order:
        axes[0].plot(epochs, psi[:, g], marker=".", label=names[g])
        axes[1].plot(epochs, multipliers[:, g], marker=".", label=names[g])
    axes[0].axhline(clf.tolerance, color="k", linestyle="--", linewidth=1, label="ε")
    axes[0].set_ylabel("training ψ_g")
    axes[1].set_ylabel("multiplier λ_g")
    axes[2].plot(epochs, history[:, "train_acc"], marker=".", color="k")
    axes[2].set_ylabel("training accuracy")
    axes[2].set_xlabel("epoch")
    axes[0].legend(fontsize=7, ncol=2)
    return axes