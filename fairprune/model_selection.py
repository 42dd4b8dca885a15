"""Model selection under a fairness tolerance."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["best_feasible", "compare_candidates"]


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
    ``mean + t · se <= tolerance`` (Student's t at ``confidence`` with ``n_folds - 1``
    degrees of freedom; ``se`` the folds' standard error, corrected for their overlapping
    training sets as :func:`compare_candidates` says), so that a candidate is chosen only when the folds
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
        ε for every candidate when the grid does not vary the tolerance, and for the
        candidates of a list-of-dicts grid that do not set it.
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
            column = cv_results[tolerance_param]
            unset = np.ma.getmaskarray(column)
            tol = np.asarray(np.ma.filled(column, np.nan), dtype=float)
            if unset.any():  # a list-of-dicts grid where some candidates do not set it
                if default_tolerance is None:
                    raise ValueError(
                        f"best_feasible: candidates {np.flatnonzero(unset).tolist()} have no "
                        f"{tolerance_param!r} (their grid does not set it); pass "
                        "default_tolerance=<the estimator's tolerance> for them.")
                tol[unset] = float(default_tolerance)
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


def _fold_scores(cv_results: Mapping[str, Any], scorer: str, caller: str) -> np.ndarray:
    """``(n_candidates, n_folds)`` test scores of ``scorer`` (``split<i>_test_<scorer>``)."""
    folds = sorted((k for k in cv_results if k.startswith("split")
                    and k.endswith(f"_test_{scorer}")),
                   key=lambda k: int(k[len("split"):k.index("_")]))
    if len(folds) < 2:
        raise ValueError(
            f"{caller} needs the per-fold scores split<i>_test_{scorer} of at least 2 folds in "
            f"cv_results_; found {len(folds)}.")
    return np.column_stack([np.asarray(cv_results[k], dtype=float) for k in folds])


def _corrected_standard_error(scores: np.ndarray) -> np.ndarray:
    """Standard error of the mean over the last axis (folds), with Nadeau & Bengio's (2003)
    correction for k-fold cross-validation: ``sqrt((1/k + 1/(k-1)) · s²)``. The folds'
    training sets overlap, so their scores are correlated and the plain ``s / sqrt(k)``
    is too small."""
    k = scores.shape[-1]
    return np.sqrt((1.0 / k + 1.0 / (k - 1)) * scores.var(axis=-1, ddof=1))


def _upper_margin(cv_results: Mapping[str, Any], disparity: str, confidence: float):
    """``t · se`` of every candidate's fold scores of ``disparity``."""
    from scipy.stats import t

    scores = _fold_scores(cv_results, disparity, "best_feasible(bound='upper')")
    return t.ppf(confidence, scores.shape[1] - 1) * _corrected_standard_error(scores)


def compare_candidates(
    cv_results: Mapping[str, Any],
    scorer: str = "max_excess_accuracy_gap",
    *,
    param: str | None = "param_tolerance",
    negate: bool = True,
    confidence: float = 0.95,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Intervals of a grid search's candidates and of their differences, from the folds.

    ``GridSearchCV`` scores every candidate on the same folds, so two candidates' fold scores
    are paired and their difference has its own, usually narrower, interval. Both intervals
    are Student's t over the folds (``n_folds - 1`` degrees of freedom) with Nadeau &
    Bengio's (2003) corrected standard error ``sqrt((1/k + 1/(k-1)) · s²)`` for ``k`` folds,
    since folds whose training sets overlap are correlated. With 3-5 folds the intervals are
    wide: a difference whose interval excludes 0 is one the folds agree on, and one that
    includes 0 is not told apart from noise. For a per-group figure on a test set, use
    :meth:`~fairprune.FairPrunedClassifier.disparity_report` with ``n_boot``.

    Parameters
    ----------
    cv_results : mapping
        ``GridSearchCV.cv_results_`` (or ``cross_validate``-like dicts with ``split<i>_test_``
        keys per candidate).
    scorer : str, default="max_excess_accuracy_gap"
        Name of the entry of the search's ``scoring`` dict.
    param : str or None, default="param_tolerance"
        ``cv_results_`` column labelling the candidates (e.g.
        ``"param_fairprunedclassifier__tolerance"``); None labels them by index.
    negate : bool, default=True
        Undo a scorer's sign (fairprune's disparity scorers return minus the metric).
    confidence : float, default=0.95
        Level of the two-sided intervals.

    Returns
    -------
    candidates : pandas.DataFrame
        One row per candidate: ``candidate``, ``mean``, ``ci_low``, ``ci_high``.
    differences : pandas.DataFrame
        One row per pair ``a < b`` (in candidate order): ``a``, ``b``, ``difference`` (mean
        of a's fold scores minus b's), ``ci_low``, ``ci_high`` and ``distinguishable`` (the
        interval excludes 0).

    Examples
    --------
    >>> results = {"param_tolerance": [0.0, 0.05],
    ...            "split0_test_max_excess_accuracy_gap": [-0.02, -0.06],
    ...            "split1_test_max_excess_accuracy_gap": [-0.03, -0.07],
    ...            "split2_test_max_excess_accuracy_gap": [-0.02, -0.05]}
    >>> candidates, differences = compare_candidates(results)
    >>> bool(differences.loc[0, "distinguishable"])
    True
    """
    from scipy.stats import t

    if not 0 < confidence < 1:
        raise ValueError(
            f"compare_candidates: 'confidence' must lie in (0, 1); got {confidence!r}.")
    scores = _fold_scores(cv_results, scorer, "compare_candidates")
    if negate:
        scores = -scores
    if param is None:
        labels = list(range(len(scores)))
    elif param in cv_results:
        labels = list(np.ma.filled(np.ma.asarray(cv_results[param], dtype=object), None))
    else:
        raise ValueError(f"compare_candidates: {param!r} is not in cv_results_ (found "
                         f"{sorted(k for k in cv_results if k.startswith('param_'))}); pass "
                         "param=None to label the candidates by index.")
    quantile = t.ppf(0.5 + confidence / 2, scores.shape[1] - 1)
    mean, half = scores.mean(axis=1), quantile * _corrected_standard_error(scores)
    candidates = pd.DataFrame({"candidate": labels, "mean": mean, "ci_low": mean - half,
                               "ci_high": mean + half})
    a, b = np.triu_indices(len(scores), k=1)
    paired = scores[a] - scores[b]
    difference = paired.mean(axis=1)
    half = quantile * _corrected_standard_error(paired)
    differences = pd.DataFrame({
        "a": [labels[i] for i in a], "b": [labels[i] for i in b], "difference": difference,
        "ci_low": difference - half, "ci_high": difference + half,
        "distinguishable": (difference - half > 0) | (difference + half < 0)})
    return candidates, differences
