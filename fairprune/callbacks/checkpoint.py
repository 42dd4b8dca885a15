"""Checkpoints a pruned, constrained fit can resume from — atomic as a whole, checked on load,
bound to the run that wrote them, and locked while a fit uses them.

skorch's ``Checkpoint`` writes its files one by one in place and only logs a failed write;
skorch's ``LoadInitState`` skips missing files. A process killed mid-write, or a disk that
fills up, could then resume from a mix of epochs, from truncated files, or without its masks.
Here every save goes to a new *generation* folder inside the checkpoint folder; each file is
written (a failed write raises), flushed to disk and hashed, the folder is renamed into place,
and only then does ``manifest.json`` — replaced atomically, the save's single commit point —
name the new generation, with the epoch, each file's SHA-256 and the run's fingerprint. Older
generations are removed after the commit. A save that fails at any step leaves the previous
manifest and generation as they were, removes what it wrote and raises ``OSError``.

Loading checks the manifest first: mixed, damaged, missing or foreign files and a manifest
written by another run (other parameters, data, groups or dense model: the fingerprint) raise
a :class:`CheckpointError` naming what differs. While a fit runs it holds an exclusive lock
on the folder (``.lock``, ``fcntl.flock``; released by the OS if the process dies): a second
fit on the same folder is refused instead of resuming the first one's files. Files are read
with ``torch.load(weights_only=True)``: a planted file cannot run code.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path

from skorch.callbacks import Checkpoint

from .._files import atomic_write, fsync_file, sha256_file

try:  # POSIX; elsewhere fits are not locked (documented)
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

__all__ = ["CheckpointError", "FairCheckpoint", "checkpoint_lock", "current_generation",
           "fair_checkpoint"]

MANIFEST = "manifest.json"
LOCK = ".lock"
_GENERATION_PREFIX = "generation-"


class CheckpointError(ValueError):
    """A checkpoint that cannot be resumed from safely (mixed epochs, damaged or missing
    files, another run's checkpoint, a folder in use by another fit)."""


def _read_manifest(target: Path) -> dict | None:
    path = target / MANIFEST
    if not path.exists():
        return None
    try:
        manifest = json.loads(path.read_text())
        dict(manifest["files"])
    except (ValueError, KeyError, TypeError, OSError) as exc:
        raise CheckpointError(f"{path} is damaged ({type(exc).__name__}: {exc}).") from None
    return manifest


def current_generation(dirname: str | os.PathLike) -> Path:
    """The folder holding the files of the checkpoint that ``dirname``'s manifest names
    (``dirname`` itself for a checkpoint written in the earlier flat layout)."""
    target = Path(dirname)
    manifest = _read_manifest(target)
    if manifest is None:
        raise FileNotFoundError(f"no checkpoint in {target}")
    generation = manifest.get("generation")
    if generation is None:
        return target
    if (not isinstance(generation, str) or not generation.startswith(_GENERATION_PREFIX)
            or Path(generation).name != generation):
        raise CheckpointError(f"{target / MANIFEST} names an invalid folder {generation!r}.")
    return target / generation


@contextlib.contextmanager
def checkpoint_lock(dirname: str | os.PathLike) -> Iterator[None]:
    """Hold an exclusive lock on a checkpoint folder (created when missing) for the block.

    Raises :class:`CheckpointError` when ``dirname`` is a file, or when another process or
    fit holds the lock. The lock file is opened without following links.
    """
    target = Path(dirname or ".")
    if target.exists() and not target.is_dir():
        raise CheckpointError(f"The checkpoint folder {str(target)!r} is a file, not a folder: "
                              "pass another dirname.")
    if fcntl is None:  # pragma: no cover - Windows
        yield
        return
    target.mkdir(parents=True, exist_ok=True)
    flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        descriptor = os.open(target / LOCK, flags, 0o600)
    except OSError as exc:
        raise CheckpointError(f"Cannot lock the checkpoint folder {str(target)!r} "
                              f"({exc}).") from None
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise CheckpointError(
                    f"The checkpoint folder {str(target)!r} is in use by another fit (it holds "
                    "the folder's lock). Give each run its own dirname.") from None
            raise
        try:
            yield
        finally:
            fcntl.flock(descriptor, fcntl.LOCK_UN)
    finally:
        os.close(descriptor)


class FairCheckpoint(Checkpoint):
    """skorch's ``Checkpoint`` for fairprune: every file a resumed fit needs, saved atomically
    as a whole and bound to its run.

    Saves, every epoch by default (``monitor=None``): weights, optimizer, history, pruning masks
    (``masks.pt``), fairness state — multipliers, replay buffers, dense reference —
    (``fairness.pt``) and the multipliers' optimizer (``dual_optimizer.pt``), in a new
    generation folder, then a ``manifest.json`` naming it, with the epoch, each file's SHA-256
    and the run's fingerprint (the parameters that change the result, the dense module, the
    data and the groups). ``load_params(checkpoint=cp)`` (and skorch's ``LoadInitState(cp)``)
    checks the manifest first: files from different epochs, truncated or foreign files, a
    missing file or manifest, or another run's fingerprint raise a :class:`CheckpointError`
    naming the file or what differs. An empty folder means a fresh start.

    Parameters
    ----------
    dirname : str
        Folder of the checkpoint.
    monitor : str, callable or None, default=None
        As skorch's (None: every epoch).
    on_mismatch : {"raise", "restart"}, default="raise"
        What a resume does with a checkpoint written by another run: refuse
        (:class:`CheckpointError`), or start afresh and replace it at the next save.
    **kwargs
        Any other parameter of ``skorch.callbacks.Checkpoint``; ``f_*`` file names, ``None``
        to leave one out.
    """

    def __init__(self, dirname: str = "", monitor=None, f_params="params.pt",
                 f_optimizer="optimizer.pt", f_criterion=None, f_history="history.json",
                 f_masks="masks.pt", f_fairness="fairness.pt",
                 f_dual_optimizer="dual_optimizer.pt", on_mismatch="raise", **kwargs) -> None:
        if on_mismatch not in ("raise", "restart"):
            raise ValueError(f"FairCheckpoint: on_mismatch must be 'raise' or 'restart'; got "
                             f"{on_mismatch!r}.")
        self.on_mismatch = on_mismatch
        super().__init__(dirname=dirname, monitor=monitor, f_params=f_params,
                         f_optimizer=f_optimizer, f_criterion=f_criterion, f_history=f_history,
                         f_masks=f_masks, f_fairness=f_fairness,
                         f_dual_optimizer=f_dual_optimizer, **kwargs)

    def _files(self, net) -> dict[str, str]:
        """Base names of the files this checkpoint writes, by ``f_*`` key."""
        files = {}
        for key, value in self._f_kwargs().items():
            if not isinstance(value, str) or key == "f_pickle":
                continue
            name = self.fn_prefix + value
            if "{" in value and len(net.history) and key != "f_history":
                name = os.path.basename(self._format_target(net, value, -1))
            files[key] = name
        return files

    def _save_params(self, f, net, f_name, log_name):
        """skorch's, without its ``try``: a failed write raises (a full disk included)."""
        net.save_params(**{f_name: f, "use_safetensors": self.use_safetensors})

    def save_model(self, net) -> None:
        """Write a new generation, commit it with the manifest, then remove older ones.

        Raises ``OSError`` when anything could not be written; the previous checkpoint then
        stays the valid one, and nothing of the failed save is left behind.
        """
        target = Path(self.dirname or ".")
        target.mkdir(parents=True, exist_ok=True)
        generation = f"{_GENERATION_PREFIX}{len(net.history):06d}-{secrets.token_hex(4)}"
        stage = target / f".staging-{generation}"
        committed = False
        dirname = self.dirname
        try:
            stage.mkdir()
            self.dirname = str(stage)
            try:
                super().save_model(net)
            except RuntimeError as exc:  # torch.save reports a failed write this way
                raise OSError(f"{type(exc).__name__}: {exc}") from exc
            self.dirname = dirname
            files = self._files(net)
            missing = [name for name in files.values() if not (stage / name).exists()]
            if missing:
                raise OSError(f"FairCheckpoint could not write {missing} to {target}.")
            manifest = {"format": 2, "epoch": len(net.history), "generation": generation,
                        "files": {}, "fingerprint": net.__dict__.get("run_fingerprint_")}
            for name in files.values():
                fsync_file(stage / name)
                manifest["files"][name] = sha256_file(stage / name)
            os.replace(stage, target / generation)
            atomic_write(target / MANIFEST, json.dumps(manifest, indent=1).encode())
            committed = True
        except OSError as exc:
            raise OSError(f"FairCheckpoint could not save epoch {len(net.history)} to "
                          f"{str(target)!r} ({exc}); the previous checkpoint is kept.") from exc
        finally:
            self.dirname = dirname
            shutil.rmtree(stage, ignore_errors=True)
            if not committed:
                shutil.rmtree(target / generation, ignore_errors=True)
        for old in target.iterdir():  # after the commit: older generations, stray stages
            if old.name != generation and old.is_dir() and not old.is_symlink() and (
                    old.name.startswith(_GENERATION_PREFIX)
                    or old.name.startswith(".staging-")):
                shutil.rmtree(old, ignore_errors=True)

    def verify(self, net) -> Path:
        """Check the files against the manifest before a resume; return their folder.

        Raises ``FileNotFoundError`` when the folder holds no checkpoint at all (a fresh
        start: skorch's ``LoadInitState`` then trains from scratch), also for another run's
        checkpoint with ``on_mismatch="restart"``, and :class:`CheckpointError` when it holds
        one that must not be resumed from.
        """
        target = Path(self.dirname or ".")
        files = self._files(net)
        manifest = _read_manifest(target)
        if manifest is None:
            present = sorted(name for name in files.values() if (target / name).exists())
            present += sorted(p.name for p in target.glob(f"{_GENERATION_PREFIX}*"))
            if present:
                raise CheckpointError(
                    f"{target} holds checkpoint files {present} but no {MANIFEST}: they were "
                    "not written by a completed FairCheckpoint save. Delete them to start "
                    "afresh.")
            raise FileNotFoundError(f"no checkpoint in {target}")
        differences = _fingerprint_differences(manifest.get("fingerprint"),
                                               net.__dict__.get("run_fingerprint_"))
        if differences:
            if self.on_mismatch == "restart":
                raise FileNotFoundError(f"{target} holds another run's checkpoint")
            raise CheckpointError(
                f"{target} holds the checkpoint of another run ({'; '.join(differences)}): "
                "resuming it would continue that run. Use another dirname, delete the folder, "
                "or pass fair_checkpoint(dirname, on_mismatch='restart') to replace it.")
        folder = current_generation(target)
        recorded = manifest["files"]
        for name in files.values():
            if name not in recorded:
                raise CheckpointError(
                    f"{folder / name} is not recorded in {MANIFEST} (epoch "
                    f"{manifest.get('epoch')}): this checkpoint cannot restore it.")
            if not (folder / name).exists():
                raise CheckpointError(f"{folder / name} is missing; {MANIFEST} expects it.")
            if sha256_file(folder / name) != recorded[name]:
                raise CheckpointError(
                    f"{folder / name} does not match {MANIFEST} (epoch "
                    f"{manifest.get('epoch')}): it comes from another epoch or is damaged.")
        return folder


def _fingerprint_differences(recorded, current) -> list[str]:
    """What differs between a manifest's fingerprint and the current run's, in words."""
    if not current:
        return []
    if not recorded:
        return ["the checkpoint records no fingerprint of its run"]
    differences = []
    params, now = recorded.get("parameters", {}), current.get("parameters", {})
    changed = sorted(name for name in set(params) | set(now) if params.get(name) != now.get(name))
    if changed:
        differences.append(f"other parameters: {', '.join(changed[:8])}")
    for part, words in (("dense_module", "another dense_module"), ("data", "other data (X, y)"),
                        ("groups", "other groups")):
        if recorded.get(part) != current.get(part):
            differences.append(words)
    return differences


def fair_checkpoint(dirname: str, **kwargs) -> FairCheckpoint:
    """A :class:`FairCheckpoint` saving everything a resumed fit needs, every epoch.

    Pair it with ``skorch.callbacks.LoadInitState``::

        cp = fair_checkpoint("run1")
        clf = FairPrunedClassifier(dense, callbacks=[cp, LoadInitState(cp)])

    Re-running ``fit`` after an interruption then continues from the last saved epoch; with
    the same ``random_state`` the result matches an uninterrupted run (tested on CPU).
    """
    return FairCheckpoint(dirname=dirname, **kwargs)
