"""Download a public data file once into the data home, as scikit-learn's ``fetch_*`` do.

One job: get a file from a URL to ``<data home>/<folder>/<name>`` atomically (a partial
download never looks like a cached file), or say clearly why not and where to put the file
by hand. Used by :func:`fairprune.datasets.fetch_adult`.
"""

from __future__ import annotations

import contextlib
import shutil
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from .._files import atomic_writer

__all__ = ["fetch_file"]


def fetch_file(url: str, path: Path, *, check: Callable[[Path], object], caller: str,
               timeout: float = 60.0) -> Path:
    """``path``, downloaded from ``url`` first when it is not there yet.

    The download goes to a temporary file created exclusively beside ``path``
    (:func:`fairprune._files.atomic_writer`: no planted file or link is written through);
    ``check(tmp)`` must accept it (raise ``ValueError`` otherwise) before it is renamed to
    ``path``. A failed download or check leaves nothing behind.

    Raises
    ------
    OSError
        The download failed (offline, unreachable host, HTTP error); the message names the
        URL and where to put the file by hand.
    ValueError
        The downloaded file failed ``check``.
    """
    if path.is_file():
        return path
    def checked(downloaded: Path) -> None:
        try:
            check(downloaded)
        except ValueError as exc:
            raise ValueError(f"{caller}: the file downloaded from {url} is not what was "
                             f"expected ({exc}); nothing was cached.") from exc

    with contextlib.ExitStack() as stack:
        try:
            out = stack.enter_context(atomic_writer(path, check=checked))
        except OSError as exc:  # the data home cannot be written
            raise OSError(
                f"{caller} cannot write to {path.parent} ({exc}). Download {url} yourself and "
                f"put it at {path}, or point $FAIRPRUNE_DATA / data_home at a folder you can "
                "write.") from exc
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:
                shutil.copyfileobj(response, out)
        except (urllib.error.URLError, OSError, TimeoutError) as exc:
            raise OSError(
                f"{caller} could not download {url} ({exc}). Without internet access, "
                f"download the file elsewhere and put it at {path} (or point "
                "$FAIRPRUNE_DATA / data_home at the folder that holds it).") from exc
    return path
