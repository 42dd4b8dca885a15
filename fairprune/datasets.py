"""Loaders for real data: bundled digits (no files needed) and the UCI Adult file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["ADULT_COLUMNS", "UTKFACE_RACES", "load_adult", "load_digits_groups", "load_utkface"]

UTKFACE_RACES = {0: "White", 1: "Black", 2: "Asian", 3: "Indian", 4: "Others"}
UTKFACE_GENDERS = {0: "Male", 1: "Female"}

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


def load_utkface(
    folder: str | Path,
    *,
    target: str = "gender",
    image_size: int = 32,
    max_images: int | None = None,
) -> tuple[np.ndarray, np.ndarray, pd.DataFrame]:
    """Images of a UTKFace-format folder: files named ``[age]_[gender]_[race]_[date].jpg``.

    Parameters
    ----------
    folder : str or Path
        Folder holding the images (searched recursively).
    target : {"gender", "race"}, default="gender"
        What to predict; predict gender with race groups, or race. The other
        attribute and the age bucket are in the groups table.
    image_size : int, default=32
        Images are resized to ``image_size x image_size`` RGB.
    max_images : int, optional
        Read only the first ``max_images`` files (sorted by name).

    Returns
    -------
    X : ndarray of shape (n, 3, image_size, image_size), float32 in [0, 1]
    y : ndarray of int64 (gender 0/1 or race 0..4)
    groups : DataFrame with columns ``race``, ``gender``, ``age`` (int) and ``age_bucket``

    Raises
    ------
    ValueError
        If the folder has no parsable image, or ``target`` is unknown. Files whose names do
        not follow the format are skipped (UTKFace has a few such files).
    """
    from PIL import Image

    if target not in ("gender", "race"):
        raise ValueError(f"load_utkface: target must be 'gender' or 'race'; got {target!r}.")
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"load_utkface: {str(folder)!r} is not a folder.")
    records = []
    for path in sorted(folder.rglob("*.jpg")):  # also matches the aligned "*.jpg.chip.jpg"
        parts = path.name.split("_")
        if len(parts) < 4 or not all(p.isdigit() for p in parts[:3]):
            continue
        age, gender, race = (int(p) for p in parts[:3])
        if gender not in UTKFACE_GENDERS or race not in UTKFACE_RACES:
            continue
        records.append((path, age, gender, race))
    if max_images is not None:
        records = records[:max_images]
    if not records:
        raise ValueError(
            f"load_utkface: no file named [age]_[gender]_[race]_[date].jpg under {str(folder)!r}."
        )
    images = np.empty((len(records), 3, image_size, image_size), dtype=np.float32)
    for i, (path, *_rest) in enumerate(records):
        with Image.open(path) as image:
            rgb = image.convert("RGB").resize((image_size, image_size))
            images[i] = np.asarray(rgb, dtype=np.float32).transpose(2, 0, 1) / 255.0
    ages = np.array([r[1] for r in records])
    genders = np.array([r[2] for r in records])
    races = np.array([r[3] for r in records])
    groups = pd.DataFrame({
        "race": [UTKFACE_RACES[r] for r in races],
        "gender": [UTKFACE_GENDERS[g] for g in genders],
        "age": ages,
        "age_bucket": pd.cut(ages, [-1, 19, 39, 59, 200], labels=["0-19", "20-39", "40-59", "60+"]),
    })
    y = (genders if target == "gender" else races).astype(np.int64)
    return images, y, groups
