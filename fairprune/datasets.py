"""Loaders for real data: bundled digits (no files needed), the UCI Adult file and UTKFace."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .utkface import UTKFACE_AGE_BUCKETS, UTKFACE_GENDERS, UTKFACE_RACES, load_utkface

__all__ = [
    "ADULT_COLUMNS",
    "UTKFACE_AGE_BUCKETS",
    "UTKFACE_GENDERS",
    "UTKFACE_RACES",
    "load_adult",
    "load_digits_groups",
    "load_utkface",
]

ADULT_COLUMNS = [
    "age", "workclass", "fnlwgt", "education", "education-num", "marital-status",
    "occupation", "relationship", "race", "sex", "capital-gain", "capital-loss",
    "hours-per-week", "native-country", "income",
]
_ADULT_GROUP_COLUMNS = ["race", "sex", "native-country"]


def load_digits_groups() -> tuple[np.ndarray, np.ndarray, pd.DataFrame]:
    """scikit-learn's bundled digits, every class its own group (the embedded default).

    Returns
    -------
    X : ndarray of shape (1797, 64), float32 in [0, 1]
    y : ndarray of shape (1797,), int64 class indices
    groups : DataFrame with one column ``digit`` (the class, as group label)
    """
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    return (X / 16.0).astype(np.float32), y.astype(np.int64), pd.DataFrame({"digit": y})


def load_adult(path: str | Path) -> tuple[np.ndarray, np.ndarray, pd.DataFrame]:
    """The UCI Adult training file as MLP-ready features.

    Numeric columns are standardised, categorical ones one-hot encoded (missing ``?`` as its
    own category); the protected attributes race, sex and native-country are *not* features.

    Parameters
    ----------
    path : str or Path
        The canonical ``adult.data`` file (no header, ``", "`` separated).

    Returns
    -------
    X : ndarray of float32
    y : ndarray of int64, 1 for income ``>50K``
    groups : DataFrame with columns ``race``, ``sex``, ``native-country``
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"load_adult: no file at {str(path)!r} (expected UCI adult.data).")
    frame = pd.read_csv(path, header=None, names=ADULT_COLUMNS, skipinitialspace=True,
                        na_values=[], keep_default_na=False)
    frame = frame[frame["income"].isin(["<=50K", ">50K"])]
    y = (frame["income"] == ">50K").to_numpy(np.int64)
    groups = frame[_ADULT_GROUP_COLUMNS].reset_index(drop=True)
    features = frame.drop(columns=["income", "fnlwgt", *_ADULT_GROUP_COLUMNS])
    numeric = features.select_dtypes("number")
    numeric = (numeric - numeric.mean()) / numeric.std()
    categorical = pd.get_dummies(features.select_dtypes(exclude="number"), dtype=np.float32)
    X = pd.concat([numeric, categorical], axis=1).to_numpy(np.float32)
    return X, y, groups
