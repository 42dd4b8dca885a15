"""Mixed precision of the training forward pass (``mixed_precision``)."""

from __future__ import annotations

import contextlib

import torch

__all__ = ["MIXED_PRECISION", "autocast", "make_grad_scaler"]

#: Accepted values of ``mixed_precision`` besides ``None``.
MIXED_PRECISION = ("bf16", "fp16")


def autocast(mixed_precision: str | None, device) -> contextlib.AbstractContextManager:
    """``torch.autocast`` for ``"bf16"``/``"fp16"``; a no-op context for ``None``."""
    if mixed_precision is None:
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if mixed_precision == "bf16" else torch.float16
    return torch.autocast(device_type=torch.device(device).type, dtype=dtype)


def make_grad_scaler(mixed_precision: str | None, device) -> torch.amp.GradScaler | None:
    """Loss scaling for float16 (its inf/NaN check costs one host sync per step)."""
    if mixed_precision != "fp16":
        return None
    return torch.amp.GradScaler(torch.device(device).type)
