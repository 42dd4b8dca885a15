"""Loaders for tabular data: bundled digits (no files needed) and UCI Adult (from a file, or
fetched once into the data home)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .fetch import fetch_file
from .utkface import get_data_home

__all__ = [
    "ADULT_CATEGORIES",
    "ADULT_COLUMNS",
    "ADULT_MISSING",
    "ADULT_UNKNOWN_GROUP",
    "adult_preprocessor",
    "fetch_adult",
    "load_adult",
    "load_digits_groups",
]

ADULT_COLUMNS = [
    "age", "workclass", "fnlwgt", "education", "education-num", "marital-status",
    "occupation", "relationship", "race", "sex", "capital-gain", "capital-loss",
    "hours-per-week", "native-country", "income",
]
_ADULT_GROUP_COLUMNS = ["race", "sex", "native-country"]
#: where the UCI machine learning repository serves the Adult files
ADULT_URL = "https://archive.ics.uci.edu/ml/machine-learning-databases/adult/"
_ADULT_FILES = {"train": "adult.data", "test": "adult.test"}


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


#: The category lists of the UCI documentation (``adult.names``), in its order. Encoders built
#: from them give the same columns whatever rows a file or a split happens to hold.
ADULT_CATEGORIES = {
    "workclass": ["Private", "Self-emp-not-inc", "Self-emp-inc", "Federal-gov", "Local-gov",
                  "State-gov", "Without-pay", "Never-worked"],
    "education": ["Bachelors", "Some-college", "11th", "HS-grad", "Prof-school", "Assoc-acdm",
                  "Assoc-voc", "9th", "7th-8th", "12th", "Masters", "1st-4th", "10th",
                  "Doctorate", "5th-6th", "Preschool"],
    "marital-status": ["Married-civ-spouse", "Divorced", "Never-married", "Separated",
                       "Widowed", "Married-spouse-absent", "Married-AF-spouse"],
    "occupation": ["Tech-support", "Craft-repair", "Other-service", "Sales", "Exec-managerial",
                   "Prof-specialty", "Handlers-cleaners", "Machine-op-inspct", "Adm-clerical",
                   "Farming-fishing", "Transport-moving", "Priv-house-serv", "Protective-serv",
                   "Armed-Forces"],
    "relationship": ["Wife", "Own-child", "Husband", "Not-in-family", "Other-relative",
                     "Unmarried"],
    "race": ["White", "Asian-Pac-Islander", "Amer-Indian-Eskimo", "Other", "Black"],
    "sex": ["Female", "Male"],
    "native-country": [
        "United-States", "Cambodia", "England", "Puerto-Rico", "Canada", "Germany",
        "Outlying-US(Guam-USVI-etc)", "India", "Japan", "Greece", "South", "China", "Cuba",
        "Iran", "Honduras", "Philippines", "Italy", "Poland", "Jamaica", "Vietnam", "Mexico",
        "Portugal", "Ireland", "France", "Dominican-Republic", "Laos", "Ecuador", "Taiwan",
        "Haiti", "Columbia", "Hungary", "Guatemala", "Nicaragua", "Scotland", "Thailand",
        "Yugoslavia", "El-Salvador", "Trinadad&Tobago", "Peru", "Hong", "Holand-Netherlands"],
}
#: Spellings of a missing value: ``?`` in the UCI files, ``MissingValue`` in some copies.
ADULT_MISSING = ("?", "MissingValue")
#: Group label of a missing protected attribute (group labels cannot be missing).
ADULT_UNKNOWN_GROUP = "Unknown"
_ADULT_NUMERIC = ["age", "education-num", "capital-gain", "capital-loss", "hours-per-week"]
_ADULT_FEATURE_CATEGORIES = ["workclass", "education", "marital-status", "occupation",
                             "relationship"]


def load_adult(path: str | Path) -> tuple[pd.DataFrame, np.ndarray, pd.DataFrame]:
    """A UCI Adult file — ``adult.data`` or ``adult.test`` — as raw features, labels and groups.

    Nothing is learned from the rows read: categorical features are pandas categoricals over
    the documented category lists (:data:`ADULT_CATEGORIES`), numeric ones are left as they
    are, and both ``?`` and ``MissingValue`` mean missing (NaN). Turn the features into model
    inputs with :func:`adult_preprocessor`, fitted on the training rows only.

    Parameters
    ----------
    path : str or Path
        ``adult.data`` (no header) or ``adult.test`` (a first line starting with ``|`` and
        labels ending in ``.``); ``", "`` separated.

    Returns
    -------
    X : DataFrame
        ``age, workclass, education, education-num, marital-status, occupation, relationship,
        capital-gain, capital-loss, hours-per-week``. The protected attributes race, sex and
        native-country are *not* features; ``fnlwgt`` (a sampling weight) is dropped.
    y : ndarray of int64
        1 for income ``>50K``.
    groups : DataFrame
        ``race``, ``sex`` and ``native-country`` (strings; a missing value is ``"Unknown"``).

    Examples
    --------
    >>> from sklearn.model_selection import train_test_split
    >>> X, y, groups = load_adult("adult.data")                      # doctest: +SKIP
    >>> X_train, X_test, y_train, y_test = train_test_split(X, y)    # doctest: +SKIP
    >>> pre = adult_preprocessor().fit(X_train)                      # doctest: +SKIP
    >>> pre.transform(X_test).shape[1]                               # doctest: +SKIP
    56
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"load_adult: no file at {str(path)!r} (expected UCI adult.data or "
                         "adult.test).")
    with open(path, "rb") as handle:
        head = handle.read(4)
    if head[:2] == b"\x1f\x8b" or head[:4] == b"PK\x03\x04" or head[:3] == b"BZh":
        raise ValueError(f"load_adult: {str(path)!r} is a compressed archive, not the text "
                         "file UCI ships; decompress it first (e.g. gunzip).")
    try:
        frame = pd.read_csv(path, header=None, names=ADULT_COLUMNS, skipinitialspace=True,
                            comment="|", na_values=list(ADULT_MISSING), keep_default_na=False,
                            encoding="utf-8")
    except (UnicodeDecodeError, pd.errors.ParserError) as exc:
        raise ValueError(f"load_adult: {str(path)!r} is not a comma-separated UCI Adult text "
                         f"file ({type(exc).__name__}: {exc}).") from None
    frame = frame.dropna(how="all")
    income = frame["income"].astype(str).str.rstrip(".")
    unknown = sorted(set(income) - {"<=50K", ">50K"})
    if unknown:
        raise ValueError(f"load_adult: {path.name} has income values {unknown[:5]}; expected "
                         "'<=50K' or '>50K' (with a trailing '.' in adult.test).")
    if frame.empty:
        raise ValueError(f"load_adult: {path.name} holds no rows.")
    y = (income == ">50K").to_numpy(np.int64)
    groups = frame[_ADULT_GROUP_COLUMNS].fillna(ADULT_UNKNOWN_GROUP).reset_index(drop=True)
    X = frame[["age", "workclass", "education", "education-num", "marital-status",
               "occupation", "relationship", "capital-gain", "capital-loss",
               "hours-per-week"]].reset_index(drop=True)
    for column in _ADULT_FEATURE_CATEGORIES:
        values = X[column]
        stray = sorted(set(values.dropna()) - set(ADULT_CATEGORIES[column]))
        if stray:
            raise ValueError(f"load_adult: {column!r} has values outside the documented "
                             f"categories: {stray[:5]}.")
        X[column] = pd.Categorical(values, categories=ADULT_CATEGORIES[column])
    for column in _ADULT_NUMERIC:
        numbers = pd.to_numeric(X[column], errors="coerce")
        bad = X[column][numbers.isna() & X[column].notna()]
        if len(bad):
            raise ValueError(
                f"load_adult: {path.name} has non-numeric values in the numeric column "
                f"{column!r}: {sorted(map(str, set(bad)))[:5]} (first at row {bad.index[0] + 1}).")
        X[column] = numbers.astype(np.float32)
    return X, y, groups


def fetch_adult(subset: str = "train", *, data_home: str | Path | None = None,
                download_if_missing: bool = True) -> tuple[pd.DataFrame, np.ndarray, pd.DataFrame]:
    """UCI Adult, downloaded once into the data home, then read by :func:`load_adult`.

    Like scikit-learn's ``fetch_*`` loaders: the file is looked up under
    ``<data_home>/adult/`` (see :func:`fairprune.datasets.utkface.get_data_home`; ``$FAIRPRUNE_DATA``
    or ``~/.cache/fairprune``) and downloaded from :data:`ADULT_URL` only when missing. A
    download is checked (it must read as an Adult file) before it is cached.

    Parameters
    ----------
    subset : {"train", "test"}, default="train"
        ``adult.data`` (32,561 rows) or ``adult.test`` (16,281 rows).
    data_home : str or Path, optional
        Cache folder; see :func:`fairprune.datasets.utkface.get_data_home`.
    download_if_missing : bool, default=True
        If False, a missing file raises instead of being downloaded.

    Returns
    -------
    X, y, groups
        As :func:`load_adult`.

    Raises
    ------
    OSError
        The file is missing and cannot be downloaded (offline, or
        ``download_if_missing=False``); the message says where to put it by hand.
    """
    if subset not in _ADULT_FILES:
        raise ValueError(f"fetch_adult: subset must be 'train' or 'test'; got {subset!r}.")
    name = _ADULT_FILES[subset]
    path = get_data_home(data_home) / "adult" / name
    if not path.is_file() and not download_if_missing:
        raise OSError(f"fetch_adult: {path} does not exist and download_if_missing=False. "
                      f"Put UCI's {name} there, or pass download_if_missing=True.")
    fetch_file(ADULT_URL + name, path, check=load_adult, caller="fetch_adult")
    return load_adult(path)


def adult_preprocessor():
    """An unfitted ``ColumnTransformer`` for :func:`load_adult`'s features.

    Numeric columns are standardised with statistics of the rows it is fitted on; categorical
    ones are one-hot encoded over the documented categories (a missing value encodes as all
    zeros). Fit it on training rows only, then transform training and test rows; the output is
    float32, ready for an MLP.
    """
    from sklearn.compose import ColumnTransformer
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    categories = [ADULT_CATEGORIES[c] for c in _ADULT_FEATURE_CATEGORIES]
    return ColumnTransformer(
        [("numeric", StandardScaler(), _ADULT_NUMERIC),
         ("categories", OneHotEncoder(categories=categories, handle_unknown="ignore",
                                      sparse_output=False, dtype=np.float32),
          _ADULT_FEATURE_CATEGORIES)],
        sparse_threshold=0.0).set_output(transform="default")
