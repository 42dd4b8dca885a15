"""Snapshots of a fit's training state, and putting them back.

One place for what the non-finite guard (the start of every epoch), epoch selection (the best
epoch so far), the GMP cache (the end of the pruning phase) and a failed refit (the whole
fitted estimator) keep and restore. A snapshot is a plain dict of tensors, lists and numbers,
so that it can also be saved with ``torch.save`` and loaded with ``weights_only=True`` (the
history travels as JSON text, the masks as their ``state_dict``).
"""

from __future__ import annotations

import contextlib
import copy
import json
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
import torch
from skorch.history import History

from ..pruning import MaskSet

__all__ = ["PARTS", "capture", "kept_if_no_epoch_runs", "restore"]

#: What a snapshot can hold: the sparse model's weights, the fairness state (multipliers,
#: replay buffers, dense reference, epoch sums), the optimizer's state, the pruning masks
#: (tensors only) and the history rows.
PARTS = ("module", "fairness", "optimizer", "masks", "history")


def _copy(value: Any, device) -> Any:
    """A copy of nested tensors, lists and dicts that shares no memory with ``value``."""
    if isinstance(value, torch.Tensor):
        value = value.detach()
        return value.to(device, copy=True) if device is not None else value.clone()
    if isinstance(value, dict):
        return {key: _copy(item, device) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_copy(item, device) for item in value)
    return copy.deepcopy(value)


def _json_number(value: Any) -> Any:
    """numpy scalars and arrays in a history row, as JSON numbers and lists."""
    if isinstance(value, (np.generic, np.ndarray)):
        return value.tolist()
    raise TypeError(f"history value of type {type(value).__name__} is not JSON-serialisable")


def capture(net, parts: Iterable[str], *, device=None) -> dict:
    """A snapshot of ``parts`` (names from :data:`PARTS`) of a fitting estimator.

    ``device`` (e.g. ``"cpu"``) moves the copies there; by default they stay where the
    tensors are.
    """
    state = {}
    for part in parts:
        if part == "module":
            state[part] = _copy(net.module_.state_dict(), device)
        elif part == "fairness":
            state[part] = _copy(net.fairness_.state_dict(), device)
        elif part == "optimizer":
            state[part] = _copy(net.optimizer_.state_dict(), device)
        elif part == "masks":
            state[part] = _copy(net.masks_.state_dict(), device)
        elif part == "history":
            state[part] = json.dumps(net.history.to_list(), default=_json_number)
        else:
            raise ValueError(f"Unknown part {part!r} of a training state; known: {PARTS}.")
    return state


def restore(net, state: dict) -> None:
    """Put a snapshot from :func:`capture` back (only the parts it holds).

    Masks are checked against ``module_`` and applied after the weights are loaded, so pruned
    weights are zero whatever the snapshot held.
    """
    if "module" in state:
        net.module_.load_state_dict(state["module"])
    if "fairness" in state:
        net.fairness_.load_state_dict(state["fairness"])
    if "optimizer" in state:
        net.optimizer_.load_state_dict(state["optimizer"])
    if "masks" in state:
        masks = MaskSet()
        masks.load_state_dict(state["masks"])
        masks = masks.to(net.device)
        masks.check_compatible(net.module_)
        net.set_masks_(masks)
    elif "module" in state:
        net.masks_.apply_(net.module_)
    if "history" in state:
        rows = json.loads(state["history"])
        for row in rows:  # the only tolerance-dependent entry of a stored epoch
            psi = np.asarray(row.get("train_excess_accuracy_gap", []), dtype=float)
            row["n_violated"] = int(np.nansum(psi > net.tolerance))
        net.history = History(rows)


@contextlib.contextmanager
def kept_if_no_epoch_runs(net) -> Iterator[None]:
    """Put the previous fitted state back when the block fails before any epoch starts (bad
    data or set-up on a refit), so that a failed refit never destroys a model."""
    previous = dict(net.__dict__)
    history = previous.get("history_")
    rows = list(history) if history is not None else None  # skorch clears it in place
    try:
        yield
    except BaseException:
        if previous.get("initialized_") and not len(getattr(net, "history", ())):
            net.__dict__.clear()
            net.__dict__.update(previous)
            if history is not None:
                history[:] = rows
        raise
