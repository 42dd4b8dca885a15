"""Parameter table of FairPrunedClassifier, checked once at the start of ``fit``."""

from __future__ import annotations

import math
import os
import numbers
from collections.abc import Sequence
from typing import Any

import torch

from ._validation import _describe, check_choice, check_tolerance
from .groups import _check_locator

OWNER = "FairPrunedClassifier"
METHODS = ("ceag", "equalized_loss", "nft")
PRUNING_KINDS = ("unstructured", "channel")
SCOPES = ("layerwise", "global")
DUAL_OPTIMIZERS = ("sgd", "nupi")
MIXED_PRECISION = ("bf16", "fp16")
LOSS_CONSTRAINTS = ("band", "equality")
EPOCH_SELECTIONS = ("accuracy",)


def _real(value: Any, name: str, low: float, high: float, *, closed: str, extra: str = "") -> float:
    """A real number in an interval; ``closed`` is one of "both", "left", "right", "neither"."""
    ok_type = isinstance(value, numbers.Real) and not isinstance(value, bool)
    left = "[" if closed in ("both", "left") else "("
    right = "]" if closed in ("both", "right") else ")"
    hi = "inf" if math.isinf(high) else f"{high:g}"
    message = (
        f"The {name!r} parameter of {OWNER} must be a float in the range "
        f"{left}{low:g}, {hi}{right}{extra}. Got {_describe(value)} instead."
    )
    if not ok_type:
        raise TypeError(message)
    value = float(value)
    above = value >= low if closed in ("both", "left") else value > low
    below = value <= high if closed in ("both", "right") else value < high
    if math.isnan(value) or not (above and below):
        raise ValueError(message)
    return value


def _int(value: Any, name: str, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(
            f"The {name!r} parameter of {OWNER} must be an int >= {low}. "
            f"Got {_describe(value)} of type {type(value).__name__} instead."
        )
    if value < low:
        raise ValueError(
            f"The {name!r} parameter of {OWNER} must be an int >= {low}. Got {value!r} instead."
        )
    return int(value)


def validate_params(est) -> None:
    """Check every FairPrunedClassifier parameter; raise on the first bad one."""
    if not isinstance(est.dense_module, torch.nn.Module):
        raise TypeError(
            f"The 'dense_module' parameter of {OWNER} must be a trained torch.nn.Module "
            f"instance. Got {_describe(est.dense_module)} of type "
            f"{type(est.dense_module).__name__} instead."
        )
    _real(est.sparsity, "sparsity", 0.0, 1.0, closed="left")
    check_tolerance(est.tolerance, owner=OWNER, allow_none=False)
    check_choice(est.method, "method", METHODS, owner=OWNER)
    _int(est.replay_buffer_size, "replay_buffer_size", 0)
    if not (isinstance(est.dual_lr, str) and est.dual_lr == "auto"):
        _real(est.dual_lr, "dual_lr", 0.0, math.inf, closed="neither", extra=" or 'auto'")
    check_choice(est.dual_optimizer, "dual_optimizer", DUAL_OPTIMIZERS, owner=OWNER)
    if est.max_multiplier_sum is not None:
        _real(est.max_multiplier_sum, "max_multiplier_sum", 0.0, math.inf, closed="neither",
              extra=" or None")
    _real(est.loss_tolerance, "loss_tolerance", 0.0, math.inf, closed="left")
    check_choice(est.loss_constraint, "loss_constraint", LOSS_CONSTRAINTS, owner=OWNER)
    if est.epoch_selection is not None:
        check_choice(est.epoch_selection, "epoch_selection", EPOCH_SELECTIONS, owner=OWNER)
        if est.train_split is None:
            raise ValueError(
                f"The 'epoch_selection' parameter of {OWNER} is {est.epoch_selection!r}, which "
                "picks an epoch on held-out training data, but 'train_split' is None. Pass "
                "train_split=skorch.dataset.ValidSplit(0.1, stratified=True, random_state=0)."
            )
    check_choice(est.pruning, "pruning", PRUNING_KINDS, owner=OWNER)
    check_choice(est.pruning_scope, "pruning_scope", SCOPES, owner=OWNER)
    if isinstance(est.dense_layers, str) or not isinstance(est.dense_layers, Sequence) or not all(
        isinstance(name, str) for name in est.dense_layers
    ):
        raise TypeError(
            f"The 'dense_layers' parameter of {OWNER} must be a tuple of layer names or the "
            f"tokens 'first'/'last' (() prunes every layer). Got {_describe(est.dense_layers)} "
            "instead."
        )
    _int(est.pruning_epochs, "pruning_epochs", 1)
    _int(est.pruning_frequency, "pruning_frequency", 1)
    _int(est.max_epochs, "max_epochs", 0)
    _real(est.lr, "lr", 0.0, math.inf, closed="neither")
    _int(est.batch_size, "batch_size", 1)
    if est.lr_milestones is not None:
        if isinstance(est.lr_milestones, str) or not isinstance(est.lr_milestones, Sequence):
            raise TypeError(
                f"The 'lr_milestones' parameter of {OWNER} must be None or a sequence of "
                f"fractions of all epochs in (0, 1]. Got {_describe(est.lr_milestones)} instead."
            )
        for value in est.lr_milestones:
            _real(value, "lr_milestones", 0.0, 1.0, closed="right")
    _real(est.lr_gamma, "lr_gamma", 0.0, math.inf, closed="neither")
    if est.random_state is not None:
        _int(est.random_state, "random_state", 0)
    _check_locator(est.groups)
    if est.mixed_precision is not None:
        check_choice(est.mixed_precision, "mixed_precision", MIXED_PRECISION, owner=OWNER)
    memory = est.memory
    if memory is not None and not isinstance(memory, (str, os.PathLike)) and not hasattr(
        memory, "cache"
    ):
        raise TypeError(
            f"The 'memory' parameter of {OWNER} must be None, a directory (str or path) or a "
            f"joblib.Memory. Got {_describe(memory)} instead."
        )
    device = str(est.device)
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(
            f"The 'device' parameter of {OWNER} is {device!r}, but CUDA is not available on "
            "this machine. Use device='cpu'."
        )
