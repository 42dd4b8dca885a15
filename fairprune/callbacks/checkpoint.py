"""Checkpoints a pruned, constrained fit can resume from — written atomically, checked on load.

skorch's ``Checkpoint`` writes its files one by one in place and only logs a failed write;
skorch's ``LoadInitState`` skips missing files. A process killed mid-write could then resume
from a mix of epochs, or without its masks (a silent restart at sparsity 0). Here every save
goes to a staging folder, each file is flushed to disk, the files are renamed into place, and a
``manifest.json`` written last records the epoch and a SHA-256 hash of each file. Loading
checks the manifest first and refuses, naming the file, anything that does not match.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from skorch.callbacks import Checkpoint

from .._files import atomic_write, fsync_file, sha256_file

__all__ = ["CheckpointError", "FairCheckpoint", "fair_checkpoint"]

MANIFEST = "manifest.json"


class CheckpointError(ValueError):
    """A checkpoint that cannot be resumed from safely (mixed epochs, damaged or missing)."""


class FairCheckpoint(Checkpoint):
    """skorch's ``Checkpoint`` for fairprune: every file a resumed fit needs, written atomically.

    Saves, every epoch by default (``monitor=None``): weights, optimizer, history, pruning masks
    (``masks.pt``), fairness state — multipliers, replay buffers, dense reference —
    (``fairness.pt``) and the multipliers' optimizer (``dual_optimizer.pt``), then a
    ``manifest.json`` with the epoch and each file's SHA-256. ``load_params(checkpoint=cp)``
    (and skorch's ``LoadInitState(cp)``) checks the manifest first: files from different epochs,
    truncated or foreign files, a missing file or a missing manifest raise a
    :class:`CheckpointError` naming the file. An empty folder means a fresh start.

    Parameters
    ----------
    dirname : str
        Folder of the checkpoint files.
    monitor : str, callable or None, default=None
        As skorch's (None: every epoch).
    **kwargs
        Any other parameter of ``skorch.callbacks.Checkpoint``; ``f_*`` file names, ``None``
        to leave one out.
    """

    def __init__(self, dirname: str = "", monitor=None, f_params="params.pt",
                 f_optimizer="optimizer.pt", f_criterion=None, f_history="history.json",
                 f_masks="masks.pt", f_fairness="fairness.pt",
                 f_dual_optimizer="dual_optimizer.pt", **kwargs) -> None:
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

    def save_model(self, net) -> None:
        """Write every file to a staging folder, flush, rename into place, then the manifest.

        Raises ``OSError`` when a file could not be written (skorch would only log it).
        """
        target = Path(self.dirname or ".")
        target.mkdir(parents=True, exist_ok=True)
        stage = Path(tempfile.mkdtemp(prefix=".staging-", dir=target))
        dirname = self.dirname
        try:
            self.dirname = str(stage)
            super().save_model(net)
            self.dirname = dirname
            files = self._files(net)
            missing = [name for name in files.values() if not (stage / name).exists()]
            if missing:
                raise OSError(f"FairCheckpoint could not write {missing} to {target}.")
            manifest = {"epoch": len(net.history), "files": {}}
            for name in files.values():
                fsync_file(stage / name)
                manifest["files"][name] = sha256_file(stage / name)
            for name in files.values():
                os.replace(stage / name, target / name)
            atomic_write(target / MANIFEST, json.dumps(manifest, indent=1).encode())
        finally:
            self.dirname = dirname
            shutil.rmtree(stage, ignore_errors=True)

    def verify(self, net) -> None:
        """Check the files against the manifest before a resume.

        Raises ``FileNotFoundError`` when the folder holds no checkpoint at all (a fresh start:
        skorch's ``LoadInitState`` then trains from scratch) and :class:`CheckpointError`
        when it holds one that must not be resumed from.
        """
        target = Path(self.dirname or ".")
        files = self._files(net)
        present = sorted(name for name in files.values() if (target / name).exists())
        manifest_path = target / MANIFEST
        if not manifest_path.exists():
            if present:
                raise CheckpointError(
                    f"{target} holds checkpoint files {present} but no {MANIFEST}: they were "
                    "not written by a completed FairCheckpoint save. Delete them to start "
                    "afresh.")
            raise FileNotFoundError(f"no checkpoint in {target}")
        try:
            manifest = json.loads(manifest_path.read_text())
            recorded = dict(manifest["files"])
        except (ValueError, KeyError, TypeError) as exc:
            raise CheckpointError(f"{manifest_path} is damaged ({exc}).") from None
        for name in files.values():
            if name not in recorded:
                raise CheckpointError(
                    f"{target / name} is not recorded in {MANIFEST} (epoch "
                    f"{manifest.get('epoch')}): this checkpoint cannot restore it.")
            if not (target / name).exists():
                raise CheckpointError(f"{target / name} is missing; {MANIFEST} expects it.")
            if sha256_file(target / name) != recorded[name]:
                raise CheckpointError(
                    f"{target / name} does not match {MANIFEST} (epoch "
                    f"{manifest.get('epoch')}): it comes from another epoch or is damaged.")


def fair_checkpoint(dirname: str, **kwargs) -> FairCheckpoint:
    """A :class:`FairCheckpoint` saving everything a resumed fit needs, every epoch.

    Pair it with ``skorch.callbacks.LoadInitState``::

        cp = fair_checkpoint("run1")
        clf = FairPrunedClassifier(dense, callbacks=[cp, LoadInitState(cp)])

    Re-running ``fit`` after an interruption then continues from the last saved epoch; with
    the same ``random_state`` the result matches an uninterrupted run (tested on CPU).
    """
    return FairCheckpoint(dirname=dirname, **kwargs)
