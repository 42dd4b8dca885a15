"""Model selection under a fairness tolerance."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

__all__ = ["best_feasible"]


def best_feasible(
    accuracy: str = "accuracy",
    disparity: str = "max_excess_accuracy_gap",
    tolerance_param: str = "param_tolerance",
    default_tolerance: float | None = None,
) -> Callable[[Mapping[str, Any]], int]:
    """A ``refit`` rule for ``GridSearchCV``: the most accurate *feasible* candidate.

    A candidate is feasible when its held-out max excess accuracy gap (mean over folds) meets
    its own tolerance: ``-mean_test_<disparity> <= tolerance`` (disparity scorers return the
    negated metric). Among feasible candidates, the one with the highest
    ``mean_test_<accuracy>`` wins. When none is feasible, the candidate with the smallest
    disparity is chosen and a ``UserWarning`` says so.

    Parameters
    ----------
    accuracy : str, default="accuracy"
        Name of the accuracy entry of the ``scoring`` dict.
    disparity : str, default="max_excess_accuracy_gap"
        Name of the ``neg_max_excess_accuracy_gap_scorer`` entry of the ``scoring`` dict.
    tolerance_param : str, default="param_tolerance"
        ``cv_results_`` column holding each candidate's ε (for a Pipeline, e.g.
        ``"param_fairprunedclassifier__tolerance"``).
    default_tolerance : float, optional
        ε for every candidate when the grid does not vary the tolerance.

    Returns
    -------
    callable
        ``refit(cv_results) -> best index``, for ``GridSearchCV(..., refit=best_feasible())``.

    Examples
    --------
    >>> rule = best_feasible()
    >>> rule({"mean_test_accuracy": [0.95, 0.93, 0.90],
    ...       "mean_test_max_excess_accuracy_gap": [-0.08, -0.03, -0.01],
    ...       "param_tolerance": [0.05, 0.05, 0.05]})
    1
    """

    def rule(cv_results: Mapping[str, Any]) -> int:
        for key in (f"mean_test_{accuracy}", f"mean_test_{disparity}"):
            if key not in cv_results:
                raise ValueError(
                    f"best_feasible needs {key!r} in cv_results_: use scoring={{{accuracy!r}: "
                    f"'accuracy', {disparity!r}: neg_max_excess_accuracy_gap_scorer}} (found "
                    f"{sorted(k for k in cv_results if k.startswith('mean_test_'))})."
                )
        acc = np.asarray(cv_results[f"mean_test_{accuracy}"], dtype=float)
        gap = -np.asarray(cv_results[f"mean_test_{disparity}"], dtype=float)
        if tolerance_param in cv_results:
            tol = np.asarray(np.ma.filled(cv_results[tolerance_param], np.nan), dtype=float)
        elif default_tolerance is not None:
            tol = np.full_like(acc, float(default_tolerance))
        else:
            raise ValueError(
                f"best_feasible: {tolerance_param!r} is not in cv_results_ (the grid does not "
                "vary the tolerance); pass default_tolerance=ε or the right tolerance_param."
            )
        feasible = gap <= tol
        if not feasible.any():
            best = int(np.nanargmin(gap))
            warnings.warn(
                f"No candidate meets its tolerance on held-out data (smallest max excess gap "
                f"{gap[best]:.4f}); refitting the least disparate candidate {best}.",
                UserWarning,
                stacklevel=2,
            )
            return best
        return int(np.flatnonzero(feasible)[np.nanargmax(acc[feasible])])

    return rule
