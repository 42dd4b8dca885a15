"""Batches for the training and evaluation loops: skorch's DataLoader, fetching a whole batch
of an array dataset with one indexing, and the BatchNorm rule for a last batch of one sample.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
from skorch.dataset import Dataset as SkorchDataset
from skorch.utils import multi_indexing
from torch.utils.data import DataLoader, Subset, default_convert
from torch.utils.data import Dataset as TorchDataset

__all__ = ["BatchFetcher", "fetches_batches", "make_iterator", "single_sample_tail",
           "take_rows"]

_BATCH_NORMS = (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d, torch.nn.BatchNorm3d,
                torch.nn.SyncBatchNorm)


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


def single_sample_tail(module: torch.nn.Module, dataset, batch_size) -> bool:
    """Whether the last training batch would hold one sample of a module with BatchNorm,
    which cannot train on it (the caller then drops that batch: a different sample each
    epoch, as batches are shuffled). Refuses data or batch sizes that give only such
    batches."""
    has_norm = any(isinstance(m, _BATCH_NORMS) for m in module.modules())
    if not has_norm or batch_size in (None, -1):
        return False
    if len(dataset) == 1 or batch_size == 1:
        raise ValueError(
            "dense_module has BatchNorm layers, which cannot train on batches of one sample: "
            f"use batch_size >= 2 and at least 2 training samples (got batch_size="
            f"{batch_size} and {len(dataset)} training sample(s)).")
    return len(dataset) % batch_size == 1
