"""Reuse of the GMP phase across fits that differ only after pruning (``memory=``).

The pruning epochs do not depend on the fine-tuning method or its tolerance: the paper applies
the constraints only once the target sparsity is reached, and during GMP fairprune runs plain
fine-tuning whatever ``method`` is. A grid search over ``tolerance`` (or ``method``, the dual
step, ...) therefore repeats the same GMP phase in every candidate of a fold. With
``memory=`` set, the state at the end of GMP — sparse weights, masks, optimizer state, the GMP
epochs' history — is stored with :class:`joblib.Memory`, keyed by everything GMP depends on:
the training data, the dense weights, and every parameter except those in
:data:`AFTER_PRUNING`. Later epochs are seeded per epoch, so a fit that loads the phase is
identical to one that runs it (tested).
"""

from __future__ import annotations

import copy
import hashlib
import os
from typing import Any

import joblib
import numpy as np
import torch
from sklearn.utils.validation import check_memory
from skorch.history import History

from .phases import lr_at_epoch

__all__ = ["AFTER_PRUNING", "gmp_key", "run_or_load_gmp"]

#: Parameters that only act after the pruning epochs; they are left out of the cache key.
#: ``tolerance`` also enters the history's ``n_violated``, recomputed when a phase is loaded.
AFTER_PRUNING = frozenset({
    "tolerance", "method", "replay_buffer_size", "dual_lr", "dual_optimizer",
    "max_multiplier_sum", "loss_tolerance", "loss_constraint", "epoch_selection", "verbose",
    "memory",
})
#: Parameters that act during GMP only through the learning rate of each GMP epoch: the key
#: holds those learning rates instead (a later milestone does not re-run GMP).
LR_SCHEDULE = frozenset({"lr", "lr_milestones", "lr_gamma", "max_epochs"})


def _module_digest(module: torch.nn.Module) -> str:
    """Architecture and weights of a module (``joblib.hash`` of a module differs from the
    hash of its deep copy, so tensors are hashed as arrays)."""
    digest = hashlib.sha256(f"{type(module).__qualname__}\n{module!r}".encode())
    for name, tensor in module.state_dict().items():
        digest.update(name.encode())
        digest.update(joblib.hash(tensor.detach().cpu().numpy()).encode())
    return digest.hexdigest()


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
        _module_digest(net.dense_module),
        joblib.hash(params),
        joblib.hash(X),
        joblib.hash(np.asarray(y)),
        joblib.hash(fit_params),
    ]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def _to_cpu(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().clone()
    if isinstance(value, dict):
        return {k: _to_cpu(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_to_cpu(v) for v in value)
    return value


def _capture(net) -> dict:
    return {
        "module": _to_cpu(net.module_.state_dict()),
        "masks": copy.deepcopy(net.masks_).cpu(),
        "optimizer": _to_cpu(net.optimizer_.state_dict()),
        "history": copy.deepcopy(net.history.to_list()),
    }


def _gmp_phase(key: str, net, X, y, fit_params: dict) -> dict:
    """Run the GMP epochs on ``net`` and return its state (``key`` names the result)."""
    net.run_epochs(X, y, net.pruning_epochs, fit_params)
    return _capture(net)


def _restore(net, state: dict) -> None:
    net.module_.load_state_dict(state["module"])
    # the state is already a private copy: made by _capture, or unpickled by joblib
    net.set_masks_(state["masks"].to(net.device))
    net.optimizer_.load_state_dict(state["optimizer"])
    rows = state["history"]
    for row in rows:  # the only tolerance-dependent entry of a GMP epoch
        psi = np.asarray(row.get("train_eag", []), dtype=float)
        row["n_violated"] = int(np.nansum(psi > net.tolerance))
    net.history = History(rows)


def run_or_load_gmp(net, X, y, fit_params: dict) -> None:
    """Bring a freshly initialised ``net`` to the end of its GMP phase, from ``net.memory``
    when this phase was run before, otherwise by running it (and storing it)."""
    memory = net.memory
    memory = check_memory(os.fspath(memory) if isinstance(memory, os.PathLike) else memory)
    cached = memory.cache(_gmp_phase, ignore=["net", "X", "y", "fit_params"], verbose=0)
    state = cached(gmp_key(net, X, y, fit_params), net, X, y, fit_params)
    _restore(net, state)
