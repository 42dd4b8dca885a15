"""Inputs of the estimator: checks, group labels, packing, and the one evaluation loop.

Array and DataFrame inputs go through scikit-learn's ``validate_data`` (dtype, finiteness,
dimensions, ``n_features_in_`` and ``feature_names_in_``); tensors, dicts and skorch datasets
pass through with a NaN check. Group codes travel with the features in a
:class:`skorch.helper.SliceDict` under :data:`GROUPS_KEY`, so that every skorch split, shuffle
and batch slices them together with X.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import numpy as np
import pandas as pd
import torch
from skorch.dataset import Dataset as SkorchDataset
from skorch.dataset import unpack_data
from skorch.helper import SliceDict
from skorch.utils import is_dataset, multi_indexing, to_tensor
from sklearn.utils.validation import validate_data
from torch.nn.parameter import is_lazy
from torch.utils.data import DataLoader, Subset, default_convert
from torch.utils.data import Dataset as TorchDataset

from ._validation import check_label_array, check_vector
from .groups import GroupEncoder, drop_group_columns, locate_groups
from .pruning import prunable_layers

__all__ = [
    "FEATURES_KEY",
    "GROUPS_KEY",
    "BatchFetcher",
    "check_features",
    "check_targets",
    "fetches_batches",
    "forward",
    "iter_logits",
    "make_iterator",
    "module_inputs",
    "n_samples",
    "pack",
    "prepare_fit_data",
    "probe_module",
    "resolve_groups",
]

#: Key of array features inside the packed SliceDict.
FEATURES_KEY = "__fairprune_X__"
#: Key of the integer group codes inside the packed SliceDict.
GROUPS_KEY = "__fairprune_groups__"
#: dtypes kept as they are; anything else numeric becomes float32 (the weights' dtype)
_KEPT_DTYPES = [np.float32, np.int64, np.int32, np.int16, np.int8, np.uint8]


def check_features(estimator, X, *, reset: bool):
    """X without the locator's group columns, in the form the module takes.

    ``reset=True`` (fit) records ``n_features_in_`` (and ``feature_names_in_`` for a
    DataFrame); ``reset=False`` (predict, report) checks X against them.
    """
    if isinstance(X, Mapping) and GROUPS_KEY in X:
        return X  # already packed by fit
    if X is None:
        raise ValueError("'X' is required; got None.")
    if hasattr(X, "tocsr") or type(X).__module__.startswith("scipy.sparse"):
        raise TypeError(
            "Sparse input is not supported: pass a dense numpy array or tensor as X "
            "(X.toarray()), the module receives dense tensors."
        )
    X = drop_group_columns(estimator.groups, X)
    if isinstance(X, pd.DataFrame):
        non_numeric = [c for c in X.columns if not pd.api.types.is_numeric_dtype(X[c])]
        if non_numeric:
            raise ValueError(
                f"X has non-numeric columns {non_numeric[:5]} left after removing the group "
                "columns; encode them first (e.g. a ColumnTransformer in a Pipeline)."
            )
    elif not isinstance(X, (np.ndarray, torch.Tensor, Mapping)) and not is_dataset(X):
        X = np.asarray(X)
    if isinstance(X, (np.ndarray, pd.DataFrame)):
        return validate_data(estimator, X, reset=reset, dtype=_KEPT_DTYPES, allow_nd=True)
    _check_finite_tensors(X)
    return X


def _check_finite_tensors(X) -> None:
    values = X.values() if isinstance(X, Mapping) else [X]
    for value in values:
        array = value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else value
        if not isinstance(array, np.ndarray) or not np.issubdtype(array.dtype, np.number):
            continue
        if array.ndim == 2 and array.shape[1] == 0:
            raise ValueError(
                f"Found array with 0 feature(s) (shape={array.shape}) while a minimum of 1 is "
                "required."
            )
        if np.issubdtype(array.dtype, np.floating) and not np.isfinite(array).all():
            raise ValueError("Input X contains NaN or infinity; impute or drop those values.")


def resolve_groups(locator, X, y, groups) -> np.ndarray | None:
    """Labels from the direct argument and/or the locator; they must agree."""
    located = locate_groups(locator, X, y)
    if groups is None:
        return located
    direct = check_label_array(groups, "groups")
    if located is not None:
        if len(located) != len(direct) or not all(
            a == b for a, b in zip(located.tolist(), direct.tolist())
        ):
            raise ValueError(
                f"'groups' were given both to fit and through the locator "
                f"groups={locator!r}, with different values. Give them one way."
            )
    return direct


def n_samples(X) -> int:
    """Number of samples of an array, DataFrame, dict of arrays or dataset."""
    if isinstance(X, Mapping):
        return len(next(iter(X.values())))
    return len(X)


def pack(features, codes: np.ndarray) -> SliceDict:
    """Features and group codes in one SliceDict (skorch slices them together)."""
    if isinstance(features, Mapping):
        return SliceDict(**features, **{GROUPS_KEY: codes})
    return SliceDict(**{FEATURES_KEY: features, GROUPS_KEY: codes})


def check_targets(y, n_classes: int, n_samples: int) -> np.ndarray:
    """``y`` as int64 class indices ``0 .. n_classes - 1``, one per sample."""
    if y is None:
        raise ValueError(
            "FairPrunedClassifier requires y to be passed, but the target y is None "
            "(class indices 0 .. n_classes-1 are expected)."
        )
    y = check_vector(y, "y")
    if np.issubdtype(y.dtype, np.floating) and not np.isfinite(y).all():
        raise ValueError("Input y contains NaN or infinity; every sample needs a class index.")
    if len(y) != n_samples:
        raise ValueError(f"X has {n_samples} samples but y has {len(y)}.")
    if np.issubdtype(y.dtype, np.floating) and not np.all(np.mod(y, 1) == 0):
        raise ValueError(
            "Unknown label type: continuous. 'y' must hold class indices 0 .. n_classes-1 "
            "matching dense_module's outputs."
        )
    if not np.issubdtype(y.dtype, np.number):
        raise ValueError(
            "'y' must hold class indices 0 .. n_classes-1 matching dense_module's outputs; "
            f"got values of dtype {y.dtype} (e.g. {y[:3].tolist()}). Encode labels with "
            "the mapping used to train the dense model."
        )
    y = y.astype(np.int64)
    if y.min() < 0 or y.max() >= n_classes:
        raise ValueError(
            f"'y' has classes outside 0 .. {n_classes - 1}, the outputs of dense_module "
            f"(found min {y.min()}, max {y.max()})."
        )
    return y


def module_inputs(x):
    """What the module's ``forward`` takes from a batch (packed or not): the array features,
    or the dict of keyword inputs, group codes left out."""
    if isinstance(x, Mapping):
        x = {k: v for k, v in x.items() if k != GROUPS_KEY}
        if FEATURES_KEY in x:
            return x[FEATURES_KEY]
    return x


def forward(module: torch.nn.Module, x, device) -> torch.Tensor:
    """Logits of ``module`` on one batch (packed or not), group codes left out."""
    x = module_inputs(to_tensor(x, device=device))
    return module(**x) if isinstance(x, Mapping) else module(x)


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

    The one evaluation loop of the library: predictions of the sparse and dense models, the
    training report and the dense reference all go through it. Float32, no gradients; the
    module's train/eval mode is restored afterwards.
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


def prepare_fit_data(net, X, y, groups, fit_params=None, classes=None):
    """Check a fit's inputs and pack features with group codes: ``(packed, y)``.

    A fresh fit encodes the groups and records the feature count; a fit that continues
    (``warm_start``, ``partial_fit``) checks the data against them. ``sample_weight`` is
    refused (the constraints weigh groups, not samples), and ``classes`` (``partial_fit``)
    must be the dense module's classes ``0 .. n_classes - 1``.
    """
    if fit_params and "sample_weight" in fit_params:
        raise TypeError(
            "FairPrunedClassifier does not support sample_weight: the losses, group "
            "accuracies and constraints weigh every training sample equally. Resample the "
            "data instead, or drop sample_weight.")
    prunable_layers(net.dense_module, tuple(net.dense_layers))  # bad names fail first
    if y is None:
        check_targets(None, 0, 0)
    labels = resolve_groups(net.groups, X, y, groups)
    if labels is None:
        raise ValueError(
            "FairPrunedClassifier.fit needs group labels: pass fit(X, y, groups=g), set a "
            "locator (groups='column', groups=['a', 'b'] or groups=by_target), or route "
            "them with set_fit_request(sensitive_features=True) under metadata routing."
        )
    fresh = net.fairness_ is None
    features = check_features(net, X, reset=fresh)
    if len(labels) != n_samples(features):
        raise ValueError(
            f"'groups' has {len(labels)} labels but X has {n_samples(features)} samples.")
    logits = probe_module(net.dense_module_, net.module_, features)
    y = check_targets(y, logits.shape[1], n_samples(features))
    if fresh:
        net.group_encoder_ = GroupEncoder().fit(labels)
    net.n_classes_ = int(logits.shape[1])
    if classes is not None and not np.array_equal(np.unique(classes), np.arange(net.n_classes_)):
        raise ValueError(
            f"'classes' must be the dense module's classes 0 .. {net.n_classes_ - 1} (its "
            f"{net.n_classes_} outputs); got {np.unique(classes).tolist()[:10]}.")
    return pack(features, net.group_encoder_.transform(labels)), y


def fetches_batches(dataset) -> bool:
    """Whether ``dataset[list_of_indices]`` returns a whole batch (skorch's array datasets)."""
    if isinstance(dataset, Subset):
        return fetches_batches(dataset.dataset)
    return type(dataset) is SkorchDataset and not dataset.X_is_ndframe


class BatchFetcher(TorchDataset):
    """A view of a dataset whose ``__getitems__`` (called by the DataLoader when present)
    fetches a whole batch with one indexing."""

    def __init__(self, dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index):
        return self.dataset[index]

    def __getitems__(self, indices):
        rows, dataset = np.asarray(indices, dtype=np.int64), self.dataset
        while isinstance(dataset, Subset):  # validation splits: rows of the parent dataset
            rows = np.asarray(dataset.indices, dtype=np.int64)[rows]
            dataset = dataset.dataset
        # not dataset[rows]: skorch's indexing turns the rows into a list, which scikit-learn
        # then checks element by element (~0.2 ms a batch); arrays are indexed directly
        return dataset.transform(take_rows(dataset.X, rows), take_rows(dataset.y, rows))


def take_rows(data, rows: np.ndarray):
    """``data[rows]`` for arrays and tensors, key by key for mappings of them, skorch's
    ``multi_indexing`` for anything else."""
    if data is None:
        return None
    if isinstance(data, (np.ndarray, torch.Tensor)):
        return data[rows]
    if isinstance(data, Mapping):
        return {key: take_rows(value, rows) for key, value in data.items()}
    return multi_indexing(data, rows)


def make_iterator(net, dataset, *, training: bool, default_iterator):
    """skorch's DataLoader for ``dataset``, fetching each batch with one indexing.

    skorch's default fetches samples one by one and collates them, which costs more than
    the training step of a small model. For skorch's own datasets of arrays, with no custom
    sampler or ``collate_fn``, the DataLoader (same sampler, same batches, same RNG draws)
    reads ``dataset[indices]`` through ``__getitems__``; otherwise ``default_iterator`` (skorch's)
    is returned.
    """
    kwargs = net.get_params_for("iterator_train" if training else "iterator_valid")
    iterator = net.iterator_train if training else net.iterator_valid
    custom = {"sampler", "batch_sampler", "collate_fn"} & kwargs.keys()
    if iterator is not DataLoader or custom or not fetches_batches(dataset):
        return default_iterator()
    batch_size = kwargs.pop("batch_size", net.batch_size)
    batch_size = len(dataset) if batch_size == -1 else batch_size
    return DataLoader(BatchFetcher(dataset), batch_size=batch_size,
                      collate_fn=default_convert, **kwargs)
