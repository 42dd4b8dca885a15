"""UTKFace in its folder format, decoded once and cached as arrays.

UTKFace (Zhang, Song and Qi, CVPR 2017) names every image ``[age]_[gender]_[race]_[date].jpg``
(the aligned-and-cropped release appends ``.chip.jpg``). :func:`load_utkface` reads the labels
from the names, decodes and resizes the images with Pillow, and stores the decoded
``uint8`` array under a data home (``$FAIRPRUNE_DATA``, else the user cache folder), keyed by
the folder, each file's name, size, modification time and inode, and the resolution: a second
load of the same, unchanged folder reads one file; a changed file or another folder decodes
again. Entries are ``.npz`` files read without pickles.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import warnings
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd

from .._files import atomic_writer

__all__ = [
    "UTKFACE_AGE_BUCKETS",
    "UTKFACE_GENDERS",
    "UTKFACE_RACES",
    "UTKFACE_TARGETS",
    "get_data_home",
    "load_utkface",
]

UTKFACE_RACES = {0: "White", 1: "Black", 2: "Asian", 3: "Indian", 4: "Others"}
UTKFACE_GENDERS = {0: "Male", 1: "Female"}
#: Lower edges of the age buckets of the paper's code (9 buckets: <10, 10-14, ..., 60+).
UTKFACE_AGE_BUCKETS = (10, 15, 20, 25, 30, 40, 50, 60)
UTKFACE_TARGETS = ("race", "gender", "age_bucket")
_CACHE_VERSION = 3


def get_data_home(data_home: str | os.PathLike | None = None) -> Path:
    """The folder where fairprune caches decoded data (as scikit-learn's ``get_data_home``).

    ``data_home`` if given, else ``$FAIRPRUNE_DATA``, else ``$XDG_CACHE_HOME/fairprune``
    (``~/.cache/fairprune``). The folder is not created here.
    """
    if data_home is not None:
        return Path(data_home).expanduser()
    if os.environ.get("FAIRPRUNE_DATA"):
        return Path(os.environ["FAIRPRUNE_DATA"]).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache).expanduser() / "fairprune"


def _age_bucket_labels() -> list[str]:
    edges = UTKFACE_AGE_BUCKETS
    labels = [f"<{edges[0]}"]
    labels += [f"{a}-{b - 1}" for a, b in zip(edges[:-1], edges[1:])]
    return labels + [f"{edges[-1]}+"]


class _ImageFile(NamedTuple):
    """A file whose name follows the format: its name, path and ``os.stat`` (links followed)."""

    name: str
    path: str
    stat: os.stat_result


#: ``[age]_[gender]_[race]_...jpg`` with ASCII digits; an age of at most 3 digits
_NAME = re.compile(r"^([0-9]{1,3})_([0-9])_([0-9])_.*\.jpg$")


def _parse_names(folder: Path) -> tuple[list[_ImageFile], int]:
    """Image files whose names follow the format, sorted by name; and the count skipped.

    Skipped and counted: names out of the format (non-ASCII digits, ages of more than three
    digits, unknown gender or race codes), links that lead nowhere or in a loop, and entries
    that cannot be read. A folder reached twice (a link to a parent) is walked once.
    """
    entries, skipped = [], 0
    stack, seen = [folder], set()
    while stack:
        current = stack.pop()
        try:
            info = current.stat()
        except OSError:
            skipped += 1
            continue
        if (info.st_dev, info.st_ino) in seen:
            continue
        seen.add((info.st_dev, info.st_ino))
        try:
            listing = list(os.scandir(current))
        except OSError:  # a folder that cannot be listed
            skipped += 1
            continue
        for entry in listing:
            try:
                if entry.is_dir():
                    stack.append(Path(entry.path))
                    continue
                if not entry.name.endswith(".jpg"):
                    continue
                match = _NAME.match(entry.name)
                if (match is None or int(match[2]) not in UTKFACE_GENDERS
                        or int(match[3]) not in UTKFACE_RACES):
                    skipped += 1
                    continue
                entries.append(_ImageFile(entry.name, entry.path, entry.stat()))
            except OSError:  # a dangling link, a link loop, an unreadable entry
                skipped += 1
    entries.sort(key=lambda e: (e.name, e.path))
    return entries, skipped


def _stratified_subset(strata: np.ndarray, size: int, random_state: int | None) -> np.ndarray:
    """Sorted indices of a seeded random subset of ``size`` rows, stratified by ``strata``
    where every stratum can be split (else a plain seeded random subset)."""
    from sklearn.model_selection import train_test_split

    index = np.arange(len(strata))
    try:
        chosen, _ = train_test_split(index, train_size=size, stratify=strata,
                                     random_state=random_state)
    except ValueError:  # a stratum too small to split at this size
        chosen = np.random.default_rng(random_state).choice(index, size, replace=False)
    return np.sort(chosen)


def _decode(paths: list[str], image_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Decode and resize JPEG files to ``(n, 3, s, s)`` uint8 with Pillow.

    Pillow's JPEG draft mode first decodes at the smallest DCT scale that stays at least
    twice the target size (fast), then an antialiased bilinear resize gives the final size.
    Returns the images of the files that decoded and a mask of those files.
    """
    from PIL import Image, UnidentifiedImageError

    out = np.empty((len(paths), 3, image_size, image_size), dtype=np.uint8)
    keep = np.ones(len(paths), dtype=bool)
    for i, path in enumerate(paths):
        try:
            with Image.open(path) as image:
                image.draft("RGB", (2 * image_size, 2 * image_size))
                rgb = image.convert("RGB").resize((image_size, image_size),
                                                  Image.Resampling.BILINEAR)
                out[i] = np.asarray(rgb, dtype=np.uint8).transpose(2, 0, 1)
        except (UnidentifiedImageError, Image.DecompressionBombError, OSError, SyntaxError,
                ValueError):
            keep[i] = False  # not a JPEG, damaged, or a decompression bomb
    return out[keep], keep


def _cache_key(folder: Path, entries: list[_ImageFile], image_size: int) -> str:
    """SHA-256 of what the decoded images depend on: the folder (resolved), and each file's
    name, size, modification time (ns), inode and device. A file replaced in place, even with
    the same size, or a second folder with the same listing, gets another key."""
    listing = [(e.name, e.stat.st_size, e.stat.st_mtime_ns, e.stat.st_ino, e.stat.st_dev)
               for e in entries]
    payload = json.dumps([_CACHE_VERSION, image_size, str(folder.resolve()), listing]).encode()
    return hashlib.sha256(payload).hexdigest()


def _read_cache(path: Path, n: int, image_size: int, key: str):
    try:
        with np.load(path, allow_pickle=False) as stored:
            images, kept = stored["images"], stored["kept"]
            recorded = str(stored["key"]) if "key" in stored.files else None
    except (FileNotFoundError, NotADirectoryError):  # no entry yet
        return None
    except Exception as exc:  # noqa: BLE001 - any unreadable entry is rebuilt
        warnings.warn(f"load_utkface: cache file {str(path)!r} is unreadable ({exc}); "
                      "decoding the images again.", RuntimeWarning, stacklevel=3)
        return None
    if (recorded != key or images.dtype != np.uint8
            or images.shape[1:] != (3, image_size, image_size)
            or kept.shape != (n,) or int(kept.sum()) != len(images)):
        warnings.warn(f"load_utkface: cache file {str(path)!r} does not match the folder; "
                      "decoding the images again.", RuntimeWarning, stacklevel=3)
        return None
    return images, kept


def _write_cache(path: Path, images: np.ndarray, kept: np.ndarray, key: str) -> None:
    """Write atomically (:func:`fairprune._files.atomic_writer`); a folder that cannot be written only
    costs the cache, with a warning."""
    try:
        with atomic_writer(path) as handle:
            np.savez(handle, images=images, kept=kept, key=np.array(key))
    except OSError as exc:
        warnings.warn(f"load_utkface: could not write the cache under {str(path.parent)!r} "
                      f"({exc}); the decoded images are not cached.", RuntimeWarning,
                      stacklevel=3)


def load_utkface(
    folder: str | os.PathLike,
    *,
    target: str = "gender",
    image_size: int = 32,
    max_images: int | None = None,
    random_state: int | None = 0,
    data_home: str | os.PathLike | None = None,
    cache: bool = True,
) -> tuple[np.ndarray, np.ndarray, pd.DataFrame]:
    """Images and labels of a UTKFace-format folder (``[age]_[gender]_[race]_[date].jpg``).

    Parameters
    ----------
    folder : str or path
        Folder holding the images (searched recursively).
    target : {"gender", "race", "age_bucket"}, default="gender"
        What ``y`` holds: gender (0 male, 1 female), race (0 White, 1 Black, 2 Asian,
        3 Indian, 4 Others) or the age bucket of the paper's code (0..8, edges
        :data:`UTKFACE_AGE_BUCKETS`).
    image_size : int, default=32
        Images are resized (antialiased bilinear) to ``image_size x image_size`` RGB.
    max_images : int, optional
        Keep a seeded random subset of this many images, stratified by race × gender ×
        target (where every stratum is large enough). ``None`` keeps every image.
    random_state : int or None, default=0
        Seed of the ``max_images`` subset.
    data_home : str or path, optional
        Cache folder (see :func:`get_data_home`).
    cache : bool, default=True
        Read and write the decoded images under ``data_home``. The cache entry is keyed by
        the folder, each file's name, size, modification time and inode, and ``image_size``;
        an unreadable or mismatched entry is decoded again with a warning.

    Returns
    -------
    X : ndarray of shape (n, 3, image_size, image_size), float32 in [0, 1]
    y : ndarray of shape (n,), int64
    groups : DataFrame with columns ``race``, ``gender``, ``age`` (int) and ``age_bucket``
        (categorical, the paper's 9 buckets); ``race`` and ``gender`` as names.

    Raises
    ------
    ValueError
        If ``folder`` is not a folder or holds no file named in the format, or ``target``,
        ``image_size`` or ``max_images`` is invalid. Files whose names do not follow the
        format (UTKFace has three without a race field) are skipped, and so are files that
        do not decode as JPEG, with a warning that counts them.
    """
    if target not in UTKFACE_TARGETS:
        raise ValueError(f"load_utkface: target must be one of {UTKFACE_TARGETS}; got {target!r}.")
    if isinstance(image_size, bool) or not isinstance(image_size, (int, np.integer)) or image_size < 1:
        raise ValueError(f"load_utkface: image_size must be a positive int; got {image_size!r}.")
    if max_images is not None and (isinstance(max_images, bool)
                                   or not isinstance(max_images, (int, np.integer))
                                   or max_images < 1):
        raise ValueError(
            f"load_utkface: max_images must be None or a positive int; got {max_images!r}.")
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"load_utkface: {str(folder)!r} is not a folder.")
    entries, skipped = _parse_names(folder)
    if not entries:
        raise ValueError(
            f"load_utkface: no file named [age]_[gender]_[race]_[date].jpg under {str(folder)!r}.")
    labels = np.array([[int(p) for p in _NAME.match(e.name).groups()] for e in entries],
                      dtype=np.int64)
    if max_images is not None and max_images < len(entries):
        ages, genders, races = labels.T
        buckets = np.digitize(ages, UTKFACE_AGE_BUCKETS) if target == "age_bucket" else 0
        chosen = _stratified_subset(races * 100 + genders * 10 + buckets, int(max_images),
                                    random_state)
        entries, labels = [entries[i] for i in chosen], labels[chosen]
    ages, genders, races = labels.T
    buckets = np.digitize(ages, UTKFACE_AGE_BUCKETS, right=False)
    targets = {"race": races, "gender": genders, "age_bucket": buckets}

    stored = None
    cache_path = None
    if cache:
        key = _cache_key(folder, entries, int(image_size))
        cache_path = get_data_home(data_home) / "utkface" / f"{key[:32]}.npz"
        stored = _read_cache(cache_path, len(entries), int(image_size), key)
    if stored is None:
        images, kept = _decode([e.path for e in entries], int(image_size))
        if cache_path is not None:
            _write_cache(cache_path, images, kept, key)
    else:
        images, kept = stored
    if not kept.all():
        warnings.warn(f"load_utkface: {int((~kept).sum())} file(s) under {str(folder)!r} did "
                      "not decode as JPEG and were skipped.", UserWarning, stacklevel=2)
    if skipped:
        warnings.warn(f"load_utkface: skipped {skipped} .jpg file(s) whose names do not follow "
                      "[age]_[gender]_[race]_[date].jpg (ASCII digits, an age of at most 3) "
                      "or that could not be read (broken or looping links).", UserWarning, stacklevel=2)
    if not kept.any():
        raise ValueError(f"load_utkface: no image under {str(folder)!r} could be decoded.")
    X = images.astype(np.float32)
    X /= 255.0
    groups = pd.DataFrame({
        "race": [UTKFACE_RACES[r] for r in races[kept]],
        "gender": [UTKFACE_GENDERS[g] for g in genders[kept]],
        "age": ages[kept],
        "age_bucket": pd.Categorical.from_codes(buckets[kept], categories=_age_bucket_labels(),
                                                ordered=True),
    })
    y = targets[target][kept].astype(np.int64)
    return X, y, groups
