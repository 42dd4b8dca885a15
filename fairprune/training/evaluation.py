"""Running a module on packed data: the forward pass, the probe of a fit's inputs, and the one
evaluation loop of the library.

Predictions of the sparse and dense models, the training report and the dense reference all
go through :func:`iter_logits`; the training and validation steps take a batch apart with
:func:`batch_tensors`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import torch
from skorch.dataset import unpack_data
from skorch.utils import to_tensor
from torch.nn.parameter import is_lazy

from ..groups import report_codes, unpack_groups

__all__ = ["batch_tensors", "check_finite_outputs", "forward", "iter_logits", "per_sample_evaluation", "probe_module",
           "predicted_classes"]


def forward(module: torch.nn.Module, x, device) -> torch.Tensor:
    """Logits of ``module`` on one batch (packed or not), group codes left out."""
    inputs, _ = unpack_groups(to_tensor(x, device=device))
    return module(**inputs) if isinstance(inputs, Mapping) else module(inputs)


def batch_tensors(batch, device) -> tuple:
    """``(Xi, y, group_ids)`` of a training or validation batch: the batch's X as it came
    (packed), the targets and the int64 group codes as tensors on ``device``."""
    Xi, yi = unpack_data(batch)
    _, codes = unpack_groups(Xi)
    group_ids = None if codes is None else to_tensor(codes, device=device).long()
    return Xi, to_tensor(yi, device=device), group_ids


@torch.no_grad()
def probe_module(dense: torch.nn.Module, sparse: torch.nn.Module, X) -> torch.Tensor:
    """Run ``dense`` on two samples: a clear error for X that does not fit it.

    Lazy layers of ``sparse`` (a copy of the same module) are materialised on the way and
    given the dense weights.
    """
    probe = {k: v[:2] for k, v in X.items()} if isinstance(X, Mapping) else X[:2]
    was_training = dense.training
    try:
        dense.eval()
        device = next(dense.parameters()).device
        x = to_tensor(probe, device=device)
        out = dense(**x) if isinstance(x, Mapping) else dense(x)
        if any(is_lazy(p) for p in sparse.parameters()):
            sparse.eval()
            sparse(**x) if isinstance(x, Mapping) else sparse(x)
            sparse.load_state_dict(dense.state_dict())
            for param in dense.parameters():
                param.requires_grad_(False)
    except Exception as exc:  # noqa: BLE001 - re-raised with context
        shape = getattr(X, "shape", None)
        raise ValueError(
            f"X{'' if shape is None else ' of shape ' + str(tuple(shape))} does not fit "
            f"dense_module ({type(dense).__name__}): {type(exc).__name__}: {exc}"
        ) from exc
    finally:
        dense.train(was_training)
    if not isinstance(out, torch.Tensor) or out.dim() != 2:
        raise ValueError(
            "dense_module must return logits of shape (n_samples, n_classes); got "
            f"{type(out).__name__}{'' if not isinstance(out, torch.Tensor) else tuple(out.shape)}."
        )
    return out


def iter_logits(net, module: torch.nn.Module, dataset) -> Iterator[tuple]:
    """``(logits, X_batch, y_batch)`` of ``module`` in eval mode over ``dataset``.

    The one evaluation loop of the library. Float32, no gradients; the module's train/eval
    mode is restored afterwards.
    """
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            for batch in net.get_iterator(dataset, training=False):
                Xi, yi = unpack_data(batch)
                yield forward(module, Xi, net.device), Xi, yi
    finally:
        module.train(was_training)


def per_sample_evaluation(net, module: torch.nn.Module, dataset):
    """Per-sample loss, correctness and group codes of ``module`` on a packed dataset."""
    losses, correct, groups = [], [], []
    for logits, Xi, yi in iter_logits(net, module, dataset):
        yi = to_tensor(yi, device=net.device)
        losses.append(net.criterion_(logits, yi).float())
        correct.append((logits.argmax(dim=1) == yi).float())
        groups.append(to_tensor(unpack_groups(Xi)[1], device=net.device).long())
    return torch.cat(losses), torch.cat(correct), torch.cat(groups)


def predicted_classes(net, dataset) -> tuple:
    """``(y_true, dense, sparse, codes)`` as numpy arrays over a packed dataset: the targets,
    both models' predicted classes and the group codes."""
    sparse, labels, codes, finite = [], [], [], []
    for logits, Xi, yi in iter_logits(net, net.module_, dataset):
        sparse.append(logits.argmax(1).cpu())
        finite.append(torch.isfinite(logits).all(dim=1).cpu())
        labels.append(torch.as_tensor(yi).cpu())
        codes.append(torch.as_tensor(report_codes(Xi)).cpu())
    check_finite_outputs(torch.cat(finite), "sparse model (module_)")
    dense, finite = [], []
    for logits, _, _ in iter_logits(net, net.dense_module_, dataset):
        dense.append(logits.argmax(1).cpu())
        finite.append(torch.isfinite(logits).all(dim=1).cpu())
    check_finite_outputs(torch.cat(finite), "dense model (dense_module_)")
    return tuple(torch.cat(part).numpy() for part in (labels, dense, sparse, codes))


def check_finite_outputs(finite_rows: torch.Tensor, model: str) -> None:
    """``FloatingPointError`` when some rows' outputs are NaN/inf: a class predicted from
    them would be arbitrary, and a score or report built on it would look fine but be wrong."""
    bad = int((~finite_rows).sum())
    if bad:
        raise FloatingPointError(
            f"The {model} gives NaN/inf outputs on {bad} of {len(finite_rows)} rows; its "
            "predictions, scores and reports would be meaningless. Check the inputs for "
            "NaN/inf; if the inputs are finite, the model's weights or statistics are not "
            "(fit again with a lower 'lr').")
