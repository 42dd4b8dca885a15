"""Fingerprints of what a result depends on: a module (code and weights), parameters, data.

The GMP cache keys its entries with them, and a checkpoint records them in its manifest so
that a folder reused by another run (other parameters, data, groups or dense model) is
refused instead of resumed. A module's fingerprint covers its code — the source of the class
of every submodule and of any ``forward`` set on an instance — as well as its architecture and
weights: the same weights with an edited ``forward`` compute something else. A module whose
code cannot be read (a class made with ``exec``, a C extension) has no fingerprint.
"""

from __future__ import annotations

import hashlib
import inspect
import types
from collections.abc import Mapping

import joblib
import numpy as np
import torch

__all__ = ["FingerprintError", "data_digest", "module_digest", "parameter_digests"]


class FingerprintError(TypeError):
    """What a fingerprint needs cannot be read (a module's source, an unhashable value)."""


def _source(obj) -> str:
    try:
        return inspect.getsource(obj)
    except (OSError, TypeError) as exc:
        name = getattr(obj, "__qualname__", type(obj).__qualname__)
        raise FingerprintError(f"the source of {name} cannot be read ({exc})") from None


def module_digest(module: torch.nn.Module) -> str:
    """SHA-256 of a module's code, architecture and weights.

    Tensors are hashed as arrays (``joblib.hash`` of a module differs from that of its deep
    copy). Raises :class:`FingerprintError` when the code of a submodule cannot be read.
    """
    digest = hashlib.sha256(f"{type(module).__qualname__}\n{module!r}".encode())
    classes = {}
    for sub in module.modules():
        for cls in type(sub).__mro__:
            if cls is torch.nn.Module or cls is object:
                break
            classes.setdefault(f"{cls.__module__}.{cls.__qualname__}", cls)
        forward = sub.__dict__.get("forward")  # a forward set on the instance
        if forward is not None:
            target = forward.__func__ if isinstance(forward, types.MethodType) else forward
            digest.update(_source(target).encode())
    for name in sorted(classes):
        digest.update(name.encode())
        digest.update(_source(classes[name]).encode())
    for name, tensor in module.state_dict().items():
        digest.update(name.encode())
        digest.update(joblib.hash(tensor.detach().cpu().numpy()).encode())
    return digest.hexdigest()


def _value_digest(value) -> str:
    if isinstance(value, torch.nn.Module):
        return module_digest(value)
    if isinstance(value, torch.Tensor):
        return joblib.hash(value.detach().cpu().numpy())
    if isinstance(value, Mapping):
        return joblib.hash({str(k): _value_digest(v) for k, v in value.items()})
    try:
        return joblib.hash(value)
    except Exception as exc:  # noqa: BLE001 - pickling errors come in many types
        raise FingerprintError(f"{type(value).__name__} cannot be hashed ({exc})") from None


def parameter_digests(params: Mapping) -> dict[str, str]:
    """One digest per parameter (so that a mismatch can name the parameters that differ)."""
    return {name: _value_digest(value) for name, value in sorted(params.items())}


def data_digest(*arrays) -> str:
    """Digest of arrays, tensors or mappings of them (packed X, targets, group codes)."""
    return joblib.hash([_value_digest(np.asarray(a) if isinstance(a, list) else a)
                        for a in arrays])
