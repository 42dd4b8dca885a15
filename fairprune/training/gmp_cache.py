"""Reuse of the GMP phase across fits that differ only after pruning (``memory=``).

The pruning epochs do not depend on the fine-tuning method or its tolerance: the paper applies
the constraints only once the target sparsity is reached, and during GMP fairprune runs plain
fine-tuning whatever ``method`` is. A grid search over ``tolerance`` (or ``method``, the dual
step, ...) therefore repeats the same GMP phase in every candidate of a fold. With
``memory=`` set, the state at the end of GMP — sparse weights, masks, optimizer state, the GMP
epochs' history — is stored under the directory (or ``joblib.Memory`` location), written
atomically with a SHA-256 record that is checked on every load and read with
``torch.load(weights_only=True)`` (a planted file cannot run code), keyed by everything GMP
depends on:
the training data, the dense module (its code, architecture and weights; a module whose code
cannot be read is not cached), and every parameter except those in
:data:`AFTER_PRUNING`. Later epochs are seeded per epoch, so a fit that loads the phase is
identical to one that runs it (tested).
"""

from __future__ import annotations

import hashlib
import io
import os
import warnings
from pathlib import Path

import joblib
import numpy as np
import torch

from .._files import atomic_write, sha256_bytes
from ..exceptions import GMPCacheWarning
from .fingerprint import module_digest
from .phases import lr_at_epoch
from .state import capture, restore

__all__ = ["AFTER_PRUNING", "cache_directory", "gmp_key", "run_or_load_gmp"]

#: Parameters that only act after the pruning epochs; they are left out of the cache key.
#: ``tolerance`` also enters the history's ``n_violated``, recomputed when a phase is loaded.
AFTER_PRUNING = frozenset({
    "tolerance", "method", "replay_buffer_size", "dual_lr", "dual_optimizer",
    "max_multiplier_sum", "loss_tolerance", "loss_constraint", "epoch_selection", "verbose",
    "constraint_data",
    "memory",
})
#: Parameters that act during GMP only through the learning rate of each GMP epoch: the key
#: holds those learning rates instead (a later milestone does not re-run GMP).
LR_SCHEDULE = frozenset({"lr", "lr_milestones", "lr_gamma", "max_epochs"})


def gmp_key(net, X, y, fit_params: dict) -> str:
    """Hex digest of everything the GMP phase of ``net.fit(X, y)`` depends on."""
    from .. import __version__

    params = {
        name: value
        for name, value in net.get_params(deep=False).items()
        # skorch lists its private ``_params_to_validate`` (names last set) among the params
        if name not in AFTER_PRUNING | LR_SCHEDULE and name not in ("dense_module", "module")
        and not name.startswith("_")
    }
    params["gmp_learning_rates"] = [lr_at_epoch(net, e) for e in range(net.pruning_epochs)]
    parts = [
        __version__,
        module_digest(net.dense_module),
        joblib.hash(params),
        joblib.hash(X),
        joblib.hash(np.asarray(y)),
        joblib.hash(fit_params),
    ]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


#: What the cache stores of the end of the GMP phase (see :mod:`fairprune.training.state`).
CACHED_PARTS = ("module", "masks", "optimizer", "history")


def cache_directory(memory) -> Path | None:
    """Where ``memory`` stores GMP phases: a directory, a ``joblib.Memory``'s location, or
    None (no caching, as ``joblib.Memory(None)``)."""
    if isinstance(memory, (str, os.PathLike)):
        return Path(memory)
    location = getattr(memory, "location", None)
    return None if location is None else Path(location)


def _warn(message: str) -> None:
    warnings.warn(f"GMP cache (memory=): {message}", GMPCacheWarning, stacklevel=2)


def _load_checked(path: Path) -> dict | None:
    """The stored state, or None when absent. An entry whose hash does not match its record
    (truncated, corrupted, half-written), or that holds anything but tensors and plain
    containers (``torch.load(weights_only=True)`` refuses to run code), is reported and
    ignored."""
    if not path.exists():
        return None
    try:
        payload = path.read_bytes()
        expected = path.with_suffix(".sha256").read_text().strip()
    except OSError as exc:
        _warn(f"{path} could not be read ({exc}); running the GMP phase again.")
        return None
    if sha256_bytes(payload) != expected:
        _warn(f"{path} does not match its recorded hash (truncated or corrupted); running the "
              "GMP phase again.")
        return None
    try:
        state = torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True)
        if not isinstance(state, dict) or set(state) != set(CACHED_PARTS):
            raise ValueError(f"unexpected content {type(state).__name__}")
    except Exception as exc:  # noqa: BLE001 - unpickling errors come in many types
        _warn(f"{path} is not a GMP cache entry fairprune can load safely ({type(exc).__name__}: "
              f"{exc}); running the GMP phase again.")
        return None
    return state


def _store(path: Path, state: dict) -> None:
    """Write atomically, the entry first and its hash last (:mod:`fairprune._files`)."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    payload = buffer.getvalue()
    try:
        atomic_write(path, payload)
        atomic_write(path.with_suffix(".sha256"), sha256_bytes(payload).encode())
    except OSError as exc:
        _warn(f"could not write to {path.parent} ({exc}); continuing without caching.")


def run_or_load_gmp(net, X, y, fit_params: dict) -> None:
    """Bring a freshly initialised ``net`` to the end of its GMP phase, from ``net.memory``
    when this phase was run before, otherwise by running it (and storing it).

    Never fails because of the cache: a key that cannot be computed (a parameter joblib
    cannot pickle, such as a lambda in a callback), a corrupted entry or a folder that
    cannot be written give a :class:`GMPCacheWarning` and the phase is run.
    """
    directory = cache_directory(net.memory)
    key = None
    if directory is not None:
        try:
            key = gmp_key(net, X, y, fit_params)
        except Exception as exc:  # noqa: BLE001 - pickling errors come in many types
            _warn(f"the cache key could not be computed ({type(exc).__name__}: {exc}); "
                  "running the GMP phase without the cache.")
    path = None if key is None else directory / "fairprune_gmp" / f"{key}.gmp.pt"
    state = None if path is None else _load_checked(path)
    if state is not None:
        restore(net, state)
        if net.verbose:
            print(f"GMP phase ({net.pruning_epochs} epochs) loaded from the cache in {path.parent}")
        return
    net.run_epochs(X, y, net.pruning_epochs, fit_params)
    if path is not None:
        _store(path, capture(net, CACHED_PARTS, device="cpu"))
