"""Argument checks: every public entry point reports bad input the same way.

Messages name the argument, what was expected and what was received, in scikit-learn's
wording ("The 'tolerance' parameter of X must be ... Got ... instead."). Parameters are checked
against a table of scikit-learn constraint objects (:func:`check_parameters`, raising
scikit-learn's ``InvalidParameterError``, a ``ValueError`` and a ``TypeError``); data with
scikit-learn's ``validate_data`` for arrays and DataFrames (:func:`check_features`) and the
vector checks below for targets and labels (``ValueError``/``TypeError``).
"""

from __future__ import annotations

import difflib
import math
import numbers
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd
import torch
from skorch.utils import is_dataset
from sklearn.utils._param_validation import (
    Interval,
    InvalidParameterError,
    StrOptions,
    validate_parameter_constraints,
)
from sklearn.utils.validation import validate_data

__all__ = [
    "InvalidParameterError",
    "check_features",
    "check_label_array",
    "check_parameters",
    "check_same_length",
    "check_targets",
    "check_tolerance",
    "check_vector",
    "describe",
    "n_samples",
]

#: dtypes of X kept as they are; anything else numeric becomes float32 (the weights' dtype)
KEPT_DTYPES = [np.float32, np.int64, np.int32, np.int16, np.int8, np.uint8]


def describe(value: Any) -> str:
    """A short ``repr`` of ``value`` for error messages (at most 60 characters)."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _hint(value: Any, constraints: list) -> str:
    """" Did you mean 'x'?" for a string close to one of the options."""
    if not isinstance(value, str):
        return ""
    options = [o for c in constraints if isinstance(c, StrOptions) for o in c.options]
    close = difflib.get_close_matches(value, options, n=1)
    return f" Did you mean {close[0]!r}?" if close else ""


def check_parameters(owner: str, table: Mapping[str, list], params: Mapping[str, Any]) -> None:
    """Check every parameter of ``table`` with scikit-learn's ``validate_parameter_constraints``.

    Adds what scikit-learn's check lacks: a bool is refused where only numbers are accepted
    (True is an int to Python, not to us), and a near-miss string gets "Did you mean ...?".
    Raises :class:`InvalidParameterError` on the first bad parameter.
    """
    for name, constraints in table.items():
        value = params[name]
        numeric_only = all(isinstance(c, Interval) or c is None for c in constraints)
        try:
            if isinstance(value, bool) and numeric_only:
                raise InvalidParameterError(
                    f"The {name!r} parameter of {owner} must be a number, not a bool. Got "
                    f"{value!r} instead.")
            validate_parameter_constraints({name: constraints}, {name: value},
                                           caller_name=owner)
        except InvalidParameterError as exc:
            raise InvalidParameterError(f"{exc}{_hint(value, constraints)}") from None


def check_features(estimator, X: Any, *, reset: bool) -> Any:
    """X (group columns already removed) in the form the module takes.

    Arrays and DataFrames go through scikit-learn's ``validate_data`` (dtype, finiteness,
    dimensions; ``reset=True`` records ``n_features_in_`` and, for a DataFrame,
    ``feature_names_in_``, ``reset=False`` checks X against them). Tensors, dicts and skorch
    datasets pass through with a NaN check.
    """
    if X is None:
        raise ValueError("'X' is required; got None.")
    if hasattr(X, "tocsr") or type(X).__module__.startswith("scipy.sparse"):
        raise TypeError(
            "Sparse input is not supported: pass a dense numpy array or tensor as X "
            "(X.toarray()), the module receives dense tensors."
        )
    if isinstance(X, pd.DataFrame):
        non_numeric = [c for c in X.columns if not pd.api.types.is_numeric_dtype(X[c])]
        if non_numeric:
            raise ValueError(
                f"X has non-numeric columns {non_numeric[:5]} left after removing the group "
                "columns; encode them first (e.g. a ColumnTransformer in a Pipeline)."
            )
    elif not isinstance(X, (np.ndarray, torch.Tensor, Mapping)) and not is_dataset(X):
        X = np.asarray(X)
    if isinstance(X, (np.ndarray, pd.DataFrame)):
        try:
            X = validate_data(estimator, X, reset=reset, dtype=KEPT_DTYPES, allow_nd=True)
        except ValueError as exc:
            if "could not convert" not in str(exc):
                raise
            raise ValueError(f"X must be numeric (encode text columns first, e.g. a "
                             f"ColumnTransformer in a Pipeline); {exc}.") from None
    else:
        _check_finite_tensors(X)
    return _check_input_spec(estimator, X, reset=reset)


def _check_input_spec(estimator, X: Any, *, reset: bool) -> Any:
    """Record (``reset=True``) or check the per-sample shape and dtype kind of array and
    tensor inputs: later calls get the width ``fit`` saw or a ``ValueError`` naming X, and an
    integer or float64 input to a model fitted on float32 is converted to float32, as
    scikit-learn's estimators convert any numeric X to their floating dtype."""
    if not isinstance(X, (np.ndarray, torch.Tensor)):
        return X
    dtype = str(X.dtype).replace("torch.", "")
    if reset:
        estimator.input_spec_ = (tuple(X.shape[1:]), dtype)
        return X
    spec = getattr(estimator, "input_spec_", None)
    if spec is None:
        return X
    shape, fitted_dtype = spec
    if X.ndim != len(shape) + 1:
        hint = (" Reshape one sample with X.reshape(1, -1)." if X.ndim == len(shape) else "")
        raise ValueError(
            f"X must have {len(shape) + 1} dimensions (n_samples, *{list(shape)}) as in fit; "
            f"got shape {tuple(X.shape)}.{hint}")
    if tuple(X.shape[1:]) != shape:
        raise ValueError(
            f"X has per-sample shape {tuple(X.shape[1:])}, but {type(estimator).__name__} was "
            f"fitted on per-sample shape {shape} (n_features_in_ differs).")
    if fitted_dtype == "float32" and dtype != "float32":
        if isinstance(X, torch.Tensor) and not X.dtype.is_complex:
            return X.to(torch.float32)
        if isinstance(X, np.ndarray) and np.issubdtype(X.dtype, np.number):
            return X.astype(np.float32)
    return X


def _check_finite_tensors(X: Any) -> None:
    values = X.values() if isinstance(X, Mapping) else [X]
    for value in values:
        array = value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else value
        if not isinstance(array, np.ndarray) or not np.issubdtype(array.dtype, np.number):
            continue
        if array.ndim == 2 and array.shape[1] == 0:
            raise ValueError(
                f"Found array with 0 feature(s) (shape={array.shape}) while a minimum of 1 is "
                "required."
            )
        if np.issubdtype(array.dtype, np.floating) and not np.isfinite(array).all():
            raise ValueError("Input X contains NaN or infinity; impute or drop those values.")


def check_targets(y: Any, n_classes: int, n_samples: int) -> np.ndarray:
    """``y`` as int64 class indices ``0 .. n_classes - 1``, one per sample."""
    if y is None:
        raise ValueError(
            "FairPrunedClassifier requires y to be passed, but the target y is None "
            "(class indices 0 .. n_classes-1 are expected)."
        )
    y = check_vector(y, "y")
    if np.issubdtype(y.dtype, np.floating) and not np.isfinite(y).all():
        raise ValueError("Input y contains NaN or infinity; every sample needs a class index.")
    if len(y) != n_samples:
        raise ValueError(f"X has {n_samples} samples but y has {len(y)}.")
    if np.issubdtype(y.dtype, np.floating) and not np.all(np.mod(y, 1) == 0):
        raise ValueError(
            "Unknown label type: continuous. 'y' must hold class indices 0 .. n_classes-1 "
            "matching dense_module's outputs."
        )
    if not np.issubdtype(y.dtype, np.number):
        raise ValueError(
            "'y' must hold class indices 0 .. n_classes-1 matching dense_module's outputs; "
            f"got values of dtype {y.dtype} (e.g. {y[:3].tolist()}). Encode labels with "
            "the mapping used to train the dense model."
        )
    y = y.astype(np.int64)
    if y.min() < 0 or y.max() >= n_classes:
        raise ValueError(
            f"'y' has classes outside 0 .. {n_classes - 1}, the outputs of dense_module "
            f"(found min {y.min()}, max {y.max()})."
        )
    return y


def n_samples(X: Any) -> int:
    """Number of samples of an array, DataFrame, dict of arrays or dataset."""
    if isinstance(X, Mapping):
        return len(next(iter(X.values())))
    return len(X)


def check_tolerance(tolerance: Any, *, owner: str = "disparity_report", allow_none: bool = True):
    """Return ``tolerance`` as a float after checking it is a finite number >= 0."""
    if tolerance is None and allow_none:
        return None
    if isinstance(tolerance, bool) or not isinstance(tolerance, numbers.Real):
        raise TypeError(
            f"The 'tolerance' parameter of {owner} must be a float >= 0 (a fraction, "
            f"0.05 = 5 accuracy points). Got {describe(tolerance)} of type "
            f"{type(tolerance).__name__} instead."
        )
    value = float(tolerance)
    if math.isnan(value) or math.isinf(value) or value < 0:
        raise ValueError(
            f"The 'tolerance' parameter of {owner} must be a finite float >= 0 (a fraction, "
            f"0.05 = 5 accuracy points). Got {describe(tolerance)} instead."
        )
    return value


def check_vector(values: Any, name: str) -> np.ndarray:
    """Return a non-empty 1-D numpy array, or raise naming ``name``."""
    if values is None:
        raise ValueError(f"{name!r} is required; got None.")
    if isinstance(values, (pd.Series, pd.Index)):
        array = values.to_numpy()
    elif isinstance(values, pd.DataFrame):
        if values.shape[1] != 1:
            raise ValueError(
                f"{name!r} must be 1-dimensional, one value per sample. Got a DataFrame "
                f"with {values.shape[1]} columns."
            )
        array = values.iloc[:, 0].to_numpy()
    elif hasattr(values, "detach") and hasattr(values, "cpu"):  # torch.Tensor
        array = values.detach().cpu().numpy()
    elif isinstance(values, Mapping):
        raise TypeError(
            f"{name!r} must be an array-like with one value per sample; got a "
            f"{type(values).__name__} (a mapping).")
    else:
        try:
            array = np.asarray(values, dtype=object if _has_tuples(values) else None)
        except ValueError as exc:  # ragged nested sequences
            raise ValueError(
                f"{name!r} must be 1-dimensional, one value per sample; got a ragged nested "
                f"sequence ({exc}).") from None
    if array.ndim == 2 and array.shape[1] == 1 and name != "groups":
        raise ValueError(
            f"{name!r} must be 1-dimensional, one value per sample. Got shape "
            f"{array.shape}; use np.ravel or y[:, 0]."
        )
    if array.ndim != 1:
        raise ValueError(
            f"{name!r} must be 1-dimensional, one value per sample. Got shape {array.shape}."
        )
    if array.shape[0] == 0:
        raise ValueError(f"{name!r} is empty: at least one sample is required.")
    return array


def _has_tuples(values: Any) -> bool:
    return isinstance(values, (list, tuple)) and len(values) > 0 and isinstance(values[0], tuple)


def _rows_as_tuples(values: Any) -> np.ndarray | None:
    """The rows of a several-column frame or 2-D array as an object array of tuples (one
    label per sample: the intersection of the columns, as fairlearn reads such
    ``sensitive_features``), else None."""
    if isinstance(values, pd.DataFrame) and values.shape[1] > 1:
        rows = list(values.itertuples(index=False, name=None))
    elif isinstance(values, np.ndarray) and values.ndim == 2 and values.shape[1] > 1:
        rows = [tuple(row) for row in values.tolist()]
    else:
        return None
    array = np.empty(len(rows), dtype=object)
    array[:] = rows
    return array


def check_label_array(values: Any, name: str = "groups") -> np.ndarray:
    """A 1-D array of hashable labels with no missing value (None/NaN); a several-column
    DataFrame or 2-D array gives one tuple per row (the intersection of its columns)."""
    rows = _rows_as_tuples(values)
    if rows is not None:
        values = rows
    if isinstance(values, (list, tuple)) and not any(isinstance(v, (list, np.ndarray)) for v in values):
        # element-wise object array: np.asarray(["a", nan]) would turn NaN into the string 'nan'
        array = np.empty(len(values), dtype=object)
        array[:] = list(values)
        if array.shape[0] == 0:
            raise ValueError(f"{name!r} is empty: at least one sample is required.")
    else:
        array = check_vector(values, name)
    missing = pd.isna(array) if array.dtype != object else _missing_and_hashable(array, name)
    if missing.any():
        first = int(np.flatnonzero(missing)[0])
        raise ValueError(
            f"{name!r} has {int(missing.sum())} missing label(s) (None/NaN), the first at "
            f"position {first}. Every sample needs a group label."
        )
    return array


def _missing_and_hashable(array: np.ndarray, name: str) -> np.ndarray:
    """One pass over an object array: which labels are missing; unhashable ones raise."""
    missing = np.empty(len(array), dtype=bool)
    for position, value in enumerate(array):
        try:
            hash(value)
        except TypeError:
            raise TypeError(
                f"{name!r} must hold hashable labels (str, int, tuple ...); the label at "
                f"position {position} is a {type(value).__name__}: {describe(value)}."
            ) from None
        missing[position] = _is_missing(value)
    return missing


def _is_missing(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, tuple):
        return any(_is_missing(v) for v in value)
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def check_same_length(arrays: Iterable[tuple[str, np.ndarray]]) -> int:
    """All named arrays have the same length; return it."""
    arrays = list(arrays)
    lengths = {name: len(a) for name, a in arrays}
    if len(set(lengths.values())) > 1:
        detail = ", ".join(f"{name}={n}" for name, n in lengths.items())
        raise ValueError(f"Inputs must have the same number of samples; got {detail}.")
    return next(iter(lengths.values()))
