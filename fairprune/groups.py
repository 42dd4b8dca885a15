"""Where group labels come from, and how they are encoded.

Three pathways lead group labels to the library (DESIGN §2):

1. passed directly, ``clf.fit(X, y, groups=g)``;
2. routed by scikit-learn's metadata routing (``set_fit_request(sensitive_features=True)``);
3. located inside ``X`` by the estimator's ``groups`` parameter: a column name of a DataFrame
   (or key of a dict / ``skorch.helper.SliceDict``), a list of names for intersectional groups,
   or a picklable callable ``f(X, y) -> labels`` such as :func:`by_target`.

This module owns the groups' whole trip through a fit: it turns inputs into label arrays and
integer codes (:class:`GroupEncoder`), packs the codes beside the features in a
:class:`skorch.helper.SliceDict` (:func:`pack_groups`), so that every skorch split, shuffle and
batch slices them together with X, and takes them apart again (:func:`unpack_groups`). It knows
nothing of torch.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Union

import numpy as np
import pandas as pd
from skorch.helper import SliceDict

from ._validation import check_label_array

__all__ = [
    "FEATURES_KEY",
    "GROUPS_KEY",
    "REPORT_GROUPS_KEY",
    "GroupEncoder",
    "GroupLocator",
    "MarginalGroupEncoder",
    "by_target",
    "check_locator",
    "drop_group_columns",
    "either_labels",
    "encode_groups",
    "is_packed",
    "label_attributes",
    "locate_groups",
    "pack_groups",
    "report_codes",
    "resolve_groups",
    "unpack_groups",
]

#: Key of array features inside a packed SliceDict.
FEATURES_KEY = "__fairprune_X__"
#: Key of the integer group codes inside a packed SliceDict (the constraint cells' codes when
#: ``gap_metric`` restricts constraints to some rows, see :mod:`fairprune.cells`).
GROUPS_KEY = "__fairprune_groups__"
#: Key of the group codes of the reports, packed only when they differ from the constraints'.
REPORT_GROUPS_KEY = "__fairprune_report_groups__"

GroupLocator = Union[None, str, list, tuple, Callable[[Any, Any], Any]]


def by_target(X: Any, y: Any) -> np.ndarray:
    """Group locator that makes every class its own group (the paper's CIFAR-100 setting).

    Parameters
    ----------
    X : array-like
        Ignored.
    y : array-like of shape (n_samples,)
        Class labels; they become the group labels.

    Returns
    -------
    numpy.ndarray
        ``y`` as a 1-D array.

    Examples
    --------
    >>> by_target(None, [3, 1, 3]).tolist()
    [3, 1, 3]
    """
    if y is None:
        raise ValueError(
            "groups=by_target needs the targets 'y' to locate groups, but y is None. Pass y "
            "to fit/score, or give the groups explicitly."
        )
    return np.asarray(y).ravel()


def _keys_of(X: Any) -> list | None:
    if isinstance(X, pd.DataFrame):
        return list(X.columns)
    if isinstance(X, Mapping):
        return list(X.keys())
    return None


def _column(X: Any, name: str) -> np.ndarray:
    keys = _keys_of(X)
    if keys is None:
        raise ValueError(
            f"groups={name!r} names a column, so X must be a pandas DataFrame or a dict/"
            f"SliceDict holding {name!r}; got X of type {type(X).__name__}. Pass the labels "
            "with fit(X, y, groups=...) instead."
        )
    if name not in keys:
        raise ValueError(
            f"groups={name!r}: X has no column/key {name!r}. Available: "
            f"{', '.join(map(repr, keys[:20]))}{' ...' if len(keys) > 20 else ''}."
        )
    column = X[name]
    if isinstance(column, pd.Series):
        return column.to_numpy()
    column = np.asarray(column)
    return column.reshape(len(column), -1)[:, 0] if column.ndim > 1 else column


def check_locator(locator: Any) -> None:
    if locator is None or callable(locator) or isinstance(locator, str):
        return
    if isinstance(locator, (list, tuple)) and locator and all(isinstance(c, str) for c in locator):
        return
    raise TypeError(
        "The 'groups' parameter must be None, a column name (str), a non-empty list of "
        "column names (intersectional groups) or a callable f(X, y) -> labels such as "
        f"fairprune.groups.by_target. Got {locator!r} of type {type(locator).__name__} instead."
    )


def locate_groups(locator: GroupLocator, X: Any, y: Any = None) -> np.ndarray | None:
    """Read group labels from ``X`` (and ``y``) with a locator.

    Parameters
    ----------
    locator : None, str, list of str or callable
        ``None`` (no locator), a column/key name, several names (intersection: each label is a
        tuple of the columns' values) or a callable ``f(X, y) -> labels``.
    X : DataFrame, dict, SliceDict or array-like
        Input data holding the group columns.
    y : array-like, optional
        Targets, for callables such as :func:`by_target`.

    Returns
    -------
    numpy.ndarray or None
        One label per sample, or ``None`` when ``locator`` is ``None``.

    Examples
    --------
    >>> X = pd.DataFrame({"x": [0.1, 0.2], "race": ["a", "b"], "sex": ["f", "m"]})
    >>> locate_groups("race", X).tolist()
    ['a', 'b']
    >>> locate_groups(["race", "sex"], X).tolist()
    [('a', 'f'), ('b', 'm')]
    """
    check_locator(locator)  # the one check of a locator (fit, scorers and reports call this)
    if locator is None:
        return None
    if isinstance(locator, str):
        return check_label_array(_column(X, locator), "groups")
    if isinstance(locator, (list, tuple)):
        columns = [check_label_array(_column(X, name), "groups") for name in locator]
        labels = np.empty(len(columns[0]), dtype=object)
        labels[:] = list(zip(*columns)) if len(columns) > 1 else [(v,) for v in columns[0]]
        return labels
    return check_label_array(locator(X, y), "groups")


def either_labels(groups, sensitive_features):
    """Group labels given as ``groups`` (the design card's name) or ``sensitive_features``
    (fairlearn's, the one to route); both at once is an error."""
    if groups is not None and sensitive_features is not None:
        raise ValueError(
            "Group labels were passed both as 'groups' and as 'sensitive_features'; pass them "
            "once. Under metadata routing, 'groups' usually belongs to the CV splitter: route "
            "fairness groups as sensitive_features (set_fit_request(sensitive_features=True)).")
    return sensitive_features if sensitive_features is not None else groups


def resolve_groups(locator: GroupLocator, X: Any, y: Any, groups: Any) -> np.ndarray | None:
    """Labels from the direct argument and/or the locator; when both are given they must agree.

    Returns None when neither gives labels.
    """
    located = locate_groups(locator, X, y)
    if groups is None:
        return located
    direct = check_label_array(groups, "groups")
    if located is not None:
        if len(located) != len(direct) or not all(
            a == b for a, b in zip(located.tolist(), direct.tolist())
        ):
            raise ValueError(
                f"'groups' were given both to fit and through the locator "
                f"groups={locator!r}, with different values. Give them one way."
            )
    return direct


def pack_groups(features: Any, codes: np.ndarray, report_codes: np.ndarray | None = None
                ) -> SliceDict:
    """Features and group codes in one SliceDict (skorch slices them together).

    Array features go under :data:`FEATURES_KEY`; a mapping of keyword inputs keeps its keys.
    ``report_codes``, the groups' own codes when ``codes`` are constraint cells, travel under
    :data:`REPORT_GROUPS_KEY`.
    """
    extra = {GROUPS_KEY: codes}
    if report_codes is not None:
        extra[REPORT_GROUPS_KEY] = report_codes
    if isinstance(features, Mapping):
        return SliceDict(**features, **extra)
    return SliceDict(**{FEATURES_KEY: features, **extra})


def report_codes(X: Any) -> Any:
    """The group codes of a packed batch for reports: :data:`REPORT_GROUPS_KEY` when packed,
    else the constraint codes (they are the groups)."""
    return X.get(REPORT_GROUPS_KEY, X.get(GROUPS_KEY))


def is_packed(X: Any) -> bool:
    """Whether ``X`` (a dataset's X or a batch) carries packed group codes."""
    return isinstance(X, Mapping) and GROUPS_KEY in X


def unpack_groups(X: Any) -> tuple[Any, Any]:
    """``(module inputs, group codes)`` of packed features or of a batch of them.

    The inputs are what the module's ``forward`` takes: the array features, or the mapping of
    keyword inputs without the codes. Unpacked input comes back as it is, with codes None.
    """
    if not isinstance(X, Mapping):
        return X, None
    codes = X.get(GROUPS_KEY)
    inputs = {key: value for key, value in X.items()
              if key not in (GROUPS_KEY, REPORT_GROUPS_KEY)}
    if FEATURES_KEY in inputs:
        return inputs[FEATURES_KEY], codes
    return inputs, codes


def drop_group_columns(locator: GroupLocator, X: Any) -> Any:
    """Remove the locator's columns/keys from ``X`` so they never reach the module.

    Columns that are absent are ignored (data at predict time may come without them).
    """
    if locator is None or callable(locator):
        return X
    names = [locator] if isinstance(locator, str) else list(locator)
    if isinstance(X, pd.DataFrame):
        return X.drop(columns=[n for n in names if n in X.columns])
    if isinstance(X, Mapping):
        kept = {k: v for k, v in X.items() if k not in names}
        return type(X)(**kept) if type(X).__name__ == "SliceDict" else kept
    return X


class GroupEncoder:
    """Encode arbitrary hashable group labels as integers ``0 .. n_groups - 1``.

    The one encoding of the library: the estimator, the metrics and the reports all use it,
    so a group has the same code and the same row order everywhere. Labels are sorted when
    they are mutually comparable (strings, numbers, tuples of those), else kept in order of
    first appearance. Pandas categoricals (ordered or not) keep their categories' order,
    restricted to the categories present.

    Attributes
    ----------
    classes_ : numpy.ndarray of object
        The group labels seen in :meth:`fit`, in code order.

    Examples
    --------
    >>> enc = GroupEncoder().fit(["b", "a", "b"])
    >>> enc.classes_.tolist(), enc.transform(["a", "b"]).tolist()
    (['a', 'b'], [0, 1])
    """

    def fit(self, labels: Any) -> "GroupEncoder":
        return self._fit_checked(check_label_array(labels, "groups"), _categories(labels))

    def _fit_checked(self, array: np.ndarray, categories: list | None) -> "GroupEncoder":
        uniques = list(pd.unique(pd.Series(array, dtype=object)))
        if categories is not None:
            present = set(uniques)
            uniques = [c for c in categories if c in present]
        else:
            try:
                uniques = sorted(uniques)
            except TypeError:  # labels of mixed, incomparable types
                pass
        self.classes_ = np.empty(len(uniques), dtype=object)
        self.classes_[:] = uniques
        return self

    @property
    def n_groups(self) -> int:
        return len(self.classes_)

    def transform(self, labels: Any, *, unseen: str = "error") -> np.ndarray:
        """Codes of ``labels``; unseen labels raise (``unseen="error"``) or get -1."""
        return self._codes(check_label_array(labels, "groups"), unseen)

    def _codes(self, array: np.ndarray, unseen: str) -> np.ndarray:
        index = pd.Index(self.classes_, dtype=object, tupleize_cols=False)
        codes = index.get_indexer(pd.Index(array, dtype=object, tupleize_cols=False))
        codes = codes.astype(np.int64)
        if unseen == "error" and (codes < 0).any():
            missing = sorted({repr(v) for v in array[codes < 0]})[:5]
            raise ValueError(
                f"'groups' contains labels not seen in fit: {', '.join(missing)}. "
                f"Known groups: {len(self.classes_)}."
            )
        return codes

    def fit_transform(self, labels: Any) -> np.ndarray:
        array = check_label_array(labels, "groups")  # checked once for both steps
        return self._fit_checked(array, _categories(labels))._codes(array, "error")


def label_attributes(locator: GroupLocator, groups: Any) -> list[str] | None:
    """Names of the attributes behind each label's parts: the columns of a several-column
    frame passed as ``groups``, else the locator's columns; None when nothing names them."""
    if isinstance(groups, pd.DataFrame):
        return [str(c) for c in groups.columns]
    if groups is None and isinstance(locator, str):
        return [locator]
    if groups is None and isinstance(locator, (list, tuple)):
        return [str(c) for c in locator]
    return None


class MarginalGroupEncoder:
    """Encode several attributes as *marginal* groups: one group per value of each attribute.

    Each sample belongs to one group per attribute (``race=white`` and ``sex=female``), so its
    codes are a row of ``n_attributes`` integers: the code of its value of attribute ``a``,
    offset by the number of values of the attributes before ``a``. Groups are ordered by
    attribute, then by :class:`GroupEncoder`'s ordering of the values.

    Attributes
    ----------
    classes_ : numpy.ndarray of object
        ``(attribute, value)`` pairs in code order.
    attributes_ : list of str
        The attribute names (``"attribute 0"``, ... when nothing named them).

    Examples
    --------
    >>> enc = MarginalGroupEncoder().fit([("a", "f"), ("b", "f"), ("b", "m")], ["race", "sex"])
    >>> enc.classes_.tolist()
    [('race', 'a'), ('race', 'b'), ('sex', 'f'), ('sex', 'm')]
    >>> enc.transform([("b", "m")]).tolist()
    [[1, 3]]
    """

    def fit(self, labels: Any, attributes: list[str] | None = None) -> "MarginalGroupEncoder":
        columns = self._columns(labels)
        if attributes is None or len(attributes) != len(columns):
            attributes = ([f"attribute {i}" for i in range(len(columns))] if len(columns) > 1
                          else ["group"])
        self.attributes_ = list(attributes)
        self.encoders_ = [GroupEncoder().fit(column) for column in columns]
        pairs = [(name, value) for name, encoder in zip(self.attributes_, self.encoders_)
                 for value in encoder.classes_]
        self.classes_ = np.empty(len(pairs), dtype=object)
        self.classes_[:] = pairs
        self.offsets_ = np.cumsum([0] + [e.n_groups for e in self.encoders_])[:-1]
        return self

    @staticmethod
    def _columns(labels: Any) -> list[np.ndarray]:
        """One label array per attribute (the parts of tuple labels; a single attribute for
        plain labels)."""
        array = check_label_array(labels, "groups")
        if not all(isinstance(value, tuple) for value in array):
            return [array]
        widths = {len(value) for value in array}
        if len(widths) != 1:
            raise ValueError(
                "group_mode='marginal' needs the same attributes for every sample; the group "
                f"labels are tuples of {sorted(widths)} values.")
        return [check_label_array([value[i] for value in array], "groups")
                for i in range(widths.pop())]

    @property
    def n_groups(self) -> int:
        return len(self.classes_)

    def transform(self, labels: Any, *, unseen: str = "error") -> np.ndarray:
        """``(n_samples, n_attributes)`` codes; unseen values raise, or get -1."""
        columns = self._columns(labels)
        if len(columns) != len(self.encoders_):
            raise ValueError(
                f"The group labels have {len(columns)} attribute(s); fit saw "
                f"{len(self.encoders_)} ({', '.join(self.attributes_)}).")
        codes = [encoder.transform(column, unseen=unseen) for encoder, column in
                 zip(self.encoders_, columns)]
        stacked = np.stack([np.where(c >= 0, c + offset, -1)
                            for c, offset in zip(codes, self.offsets_)], axis=1)
        return stacked.astype(np.int64)

    def fit_transform(self, labels: Any, attributes: list[str] | None = None) -> np.ndarray:
        return self.fit(labels, attributes).transform(labels)


def _categories(labels: Any) -> list | None:
    """The categories of a pandas categorical input, else None."""
    if isinstance(labels, pd.Series) and isinstance(labels.dtype, pd.CategoricalDtype):
        return list(labels.cat.categories)
    if isinstance(labels, pd.Categorical):
        return list(labels.categories)
    return None


def encode_groups(groups: Any) -> tuple[pd.Index, np.ndarray]:
    """Group labels as ``(index, codes)``: the labels in code order (a ``pandas.Index`` named
    "group") and the code of every sample, with :class:`GroupEncoder`'s ordering."""
    encoder = GroupEncoder()
    codes = encoder.fit_transform(groups)
    return pd.Index(encoder.classes_, dtype=object, tupleize_cols=False, name="group"), codes
