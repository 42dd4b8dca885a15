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
    bound: str = "mean",
    confidence: float = 0.95,
) -> Callable[[Mapping[str, Any]], int]:
    """A ``refit`` rule for ``GridSearchCV``: the most accurate *feasible* candidate.

    A candidate is feasible when its held-out max excess accuracy gap meets its own
    tolerance (disparity scorers return the negated metric). With ``bound="mean"`` (the
    default) the mean over folds must meet it: ``-mean_test_<disparity> <= tolerance``. With
    ``bound="upper"`` the one-sided upper confidence bound of that mean must:
    ``mean + t · std / sqrt(n_folds) <= tolerance`` (Student's t at ``confidence`` with
    ``n_folds - 1`` degrees of freedom), so that a candidate is chosen only when the folds
    agree that it meets ε. The default stays the mean: with 3-5 folds the bound is wide, and
    it often rules out every candidate. Among feasible candidates, the one with the highest
    ``mean_test_<accuracy>`` wins. When none is feasible, the candidate with the smallest
    disparity (of the same statistic) is chosen and a ``UserWarning`` says so.

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
    bound : {"mean", "upper"}, default="mean"
        Which statistic of the folds' disparity must meet ε.
    confidence : float, default=0.95
        Level of the one-sided bound for ``bound="upper"``.

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

    if bound not in ("mean", "upper"):
        raise ValueError(f"best_feasible: 'bound' must be 'mean' or 'upper'; got {bound!r}.")
    if not 0 < confidence < 1:
        raise ValueError(f"best_feasible: 'confidence' must lie in (0, 1); got {confidence!r}.")

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
        if bound == "upper":
            gap = gap + _upper_margin(cv_results, disparity, confidence)
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
            what = "max excess gap" if bound == "mean" else "upper bound of the max excess gap"
            warnings.warn(
                f"No candidate meets its tolerance on held-out data (smallest {what} "
                f"{gap[best]:.4f}); refitting the least disparate candidate {best}.",
                UserWarning,
                stacklevel=2,
            )
            return best
        return int(np.flatnonzero(feasible)[np.nanargmax(acc[feasible])])

    return rule


def _upper_margin(cv_results: Mapping[str, Any], disparity: str, confidence: float):
    """``t · std / sqrt(n_folds)`` of every candidate's fold scores of ``disparity``."""
    from scipy.stats import t

    folds = sorted(k for k in cv_results if k.startswith("split") and
                   k.endswith(f"_test_{disparity}"))
    if len(folds) < 2:
        raise ValueError(
            f"best_feasible(bound='upper') needs the per-fold scores split<i>_test_{disparity} "
            "of at least 2 folds in cv_results_.")
    scores = np.column_stack([np.asarray(cv_results[k], dtype=float) for k in folds])
    n = scores.shape[1]
    return t.ppf(confidence, n - 1) * scores.std(axis=1, ddof=1) / np.sqrt(n)
