"""Intervals for the disparity report: a paired, group-stratified bootstrap.

A report compares two models on the same rows, group by group. Its uncertainty is that of the
rows: had other people of each group been sampled, every figure would move. The bootstrap here
resamples rows *within each group* (group sizes stay fixed, as in a stratified sample) and lets
one resample serve both models (the dense and sparse predictions of a row travel together, so
the gaps between them are paired). Every figure of the report is recomputed on every resample,
and its interval is the percentile interval of those values.

It is exact and vectorised: each row falls in one of a few *categories* (whether each model
is right, or for binary targets whether the row is positive and each model predicts positive),
and resampling a group's ``n_g`` rows with replacement draws the category counts from a
multinomial with the group's observed shares. So ``n_boot`` resamples of any number of rows
cost ``n_boot × n_groups × n_categories`` numbers, not a Python loop per resample or group.

What a percentile interval can promise: for a group's accuracy, gap or excess gap (means of
rows) it covers the truth at about its nominal rate once the group has a few dozen rows
(tested). For ``max_g ψ_g`` and ``Ψ_PW`` — a maximum over groups — it cannot: the bootstrap
distribution of a maximum is biased upward when several groups are close, so its interval
reads as "how far the maximum moves with the rows", not as a calibrated bound. Groups smaller
than :data:`MIN_GROUP_SIZE` rows are flagged: their intervals are wide and their coverage is
not what the nominal level says.
"""

from __future__ import annotations

import numpy as np

from .metrics import disparity_of_excess, excess_from_gaps

__all__ = ["MIN_GROUP_SIZE", "bootstrap_category_counts", "category_counts",
           "max_excess_upper_bound", "percentile_interval", "row_categories",
           "statistics_of_counts"]

#: Groups with fewer rows are flagged ``small_group`` in a report and named in a warning.
MIN_GROUP_SIZE = 30


def row_categories(y_true: np.ndarray, dense: np.ndarray, sparse: np.ndarray,
                   pos_label=None) -> tuple[np.ndarray, int]:
    """The category of every row and the number of categories.

    Without ``pos_label``: ``2 · dense right + sparse right`` (4 categories). With it, also
    whether the row is positive and whether each model predicts positive:
    ``8 · (2 · dense right + sparse right) + 4 · positive + 2 · dense positive + sparse
    positive`` (32 categories).
    """
    accuracy = 2 * (dense == y_true).astype(np.int64) + (sparse == y_true)
    if pos_label is None:
        return accuracy, 4
    rates = (4 * (y_true == pos_label).astype(np.int64) + 2 * (dense == pos_label)
             + (sparse == pos_label))
    return 8 * accuracy + rates, 32


def category_counts(categories: np.ndarray, codes: np.ndarray, n_groups: int,
                    n_categories: int) -> np.ndarray:
    """``(n_groups, n_categories)`` rows of each category in each group."""
    flat = np.bincount(codes * n_categories + categories, minlength=n_groups * n_categories)
    return flat.reshape(n_groups, n_categories)


def bootstrap_category_counts(counts: np.ndarray, n_boot: int,
                              rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Counts of stratified resamples, each group's rows drawn with replacement, as many as
    it has: ``(resampled, categories)``, ``resampled`` of shape ``(n_boot, n_groups,
    len(categories))`` over the categories some row falls in (the others stay empty).

    A group's counts follow a multinomial of its observed shares, drawn here as a chain of
    binomials (category ``j`` out of the rows not yet given to the categories before it),
    each one vectorised over resamples and groups.
    """
    counts = np.asarray(counts, dtype=np.int64)
    used = np.flatnonzero(counts.sum(axis=0))
    out = np.zeros((n_boot, len(counts), len(used)), dtype=np.int64)
    remaining = np.broadcast_to(counts.sum(axis=1), (n_boot, len(counts))).copy()
    left = counts.sum(axis=1).astype(np.float64)  # observed rows not yet assigned
    for position, category in enumerate(used):
        if position == len(used) - 1:
            out[..., position] = remaining
            break
        share = np.where(left > 0, counts[:, category] / np.maximum(left, 1), 0.0)
        drawn = rng.binomial(remaining, np.clip(share, 0.0, 1.0))
        out[..., position] = drawn
        remaining -= drawn
        left -= counts[:, category]
    return out, used


def _share(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """``numerator / denominator`` with NaN where the denominator is 0 (no warning)."""
    safe = np.where(denominator > 0, denominator, 1)
    return np.where(denominator > 0, numerator / safe, np.nan)


def statistics_of_counts(counts: np.ndarray, binary: bool,
                         categories: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Every figure of a report from category counts ``(..., n_groups, n_categories)``
    (``categories``: which category each column counts; by default all, in order).

    Per group (shape ``(..., n_groups)``): ``dense_accuracy``, ``sparse_accuracy``,
    ``accuracy_gap``, ``excess_accuracy_gap`` and, for binary targets, ``dense_tpr``,
    ``sparse_tpr``, ``dense_fpr``, ``sparse_fpr``, ``dense_selection_rate`` and
    ``sparse_selection_rate``; summaries (shape ``(...)``): ``overall_dense_accuracy``,
    ``overall_sparse_accuracy``, ``overall_gap``, ``max_excess_accuracy_gap`` and
    ``pairwise_disparity``. The same function gives a report's
    values (the observed counts) and their bootstrap replicates (resampled counts).
    """
    counts = np.asarray(counts, dtype=np.float64)
    k = np.arange(counts.shape[-1]) if categories is None else np.asarray(categories)
    accuracy_code = k // 8 if binary else k
    positive, dense_selected, sparse_selected = (k // 4) % 2 == 1, (k // 2) % 2 == 1, k % 2 == 1
    columns = {"size": np.ones_like(positive), "dense_correct": accuracy_code // 2 == 1,
               "sparse_correct": accuracy_code % 2 == 1}
    if binary:
        columns["positives"] = positive
        for model, selected in (("dense", dense_selected), ("sparse", sparse_selected)):
            columns[f"{model}_true_positives"] = selected & positive
            columns[f"{model}_false_positives"] = selected & ~positive
            columns[f"{model}_selected"] = selected
    # every sum the figures need, in one matrix product over the categories
    sums = counts @ np.column_stack(list(columns.values())).astype(np.float64)
    total = dict(zip(columns, np.moveaxis(sums, -1, 0)))
    sizes = total["size"]
    stats = {
        "dense_accuracy": _share(total["dense_correct"], sizes),
        "sparse_accuracy": _share(total["sparse_correct"], sizes),
    }
    stats["accuracy_gap"] = stats["dense_accuracy"] - stats["sparse_accuracy"]
    stats["excess_accuracy_gap"] = excess_from_gaps(stats["accuracy_gap"], sizes)
    rows = np.maximum(sizes.sum(axis=-1), 1)
    stats["overall_dense_accuracy"] = total["dense_correct"].sum(axis=-1) / rows
    stats["overall_sparse_accuracy"] = total["sparse_correct"].sum(axis=-1) / rows
    stats["overall_gap"] = stats["overall_dense_accuracy"] - stats["overall_sparse_accuracy"]
    max_excess, pairwise = disparity_of_excess(stats["excess_accuracy_gap"])
    stats["max_excess_accuracy_gap"], stats["pairwise_disparity"] = max_excess, pairwise
    if binary:
        negatives = sizes - total["positives"]
        for model in ("dense", "sparse"):
            stats[f"{model}_tpr"] = _share(total[f"{model}_true_positives"], total["positives"])
            stats[f"{model}_fpr"] = _share(total[f"{model}_false_positives"], negatives)
            stats[f"{model}_selection_rate"] = _share(total[f"{model}_selected"], sizes)
        # drops of the true-positive and true-negative rates (TNR = 1 − FPR), and their excess
        # over the drop among all positives (all negatives): ψ^TPR_g and ψ^TNR_g
        stats["tpr_gap"] = stats["dense_tpr"] - stats["sparse_tpr"]
        stats["tnr_gap"] = stats["sparse_fpr"] - stats["dense_fpr"]
        stats["excess_tpr_gap"] = excess_from_gaps(stats["tpr_gap"], total["positives"])
        stats["excess_tnr_gap"] = excess_from_gaps(stats["tnr_gap"], negatives)
        for rate in ("tpr", "tnr"):
            stats[f"max_excess_{rate}_gap"] = disparity_of_excess(stats[f"excess_{rate}_gap"])[0]
    return stats


def percentile_interval(replicates: np.ndarray, ci: float) -> tuple[np.ndarray, np.ndarray]:
    """``(low, high)`` percentile interval over the first axis, NaN replicates left out (a
    resample of a group without positives has no TPR); NaN where every replicate is.

    numpy's linear interpolation between order statistics (its default ``quantile``), on
    columns sorted once: ``nanquantile`` loops over the columns in Python when any is NaN.
    """
    alpha = (1.0 - ci) / 2.0
    replicates = np.asarray(replicates, dtype=np.float64)
    if not np.isnan(replicates).any():
        low, high = np.quantile(replicates, [alpha, 1.0 - alpha], axis=0)
        return low, high
    ordered = np.sort(replicates, axis=0)  # NaN sort last
    last = np.maximum((~np.isnan(replicates)).sum(axis=0) - 1, 0)
    bounds = []
    for q in (alpha, 1.0 - alpha):
        position = q * last
        below = np.floor(position).astype(np.int64)
        above = np.minimum(below + 1, last)
        lower = np.take_along_axis(ordered, below[None], axis=0)[0]
        upper = np.take_along_axis(ordered, above[None], axis=0)[0]
        bounds.append(lower + (position - below) * np.where(above > below, upper - lower, 0.0))
    return bounds[0], bounds[1]


def max_excess_upper_bound(pair_counts: np.ndarray, *, level: float = 0.95,
                           n_boot: int = 1000, random_state: int | None = 0) -> float:
    """One-sided upper bound of ``max_g ψ_g`` at ``level``: the ``level`` quantile of its
    paired, group-stratified bootstrap (the report's resampling) from ``(n_groups, 4)``
    counts of rows per group and category ``2 · dense right + sparse right``. NaN without
    rows. Like the report's interval of the maximum, it says how far the maximum moves with
    the rows, not a calibrated bound (see the module's notes).
    """
    counts = np.asarray(pair_counts, dtype=np.int64)
    if counts.sum() == 0:
        return float("nan")
    resampled, used = bootstrap_category_counts(counts, n_boot, np.random.default_rng(random_state))
    replicates = statistics_of_counts(resampled, binary=False,
                                      categories=used)["max_excess_accuracy_gap"]
    replicates = replicates[~np.isnan(replicates)]
    return float(np.quantile(replicates, level)) if replicates.size else float("nan")
