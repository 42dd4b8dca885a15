"""Constraint cells: which rows each constraint reads, for every ``gap_metric``.

The paper bounds every group's excess *accuracy* gap. The same formulation bounds any rate
that is an accuracy on a subset of rows: a true-positive rate is the accuracy on the
positives, a true-negative rate the accuracy on the negatives, a class's recall the accuracy
on that class. A constraint *cell* is a group restricted to such a subset, and its drop is
compared with the drop of its *family*: all cells of the same rate (all positives for TPR).

* ``"accuracy"``: every group with all its rows; one family, all rows.
* ``"tpr"`` (binary): ``(group, "tpr")``, the group's positives; family: all positives.
* ``"tnr"`` (binary): ``(group, "tnr")``, the group's negatives; family: all negatives.
* ``"equalized_odds"``: both of the above, two families.
* ``"tpr"`` (multiclass): ``(group, "recall k")``, the group's rows of class k, one per class;
  family: all rows of class k.

Only cells with training rows exist (a group without positives has no TPR constraint). Rows
in no cell (the negatives under ``"tpr"``) get the code ``n_cells``, a scratch cell that is its
own family and never constrained. numpy only: the constraint code receives the codes.
"""

from __future__ import annotations

import numpy as np

__all__ = ["GAP_METRICS", "ConstraintCells", "gap_name"]

#: The constrained metrics, in the order the docs list them.
GAP_METRICS = ("accuracy", "tpr", "tnr", "equalized_odds")


def gap_name(gap_metric: str) -> str:
    """The word of the history keys and warnings: ``accuracy_gap``, ``tpr_gap``, ``tnr_gap``
    or ``rate_gap`` (equalized odds: TPR and TNR cells)."""
    return {"accuracy": "accuracy_gap", "tpr": "tpr_gap", "tnr": "tnr_gap"}.get(
        gap_metric, "rate_gap")


class ConstraintCells:
    """The cells of a fit: built from the group codes and targets of the training rows.

    Parameters
    ----------
    gap_metric : {"accuracy", "tpr", "tnr", "equalized_odds"}
        The constrained metric.
    n_classes : int
        The dense module's number of outputs.
    pos_label : int, optional
        Positive class of a binary target (default: the larger class, 1).

    Attributes
    ----------
    n_cells : int
        Constraints (cells with training rows).
    names_ : list of tuple
        ``(group code, rate)`` of every cell, ``rate`` one of ``"tpr"``, ``"tnr"``,
        ``"recall k"`` or ``"accuracy"``.
    families_ : numpy.ndarray
        ``(n_cells + 1,)`` family of every cell, the scratch cell last in a family of its own
        (absent for ``"accuracy"``, whose cells are the groups: one family).
    """

    def __init__(self, gap_metric: str, n_classes: int, pos_label: int | None = None) -> None:
        if gap_metric not in GAP_METRICS:
            raise ValueError(f"The 'gap_metric' parameter must be one of {list(GAP_METRICS)}; "
                             f"got {gap_metric!r}.")
        binary_only = gap_metric in ("tnr", "equalized_odds")
        if binary_only and n_classes != 2:
            raise ValueError(
                f"gap_metric={gap_metric!r} needs a binary target (true-negative rates); the "
                f"dense module has {n_classes} classes. Use gap_metric='tpr' (per-class recall) "
                "or 'accuracy'.")
        if pos_label is None:
            pos_label = n_classes - 1
        if not 0 <= pos_label < n_classes or isinstance(pos_label, bool):
            raise ValueError(f"The 'pos_label' parameter must be a class index in [0, "
                             f"{n_classes}); got {pos_label!r}.")
        self.gap_metric, self.n_classes, self.pos_label = gap_metric, n_classes, int(pos_label)

    @property
    def identity(self) -> bool:
        """Whether the cells are the groups themselves (``"accuracy"``)."""
        return self.gap_metric == "accuracy"

    def _rate_of_class(self) -> list[str | None]:
        """The rate each class's rows count for (None: no cell)."""
        if self.gap_metric == "accuracy":
            return ["accuracy"] * self.n_classes
        if self.n_classes > 2:  # multiclass "tpr": per-class recall
            return [f"recall {k}" for k in range(self.n_classes)]
        rates: list[str | None] = [None, None]
        negative = 1 - self.pos_label
        if self.gap_metric in ("tpr", "equalized_odds"):
            rates[self.pos_label] = "tpr"
        if self.gap_metric in ("tnr", "equalized_odds"):
            rates[negative] = "tnr"
        return rates

    def fit(self, codes: np.ndarray, y: np.ndarray, n_groups: int) -> "ConstraintCells":
        """Find the cells with training rows (``codes``: ``(n,)`` or ``(n, attributes)``)."""
        codes = np.asarray(codes)
        y = np.asarray(y)
        if self.identity:  # the cells are the groups
            self.names_ = [(group, "accuracy") for group in range(n_groups)]
            self.family_names_, self.n_cells, self.families_ = ["accuracy"], n_groups, None
            return self
        rates = self._rate_of_class()
        family_names = list(dict.fromkeys(r for r in rates if r is not None))
        present = np.zeros((n_groups, self.n_classes), dtype=bool)
        columns = codes.reshape(len(codes), -1)
        for column in columns.T:
            present[column, y] = True
        self.table_ = np.full((n_groups, self.n_classes), -1, dtype=np.int64)
        names, families = [], []
        # cells ordered by group, then by rate (one cell per (group, rate) pair)
        for group in range(n_groups):
            for rate in family_names:
                classes = [k for k in range(self.n_classes) if rates[k] == rate]
                if not present[group, classes].any():
                    continue
                self.table_[group, classes] = len(names)
                names.append((group, rate))
                families.append(family_names.index(rate))
        self.names_ = names
        self.family_names_ = family_names
        self.n_cells = len(names)
        self.table_[self.table_ < 0] = self.n_cells  # the scratch cell
        self.families_ = np.asarray([*families, len(family_names)], dtype=np.int64)
        return self

    @property
    def n_codes(self) -> int:
        """Codes the constraint state holds: the cells, plus the scratch cell when some rows
        belong to none."""
        return self.n_cells if self.identity else self.n_cells + 1

    def transform(self, codes: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Cell codes of rows (``n_cells`` for rows in no cell; group codes for accuracy)."""
        codes = np.asarray(codes)
        if self.identity:
            return codes
        y = np.asarray(y)
        if codes.ndim == 1:
            return self.table_[codes, y]
        return self.table_[codes, y[:, None]]
