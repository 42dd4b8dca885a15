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

import warnings

import numpy as np

from .metrics import disparity_of_excess, excess_from_gaps

__all__ = ["MIN_GROUP_SIZE", "bootstrap_category_counts", "category_counts",
           "percentile_interval", "row_categories", "statistics_of_counts"]

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
                              rng: np.random.Generator) -> np.ndarray:
    """``(n_boot, n_groups, n_categories)`` counts of stratified resamples: each group's rows
    drawn with replacement, as many as it has (a multinomial of its observed shares)."""
    sizes = counts.sum(axis=1)
    shares = counts / np.maximum(sizes, 1)[:, None]
    return rng.multinomial(sizes, shares, size=(n_boot, len(counts)))


def _share(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """``numerator / denominator`` with NaN where the denominator is 0 (no warning)."""
    safe = np.where(denominator > 0, denominator, 1)
    return np.where(denominator > 0, numerator / safe, np.nan)


def statistics_of_counts(counts: np.ndarray, binary: bool) -> dict[str, np.ndarray]:
    """Every figure of a report from category counts ``(..., n_groups, n_categories)``.

    Per group (shape ``(..., n_groups)``): ``dense_accuracy``, ``sparse_accuracy``,
    ``accuracy_gap``, ``excess_accuracy_gap`` and, for binary targets, ``dense_tpr``,
    ``sparse_tpr``, ``dense_fpr``, ``sparse_fpr``, ``dense_selection_rate`` and
    ``sparse_selection_rate``; summaries (shape ``(...)``): ``overall_gap``,
    ``max_excess_accuracy_gap`` and ``pairwise_disparity``. The same function gives a report's
    values (the observed counts) and their bootstrap replicates (resampled counts).
    """
    counts = np.asarray(counts, dtype=np.float64)
    k = np.arange(counts.shape[-1])
    accuracy_code = k // 8 if binary else k
    dense_right, sparse_right = accuracy_code // 2 == 1, accuracy_code % 2 == 1
    positive, dense_selected, sparse_selected = (k // 4) % 2, (k // 2) % 2, k % 2
    sizes = counts.sum(axis=-1)
    dense_correct = counts @ dense_right.astype(np.float64)
    sparse_correct = counts @ sparse_right.astype(np.float64)
    stats = {
        "dense_accuracy": _share(dense_correct, sizes),
        "sparse_accuracy": _share(sparse_correct, sizes),
    }
    stats["accuracy_gap"] = stats["dense_accuracy"] - stats["sparse_accuracy"]
    stats["excess_accuracy_gap"] = excess_from_gaps(stats["accuracy_gap"], sizes)
    stats["overall_gap"] = ((dense_correct - sparse_correct).sum(axis=-1)
                            / np.maximum(sizes.sum(axis=-1), 1))
    max_excess, pairwise = disparity_of_excess(stats["excess_accuracy_gap"])
    stats["max_excess_accuracy_gap"], stats["pairwise_disparity"] = max_excess, pairwise
    if binary:
        positives = counts @ (positive == 1).astype(np.float64)
        negatives = sizes - positives
        for model, selected in (("dense", dense_selected), ("sparse", sparse_selected)):
            chosen = selected == 1
            stats[f"{model}_tpr"] = _share(counts @ (chosen & (positive == 1)).astype(float),
                                           positives)
            stats[f"{model}_fpr"] = _share(counts @ (chosen & (positive == 0)).astype(float),
                                           negatives)
            stats[f"{model}_selection_rate"] = _share(counts @ chosen.astype(float), sizes)
    return stats


def percentile_interval(replicates: np.ndarray, ci: float) -> tuple[np.ndarray, np.ndarray]:
    """``(low, high)`` percentile interval over the first axis (numpy's ``nanquantile``):
    NaN replicates are left out (a resample of a group without positives has no TPR), and the
    interval is NaN where every replicate is."""
    alpha = (1.0 - ci) / 2.0
    with warnings.catch_warnings():  # all-NaN slices: NaN is the answer, not a warning
        warnings.simplefilter("ignore", RuntimeWarning)
        low, high = np.nanquantile(np.asarray(replicates, dtype=np.float64),
                                   [alpha, 1.0 - alpha], axis=0)
    return low, high
