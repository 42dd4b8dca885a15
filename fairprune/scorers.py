"""scikit-learn scorers for the disparity of a pruned model against its dense reference.

Scorers follow sklearn's "greater is better" rule: they return the *negated* metric, like
``neg_log_loss``. They call ``predict`` (sparse model) and ``predict_dense`` (dense reference)
of the fitted estimator — or of the last step of a ``Pipeline``, after the earlier steps'
``transform`` — on the scored fold.

Groups come from routed metadata (``sklearn.set_config(enable_metadata_routing=True)``: the
scorers request ``sensitive_features``), from a ``sensitive_features=`` (or ``groups=``)
argument when a scorer is called directly, or from the estimator's ``groups`` locator. A scorer that finds no groups
raises a ``ValueError``: it never returns NaN (which GridSearchCV would record silently).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import numpy as np
from sklearn.metrics._scorer import _BaseScorer
from sklearn.pipeline import Pipeline
from sklearn.utils.metadata_routing import MetadataRequest

from .groups import either_labels, locate_groups
from .metrics import (max_excess_accuracy_gap, max_excess_tnr_gap, max_excess_tpr_gap,
                      pairwise_disparity)

__all__ = [
    "DisparityScorer",
    "make_disparity_scorer",
    "neg_max_excess_accuracy_gap_scorer",
    "neg_max_excess_tnr_gap_scorer",
    "neg_max_excess_tpr_gap_scorer",
    "neg_max_excess_gap_scorer",
    "neg_pairwise_disparity_scorer",
]

NO_GROUPS_MESSAGE = (
    "{name} needs group labels, but none reached it: the estimator has no 'groups' locator "
    "and no sensitive_features were passed. Either give the estimator a locator "
    "(groups='column' or groups=by_target), or enable metadata routing "
    "(sklearn.set_config(enable_metadata_routing=True)), call "
    "estimator.set_fit_request(sensitive_features=True) and pass sensitive_features=... to "
    "the search."
)


def check_known_labels(y_true: np.ndarray, classes, caller: str) -> None:
    """Refuse true labels outside the fitted classes: a score computed on them would be a
    number that looks fine (e.g. -0.0, ranked best by GridSearchCV) but is meaningless."""
    if classes is None:
        return
    classes = np.asarray(classes)
    try:
        known = np.isin(y_true, classes)
    except TypeError:
        known = np.zeros(len(y_true), dtype=bool)
    if y_true.dtype.kind != classes.dtype.kind and not (
            y_true.dtype.kind in "iuf" and classes.dtype.kind in "iuf"):
        known[:] = False
    if not known.all():
        unknown = list(dict.fromkeys(y_true[~known].tolist()))[:5]
        raise ValueError(
            f"{caller}: 'y' holds labels the estimator was not fitted on: {unknown} (fitted "
            f"classes: {classes.tolist()[:10]}{' ...' if len(classes) > 10 else ''}). Pass the "
            "class indices the model was trained with.")


def _final_step(estimator: Any) -> tuple[Any, Callable[[Any], Any]]:
    """The estimator that owns ``predict_dense`` and a function mapping X to its input."""
    if isinstance(estimator, Pipeline):
        head, final = estimator[:-1], estimator[-1]
        return final, (lambda X: head.transform(X)) if len(head) else (lambda X: X)
    return estimator, lambda X: X


class DisparityScorer(_BaseScorer):
    """Scorer computing ``sign * metric(y, predict_dense(X), predict(X), groups)``.

    Parameters
    ----------
    metric : callable
        ``metric(y_true, y_pred_dense, y_pred_sparse, groups) -> float``, e.g.
        :func:`fairprune.metrics.pairwise_disparity`.
    greater_is_better : bool, default=False
        ``False`` negates the metric (disparities are losses).
    """

    def __init__(self, metric: Callable[..., float], greater_is_better: bool = False) -> None:
        if not callable(metric):
            raise TypeError(
                "make_disparity_scorer needs a callable metric(y_true, y_pred_dense, "
                f"y_pred_sparse, groups) -> float; got {metric!r}."
            )
        super().__init__(metric, 1 if greater_is_better else -1, {}, response_method="predict")

    def __call__(self, estimator, X, y_true, groups=None, sensitive_features=None, **kwargs):
        """Score ``estimator`` on ``X``; group labels may be given directly, as
        ``sensitive_features`` or ``groups``."""
        if kwargs:
            raise TypeError(f"Unexpected arguments for a disparity scorer: {sorted(kwargs)}.")
        return self._score(None, estimator, X, y_true, groups=groups,
                           sensitive_features=sensitive_features)

    def _get_metadata_request(self):
        """Under metadata routing the scorer asks for ``sensitive_features`` and not for
        ``groups`` (the CV splitter's), unless ``set_score_request`` says otherwise."""
        if hasattr(self, "_metadata_request"):
            return super()._get_metadata_request()
        request = MetadataRequest(owner=self)
        request.score.add_request(param="sensitive_features", alias=True)
        request.score.add_request(param="groups", alias=False)
        return request

    def _score(self, method_caller, estimator, X, y_true, groups=None, sensitive_features=None,
               **kwargs):
        if kwargs:
            raise TypeError(f"Unexpected metadata for a disparity scorer: {sorted(kwargs)}.")
        groups = either_labels(groups, sensitive_features)
        final, to_final_input = _final_step(estimator)
        if not hasattr(final, "predict_dense"):
            raise TypeError(
                f"{self._routing_repr()} scores estimators with predict_dense() (such as "
                f"FairPrunedClassifier); got {type(final).__name__}."
            )
        if groups is None:
            groups = locate_groups(getattr(final, "groups", None), X, y_true)
        if groups is None:
            raise ValueError(NO_GROUPS_MESSAGE.format(name=self._routing_repr()))
        y_true = np.asarray(y_true)
        check_known_labels(y_true, getattr(final, "classes_", None), self._routing_repr())
        sparse = estimator.predict(X)
        dense = final.predict_dense(to_final_input(X))
        mode = getattr(final, "group_mode", "intersectional")
        options = {} if mode == "intersectional" else {"group_mode": mode}
        pos_label = getattr(final, "pos_label", None)
        if pos_label is not None and "pos_label" in inspect.signature(
                self._score_func).parameters:
            options["pos_label"] = pos_label
        return self._sign * float(self._score_func(y_true, dense, sparse, groups, **options))

    def __repr__(self) -> str:
        name = getattr(self._score_func, "__name__", repr(self._score_func))
        prefix = "neg_" if self._sign < 0 else ""
        return f"disparity_scorer({prefix}{name})"


def make_disparity_scorer(metric: Callable[..., float], greater_is_better: bool = False):
    """Make a scorer from a disparity metric of ``fairprune.metrics``.

    Parameters
    ----------
    metric : callable
        ``metric(y_true, y_pred_dense, y_pred_sparse, groups) -> float``.
    greater_is_better : bool, default=False
        Disparities are losses: by default the scorer returns ``-metric``.

    Returns
    -------
    DisparityScorer
        Usable as ``scoring=`` in ``GridSearchCV``/``cross_validate``; supports
        ``sensitive_features`` under metadata routing (``groups`` only on request).
    """
    return DisparityScorer(metric, greater_is_better=greater_is_better)


neg_pairwise_disparity_scorer = make_disparity_scorer(pairwise_disparity)
neg_max_excess_accuracy_gap_scorer = make_disparity_scorer(max_excess_accuracy_gap)
#: minus the largest excess drop of a group's true-positive / true-negative rate (binary y)
neg_max_excess_tpr_gap_scorer = make_disparity_scorer(max_excess_tpr_gap)
neg_max_excess_tnr_gap_scorer = make_disparity_scorer(max_excess_tnr_gap)
#: The design card's shorter name of :data:`neg_max_excess_accuracy_gap_scorer` (the same object).
neg_max_excess_gap_scorer = neg_max_excess_accuracy_gap_scorer
