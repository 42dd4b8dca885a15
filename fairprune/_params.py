"""The parameter table of FairPrunedClassifier, checked once at the start of ``fit``.

Each parameter's accepted values are declared with scikit-learn's constraint objects and
checked by scikit-learn's ``validate_parameter_constraints``, so messages read like
scikit-learn's ("The 'sparsity' parameter of FairPrunedClassifier must be a float in the
range [0.0, 1.0). Got 1.5 instead."), with a "Did you mean ...?" for near-miss strings. A few
rules that span parameters or need the machine (a CUDA device) follow the table.
"""

from __future__ import annotations

import difflib
import os
from numbers import Integral, Real

import numpy as np
import torch
from sklearn.utils._param_validation import (
    HasMethods,
    Interval,
    InvalidParameterError,
    StrOptions,
    validate_parameter_constraints,
)

from ._validation import describe
from .groups import check_locator
from .training.methods import METHODS
from .training.precision import MIXED_PRECISION

__all__ = ["PARAMETER_CONSTRAINTS", "validate_params"]

OWNER = "FairPrunedClassifier"
_POSITIVE = Interval(Real, 0, None, closed="neither")
#: steps are multiplied into float32 weights: larger values cannot even be represented there
_STEP = Interval(Real, 0, float(np.finfo(np.float32).max), closed="right")
_NON_NEGATIVE = Interval(Real, 0, None, closed="left")

#: Accepted values of every FairPrunedClassifier parameter (scikit-learn's constraint objects).
PARAMETER_CONSTRAINTS: dict[str, list] = {
    "dense_module": [torch.nn.Module],
    "sparsity": [Interval(Real, 0, 1, closed="left")],
    "tolerance": [_NON_NEGATIVE],
    "groups": [None, str, list, tuple, callable],
    "method": [StrOptions(set(METHODS))],
    "replay_buffer_size": [Interval(Integral, 0, None, closed="left")],
    "dual_lr": [_STEP, StrOptions({"auto"})],
    "dual_optimizer": [StrOptions({"sgd", "nupi"})],
    "max_multiplier_sum": [None, _POSITIVE],
    "loss_tolerance": [_NON_NEGATIVE],
    "loss_constraint": [StrOptions({"band", "equality"})],
    "epoch_selection": [None, StrOptions({"accuracy", "fair"})],
    "constraint_data": [StrOptions({"train", "heldout"})],
    "pruning": [StrOptions({"unstructured", "channel"})],
    "pruning_scope": [StrOptions({"layerwise", "global"})],
    "dense_layers": [tuple, list],
    "pruning_epochs": [Interval(Integral, 1, None, closed="left")],
    "pruning_frequency": [Interval(Integral, 1, None, closed="left")],
    "max_epochs": [Interval(Integral, 0, None, closed="left")],
    "lr": [_STEP],
    "batch_size": [Interval(Integral, 1, None, closed="left")],
    "lr_milestones": [None, tuple, list],
    "lr_gamma": [Interval(Real, 0, 1, closed="right")],  # a decay factor
    "random_state": [None, Interval(Integral, 0, None, closed="left")],
    "memory": [None, str, os.PathLike, HasMethods(["cache"])],
    "mixed_precision": [None, StrOptions(set(MIXED_PRECISION))],
}


def _hint(value, constraints) -> str:
    """" Did you mean 'x'?" for a string close to one of the options."""
    if not isinstance(value, str):
        return ""
    options = [o for c in constraints if isinstance(c, StrOptions) for o in c.options]
    close = difflib.get_close_matches(value, options, n=1)
    return f" Did you mean {close[0]!r}?" if close else ""


def _check(name: str, value) -> None:
    constraints = PARAMETER_CONSTRAINTS[name]
    numeric_only = all(isinstance(c, Interval) or c is None for c in constraints)
    try:
        if isinstance(value, bool) and numeric_only:  # True is an int to Python, not to us
            raise InvalidParameterError(
                f"The {name!r} parameter of {OWNER} must be a number, not a bool. Got "
                f"{value!r} instead.")
        validate_parameter_constraints({name: constraints}, {name: value}, caller_name=OWNER)
    except InvalidParameterError as exc:
        raise InvalidParameterError(f"{exc}{_hint(value, constraints)}") from None


def validate_params(est) -> None:
    """Check every FairPrunedClassifier parameter; raise on the first bad one.

    Raises :class:`sklearn.utils._param_validation.InvalidParameterError`, a subclass of both
    ``ValueError`` and ``TypeError``, naming the parameter, what was expected and what came.
    """
    check_locator(est.groups)  # first: its message says what a locator may be
    for name in PARAMETER_CONSTRAINTS:
        _check(name, getattr(est, name))
    if not all(isinstance(layer, str) for layer in est.dense_layers):
        raise InvalidParameterError(
            f"The 'dense_layers' parameter of {OWNER} must be a tuple of layer names or the "
            f"tokens 'first'/'last' (() prunes every layer). Got {describe(est.dense_layers)} "
            "instead.")
    for value in est.lr_milestones or ():
        if isinstance(value, bool) or not isinstance(value, Real) or not 0 < value <= 1:
            raise InvalidParameterError(
                f"The 'lr_milestones' parameter of {OWNER} must be None or a sequence of "
                f"fractions of all epochs in (0, 1]. Got {describe(est.lr_milestones)} instead.")
    for name, value in (("epoch_selection", est.epoch_selection),
                        ("constraint_data", est.constraint_data)):
        if value not in (None, "train") and est.train_split is None:
            raise InvalidParameterError(
                f"The {name!r} parameter of {OWNER} is {value!r}, which needs held-out "
                "training data, but 'train_split' is None. Pass train_split="
                "skorch.dataset.ValidSplit(0.1, stratified=True, random_state=0).")
    if not any(p.requires_grad for p in est.dense_module.parameters()):
        raise InvalidParameterError(
            f"The 'dense_module' parameter of {OWNER} has no trainable parameters (none, or "
            "all with requires_grad=False): there is nothing to prune or fine-tune. Unfreeze "
            "the layers to prune (param.requires_grad_(True)).")
    try:
        if est.device is not None:  # None: skorch leaves placement to e.g. Accelerate
            torch.device(est.device)
    except (RuntimeError, TypeError, ValueError):
        raise InvalidParameterError(
            f"The 'device' parameter of {OWNER} must be a torch device such as 'cpu', 'cuda', "
            f"'cuda:0' or 'mps'. Got {describe(est.device)} instead.") from None
    device = str(est.device)
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise InvalidParameterError(
            f"The 'device' parameter of {OWNER} is {device!r}, but CUDA is not available on "
            "this machine. Use device='cpu'.")

