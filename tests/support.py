"""Helpers shared by test modules: a guard against host synchronisation, an interrupting
callback, and a generated folder in UTKFace's format."""

from __future__ import annotations

import contextlib

import numpy as np
import torch
from skorch.callbacks import Callback
from torch.overrides import TorchFunctionMode

#: torch functions and methods that make the host wait for the device
SYNCING = {
    "item", "tolist", "numpy", "cpu", "__bool__", "__int__", "__float__", "__index__",
    "nonzero", "argwhere", "bincount", "unique", "unique_consecutive", "masked_select",
    "repeat_interleave", "histc",
}


class SyncCounter(TorchFunctionMode):
    """Records the calls of a block that would synchronise a GPU with the host."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", str(func))
        if name in SYNCING:
            self.calls.append(name)
        elif name in ("__getitem__", "__setitem__") and _has_bool_mask(args[1:2]):
            self.calls.append(f"{name}[bool mask]")
        return func(*args, **(kwargs or {}))


@contextlib.contextmanager
def forbid_host_sync():
    """Fail if the block makes any call that would synchronise a GPU with the host."""
    with SyncCounter() as counter:
        yield counter
    assert counter.calls == [], f"host synchronisation in the training step: {counter.calls}"


def _has_bool_mask(index) -> bool:
    items = index[0] if index and isinstance(index[0], tuple) else index
    return any(isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in items)



class InterruptAt(Callback):
    """Raise KeyboardInterrupt when epoch ``epoch`` (0-based count of finished epochs) begins."""

    def __init__(self, epoch):
        self.epoch = epoch

    def on_epoch_begin(self, net, **kwargs):
        if len(net.history) == self.epoch:
            raise KeyboardInterrupt



def make_utkface_folder(root, n=24, seed=0):
    from PIL import Image

    rng = np.random.default_rng(seed)
    for i in range(n):
        age, gender, race = int(rng.integers(1, 90)), i % 2, i % 5
        pixels = rng.integers(0, 255, (40, 30, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(root / f"{age}_{gender}_{race}_2017011{i:04d}.jpg")
    (root / "61_1_20170109142408075.jpg").write_bytes(b"")  # malformed name (missing race)
    (root / "notes.txt").write_text("not an image")
    return root
