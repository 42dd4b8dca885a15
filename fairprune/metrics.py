"""Disparity metrics of a pruned classifier against its dense reference.

Pure functions on array-likes (numpy/pandas, no torch). Every value is a fraction, not a
percentage. With ``acc_g`` the accuracy on group ``g``:

* accuracy gap ``Δ_g = acc_g(dense) − acc_g(sparse)`` and overall ``Δ = acc(dense) − acc(sparse)``;
* excess accuracy gap ``ψ_g = Δ_g − Δ`` (the quantity CEAG constrains to ``ψ_g <= ε``);
* pairwise disparity ``Ψ_PW = max_g Δ_g − min_g Δ_g``;
* ``max_g ψ_g``.

Because ``Δ`` is the size-weighted mean of the ``Δ_g``, the size-weighted sum of ``ψ_g`` is 0,
``max_g ψ_g >= 0`` and ``max_g ψ_g <= Ψ_PW``.

:func:`excess_from_gaps` and :func:`disparity_of_excess` are the one definition of ``ψ_g``,
``max_g ψ_g`` and ``Ψ_PW`` on arrays: the metrics below, the report and the training history
use them. On the device, during training, :func:`fairprune.constraints.statistics.excess_gaps`
computes the same ``ψ_g`` in torch (tested equal).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ._validation import check_same_length, check_vector
from .groups import encode_groups

__all__ = [
    "accuracy_gaps",
    "disparity_of_excess",
    "excess_from_gaps",
    "excess_accuracy_gaps",
    "excess_tnr_gaps",
    "excess_tpr_gaps",
    "group_accuracy",
    "max_excess_accuracy_gap",
    "max_excess_tnr_gap",
    "max_excess_tpr_gap",
    "pairwise_disparity",
]


def correct(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """1.0 where ``y_pred`` equals ``y_true``, else 0.0."""
    return (y_true == y_pred).astype(np.float64)


def per_group_mean(values: np.ndarray, codes: np.ndarray, n_groups: int) -> np.ndarray:
    """Mean of ``values`` within each group code ``0 .. n_groups - 1``."""
    counts = np.bincount(codes, minlength=n_groups)
    return np.bincount(codes, weights=values, minlength=n_groups) / counts


def excess_from_gaps(gaps: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """``ψ_g = Δ_g − Δ``, with ``Δ`` the ``weights``-weighted mean of the finite ``Δ_g``.

    ``weights`` are the groups' sizes for the overall gap of the same rows. A NaN gap (a
    group without rows) stays NaN and takes no part in ``Δ``. Works along the last axis, so
    a stack of bootstrap replicates ``(n_boot, n_groups)`` goes through at once.

    Examples
    --------
    >>> excess_from_gaps(np.array([0.5, 0.0]), np.array([2, 2])).tolist()
    [0.25, -0.25]
    """
    gaps = np.asarray(gaps, dtype=np.float64)
    weights = np.where(np.isnan(gaps), 0.0, np.asarray(weights, dtype=np.float64))
    total = np.maximum(weights.sum(axis=-1, keepdims=True), np.finfo(np.float64).tiny)
    overall = (weights * np.nan_to_num(gaps)).sum(axis=-1, keepdims=True) / total
    return gaps - overall


def disparity_of_excess(excess: np.ndarray):
    """``(max_g ψ_g, Ψ_PW)`` of excess accuracy gaps, NaN entries ignored (NaN when all are).

    ``ψ_g = Δ_g − Δ`` with one ``Δ`` for all groups, so ``max ψ − min ψ = max Δ − min Δ``:
    the pairwise disparity follows from the excess gaps alone. Floats for a vector of groups;
    arrays (over the last axis) for a stack of them.

    Examples
    --------
    >>> disparity_of_excess(np.array([0.25, -0.25, np.nan]))
    (0.25, 0.5)
    """
    excess = np.asarray(excess, dtype=np.float64)
    seen = ~np.isnan(excess)
    highest = np.where(seen, excess, -np.inf).max(axis=-1)
    lowest = np.where(seen, excess, np.inf).min(axis=-1)
    any_seen = seen.any(axis=-1)
    maximum = np.where(any_seen, highest, np.nan)
    pairwise = np.where(any_seen, highest - lowest, np.nan)
    if excess.ndim == 1:
        return float(maximum), float(pairwise)
    return maximum, pairwise


def checked_predictions(y_true, y_pred_dense, y_pred_sparse, groups):
    """Validated inputs of a disparity metric: ``(y_true, dense, sparse, labels, codes)``.

    ``labels`` is the group index (:func:`fairprune.groups.encode_groups`, the encoding the
    estimator uses) and ``codes`` the group code of every sample.
    """
    y_true = check_vector(y_true, "y_true")
    dense = check_vector(y_pred_dense, "y_pred_dense")
    sparse = check_vector(y_pred_sparse, "y_pred_sparse")
    labels, codes = encode_groups(groups)
    check_same_length(
        [("y_true", y_true), ("y_pred_dense", dense), ("y_pred_sparse", sparse), ("groups", codes)]
    )
    return y_true, dense, sparse, labels, codes


def group_accuracy(y_true: Any, y_pred: Any, groups: Any) -> pd.Series:
    """Accuracy of ``y_pred`` within each group.

    Parameters
    ----------
    y_true, y_pred : array-like of shape (n_samples,)
        True and predicted class labels.
    groups : array-like of shape (n_samples,)
        Hashable group label of every sample (no missing values).

    Returns
    -------
    pandas.Series
        Accuracy per group, indexed by group label (sorted when the labels are comparable).

    Examples
    --------
    >>> group_accuracy([0, 1, 1, 0], [0, 1, 0, 0], ["a", "a", "b", "b"])
    group
    a    1.0
    b    0.5
    Name: accuracy, dtype: float64
    """
    y_true = check_vector(y_true, "y_true")
    y_pred = check_vector(y_pred, "y_pred")
    labels, codes = encode_groups(groups)
    check_same_length([("y_true", y_true), ("y_pred", y_pred), ("groups", codes)])
    values = per_group_mean(correct(y_true, y_pred), codes, len(labels))
    return pd.Series(values, index=labels, name="accuracy")


def _gaps(y_true, y_pred_dense, y_pred_sparse, groups,
          group_mode: str = "intersectional") -> tuple[pd.Series, float]:
    y_true, dense, sparse, labels, codes = checked_predictions(
        y_true, y_pred_dense, y_pred_sparse, groups)
    diff = correct(y_true, dense) - correct(y_true, sparse)
    if group_mode == "marginal":  # one group per attribute value, each row in one per attribute
        from .groups import MarginalGroupEncoder, label_attributes

        encoder = MarginalGroupEncoder().fit(labels[codes], label_attributes(None, groups))
        cells = encoder.transform(labels[codes])
        labels = pd.MultiIndex.from_tuples(list(encoder.classes_), names=["attribute", "group"])
        diff, codes = np.repeat(diff, cells.shape[1]), cells.reshape(-1)
    elif group_mode != "intersectional":
        raise ValueError(f"group_mode must be 'intersectional' or 'marginal'; got {group_mode!r}.")
    per_group = per_group_mean(diff, codes, len(labels))
    sizes = np.bincount(codes, minlength=len(labels))
    excess = excess_from_gaps(per_group, sizes)
    return (pd.Series(per_group, index=labels, name="accuracy_gap"),
            pd.Series(excess, index=labels, name="excess_accuracy_gap"))


def accuracy_gaps(
    y_true: Any, y_pred_dense: Any, y_pred_sparse: Any, groups: Any, *,
    group_mode: str = "intersectional"
) -> pd.Series:
    """Per-group accuracy lost by pruning, ``Δ_g = acc_g(dense) − acc_g(sparse)``.

    Parameters
    ----------
    y_true, y_pred_dense, y_pred_sparse : array-like of shape (n_samples,)
        True labels and the dense and sparse models' predictions.
    groups : array-like of shape (n_samples,)
        Group label of every sample (a several-column frame: one label per combination).
    group_mode : {"intersectional", "marginal"}, default="intersectional"
        With several attributes: one group per combination of values, or one per value of
        each attribute (indexed by ``(attribute, value)``), each row counted once per
        attribute.

    Returns
    -------
    pandas.Series
        ``Δ_g`` indexed by group label. Negative values mean pruning helped that group.

    Examples
    --------
    >>> accuracy_gaps([1, 1, 1, 1], [1, 1, 1, 1], [1, 0, 1, 1], ["a", "a", "b", "b"])
    group
    a    0.5
    b    0.0
    Name: accuracy_gap, dtype: float64
    """
    return _gaps(y_true, y_pred_dense, y_pred_sparse, groups, group_mode)[0]


def excess_accuracy_gaps(
    y_true: Any, y_pred_dense: Any, y_pred_sparse: Any, groups: Any, *,
    group_mode: str = "intersectional"
) -> pd.Series:
    """Per-group excess accuracy gap ``ψ_g = Δ_g − Δ``.

    Parameters
    ----------
    y_true, y_pred_dense, y_pred_sparse, groups : array-like of shape (n_samples,)
        As in :func:`accuracy_gaps`.

    Returns
    -------
    pandas.Series
        ``ψ_g`` indexed by group label; the size-weighted sum is 0.

    Examples
    --------
    >>> excess_accuracy_gaps([1, 1, 1, 1], [1, 1, 1, 1], [1, 0, 1, 1], ["a", "a", "b", "b"])
    group
    a    0.25
    b   -0.25
    Name: excess_accuracy_gap, dtype: float64
    """
    return _gaps(y_true, y_pred_dense, y_pred_sparse, groups, group_mode)[1]


def pairwise_disparity(
    y_true: Any, y_pred_dense: Any, y_pred_sparse: Any, groups: Any, *,
    group_mode: str = "intersectional"
) -> float:
    """Pairwise disparity ``Ψ_PW = max_g Δ_g − min_g Δ_g`` (a fraction, >= 0).

    Examples
    --------
    >>> pairwise_disparity([1, 1, 1, 1], [1, 1, 1, 1], [1, 0, 1, 1], ["a", "a", "b", "b"])
    0.5
    """
    return disparity_of_excess(_gaps(y_true, y_pred_dense, y_pred_sparse, groups, group_mode)[1])[1]


def max_excess_accuracy_gap(
    y_true: Any, y_pred_dense: Any, y_pred_sparse: Any, groups: Any, *,
    group_mode: str = "intersectional"
) -> float:
    """Largest excess accuracy gap ``max_g ψ_g`` (a fraction, >= 0, <= ``Ψ_PW``).

    Examples
    --------
    >>> max_excess_accuracy_gap([1, 1, 1, 1], [1, 1, 1, 1], [1, 0, 1, 1], ["a", "a", "b", "b"])
    0.25
    """
    return disparity_of_excess(_gaps(y_true, y_pred_dense, y_pred_sparse, groups, group_mode)[1])[0]


def _rate_excess(y_true, y_pred_dense, y_pred_sparse, groups, rate: str, pos_label,
                 group_mode: str) -> pd.Series:
    """Per-group excess drop of the true-positive (``rate="tpr"``) or true-negative rate:
    the accuracy gaps on the positives (negatives) alone, against the drop over all of them."""
    y_true, dense, sparse, labels, codes = checked_predictions(
        y_true, y_pred_dense, y_pred_sparse, groups)
    if pos_label is None:
        values = np.unique(y_true)
        if len(values) > 2:
            raise ValueError(f"excess {rate} gaps need a binary target; y_true has "
                             f"{len(values)} classes.")
        pos_label = values.max()
    rows = (y_true == pos_label) if rate == "tpr" else (y_true != pos_label)
    if not rows.any():
        raise ValueError(f"excess {rate} gaps need {'positive' if rate == 'tpr' else 'negative'}"
                         f" rows (pos_label={pos_label!r}); y_true has none.")
    group_labels = np.asarray(labels, dtype=object)[codes][rows]
    if group_mode == "intersectional":
        group_labels = list(group_labels)
    return _gaps(y_true[rows], dense[rows], sparse[rows], group_labels, group_mode)[1]


def excess_tpr_gaps(y_true: Any, y_pred_dense: Any, y_pred_sparse: Any, groups: Any, *,
                    pos_label: Any = None, group_mode: str = "intersectional") -> pd.Series:
    """Per-group excess drop of the true-positive rate, ``ψ^TPR_g = Δ^TPR_g − Δ^TPR``.

    ``Δ^TPR_g`` is the dense model's TPR on group g minus the sparse model's, ``Δ^TPR`` the
    same over all positives. Groups without positives are left out.

    Examples
    --------
    >>> excess_tpr_gaps([1, 1, 0, 1, 1, 0], [1, 1, 0, 1, 1, 0], [1, 0, 0, 1, 1, 0],
    ...                 ["a", "a", "a", "b", "b", "b"]).round(2).tolist()
    [0.25, -0.25]
    """
    return _rate_excess(y_true, y_pred_dense, y_pred_sparse, groups, "tpr", pos_label,
                        group_mode)


def excess_tnr_gaps(y_true: Any, y_pred_dense: Any, y_pred_sparse: Any, groups: Any, *,
                    pos_label: Any = None, group_mode: str = "intersectional") -> pd.Series:
    """Per-group excess drop of the true-negative rate (1 − FPR), as :func:`excess_tpr_gaps`
    on the negatives."""
    return _rate_excess(y_true, y_pred_dense, y_pred_sparse, groups, "tnr", pos_label,
                        group_mode)


def max_excess_tpr_gap(y_true: Any, y_pred_dense: Any, y_pred_sparse: Any, groups: Any, *,
                       pos_label: Any = None, group_mode: str = "intersectional") -> float:
    """Largest excess drop of a group's true-positive rate (the report's
    ``max_excess_tpr_gap``)."""
    return disparity_of_excess(excess_tpr_gaps(y_true, y_pred_dense, y_pred_sparse, groups,
                                               pos_label=pos_label,
                                               group_mode=group_mode).to_numpy())[0]


def max_excess_tnr_gap(y_true: Any, y_pred_dense: Any, y_pred_sparse: Any, groups: Any, *,
                       pos_label: Any = None, group_mode: str = "intersectional") -> float:
    """Largest excess drop of a group's true-negative rate (the report's
    ``max_excess_tnr_gap``)."""
    return disparity_of_excess(excess_tnr_gaps(y_true, y_pred_dense, y_pred_sparse, groups,
                                               pos_label=pos_label,
                                               group_mode=group_mode).to_numpy())[0]
