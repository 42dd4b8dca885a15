"""Shared argument checks: every public entry point reports bad input the same way.

Messages name the argument, what was expected and what was received, in scikit-learn's
wording ("The 'tolerance' parameter of X must be ... Got ... instead.").
"""

from __future__ import annotations

import difflib
import math
import numbers
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "check_choice",
    "check_label_array",
    "check_same_length",
    "check_tolerance",
    "check_vector",
]


def describe(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


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


def check_choice(value: Any, name: str, options: Sequence[str], *, owner: str) -> str:
    """Check that ``value`` is one of ``options``; suggest the closest on a typo."""
    if isinstance(value, str) and value in options:
        return value
    hint = ""
    if isinstance(value, str):
        close = difflib.get_close_matches(value, options, n=1)
        if close:
            hint = f" Did you mean {close[0]!r}?"
    raise ValueError(
        f"The {name!r} parameter of {owner} must be one of "
        f"{', '.join(repr(o) for o in options)}. Got {describe(value)} instead.{hint}"
    )


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


def check_label_array(values: Any, name: str = "groups") -> np.ndarray:
    """A 1-D array of hashable labels with no missing value (None/NaN)."""
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
