"""Files fairprune writes: atomically, never through a planted link, and sealed by a hash.

Checkpoints, the GMP cache, the decoded-image cache and downloads all write through
:func:`atomic_writer`: a temporary file created exclusively in the target folder (``mkstemp``:
``O_CREAT | O_EXCL``, so no existing file or symbolic link is opened), flushed to disk, then
renamed over the target. A reader never sees a half-written file, and a failed write leaves
nothing behind. :func:`sha256_file` is the one hash of the files a manifest or record seals.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

__all__ = ["atomic_write", "atomic_writer", "fsync_file", "sha256_bytes", "sha256_file"]


@contextlib.contextmanager
def atomic_writer(path: str | os.PathLike,
                  check: Callable[[Path], object] | None = None) -> Iterator[BinaryIO]:
    """A binary file handle whose content replaces ``path`` when the block ends without error.

    The parent folder is created when missing. ``check(temporary_path)``, when given, runs on
    the complete file before the rename and may refuse it by raising. On an error inside the
    block, while flushing or in ``check``, the temporary file is removed and ``path`` is left
    as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp",
                                             dir=path.parent)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        if check is not None:
            check(Path(temporary))
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def atomic_write(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_writer`)."""
    with atomic_writer(path) as handle:
        handle.write(data)


def fsync_file(path: str | os.PathLike) -> None:
    """Flush a file that something else wrote to disk."""
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def sha256_bytes(data: bytes) -> str:
    """Hex SHA-256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file's content."""
    return sha256_bytes(Path(path).read_bytes())
