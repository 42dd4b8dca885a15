"""Small dense reference models and a skorch training loop, for examples, tests and notebooks.

fairprune prunes a model *you* trained; these helpers give a quick, seeded dense baseline when
you only want to try the library.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from .transforms import RandomHorizontalFlip

__all__ = [
    "make_digits_cnn",
    "make_face_cnn",
    "make_image_cnn",
    "make_mlp",
    "make_mobilenet_v2",
    "train_classifier",
]


def make_mlp(n_features: int, n_classes: int, hidden: Sequence[int] = (128, 128)) -> nn.Sequential:
    """A ReLU MLP ``n_features -> hidden... -> n_classes`` (logits out).

    Examples
    --------
    >>> make_mlp(64, 10, hidden=(32,))
    Sequential(
      (0): Linear(in_features=64, out_features=32, bias=True)
      (1): ReLU()
      (2): Linear(in_features=32, out_features=10, bias=True)
    )
    """
    sizes = [n_features, *hidden]
    layers: list[nn.Module] = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(a, b), nn.ReLU()]
    layers.append(nn.Linear(sizes[-1], n_classes))
    return nn.Sequential(*layers)


class _Unflatten8x8(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.view(-1, 1, 8, 8)


def make_digits_cnn(n_classes: int = 10, channels: tuple[int, int] = (16, 32)) -> nn.Sequential:
    """A small CNN for scikit-learn's 8x8 digits given as flat 64-feature rows."""
    c1, c2 = channels
    return nn.Sequential(
        _Unflatten8x8(),
        nn.Conv2d(1, c1, 3, padding=1), nn.ReLU(),
        nn.Conv2d(c1, c2, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(c2 * 16, 64), nn.ReLU(), nn.Linear(64, n_classes),
    )


def make_image_cnn(n_classes: int, in_channels: int = 3, width: int = 16) -> nn.Sequential:
    """A small CNN with BatchNorm for ``(n, in_channels, H, W)`` images (e.g. 32x32 faces)."""
    return nn.Sequential(
        nn.Conv2d(in_channels, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(width, 2 * width, 3, padding=1), nn.BatchNorm2d(2 * width), nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(2 * width, 4 * width, 3, padding=1), nn.BatchNorm2d(4 * width), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4 * width, n_classes),
    )


def make_face_cnn(n_classes: int, width: int = 32, flip: bool = True) -> nn.Sequential:
    """The CPU-scale face model: a small VGG-style CNN with BatchNorm for 32–48 px faces.

    Four 3x3 conv blocks (``width``, ``2·width``, ``4·width``, ``4·width`` channels; the
    first three followed by 2x2 max pooling), global average pooling and a linear classifier;
    with ``flip=True`` a :class:`~fairprune.datasets.transforms.RandomHorizontalFlip` comes first
    (training only). It stands in for the paper's ImageNet-pretrained MobileNetV2 at 200 px,
    which needs a GPU (:func:`make_mobilenet_v2`): trained from scratch it fits the training
    images almost perfectly, as the paper's dense model does, so pruning's disparate impact on
    training data is large.

    Examples
    --------
    >>> sum(p.numel() for p in make_face_cnn(5, width=16).parameters())
    61013
    """
    w = width

    def block(c_in: int, c_out: int) -> list[nn.Module]:
        return [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out),
                nn.ReLU(inplace=True)]

    layers: list[nn.Module] = [RandomHorizontalFlip()] if flip else []
    layers += [*block(3, w), nn.MaxPool2d(2), *block(w, 2 * w), nn.MaxPool2d(2),
               *block(2 * w, 4 * w), nn.MaxPool2d(2), *block(4 * w, 4 * w),
               nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4 * w, n_classes)]
    return nn.Sequential(*layers)


def make_mobilenet_v2(
    n_classes: int, width_mult: float = 1.0, weights: str | None = None, flip: bool = True
) -> nn.Module:
    """The paper's face model: torchvision's MobileNetV2 with an ``n_classes`` classifier.

    Parameters
    ----------
    n_classes : int
        Outputs of the last linear layer.
    width_mult : float, default=1.0
        MobileNetV2's width multiplier.
    weights : str or path, optional
        A local ``state_dict`` file (e.g. torchvision's ImageNet weights, downloaded once by
        you); its classifier is replaced by a fresh ``n_classes`` one. Nothing is downloaded.
    flip : bool, default=True
        Prepend a training-only :class:`~fairprune.datasets.transforms.RandomHorizontalFlip`.

    Returns
    -------
    torch.nn.Module
        Expects ImageNet-normalised ``(n, 3, H, W)`` images (the paper: 200 px).
    """
    from torchvision.models import mobilenet_v2  # torchvision only where it is used

    model = mobilenet_v2(width_mult=width_mult)
    if weights is not None:
        state = torch.load(weights, map_location="cpu", weights_only=True)
        model.load_state_dict(state)
    model.classifier[-1] = nn.Linear(model.classifier[-1].in_features, n_classes)
    return nn.Sequential(RandomHorizontalFlip(), model) if flip else model


class _EpochPermutation(torch.utils.data.Sampler):
    """Row indices in the order of one ``torch.randperm`` per epoch, drawn from torch's global
    random generator: seeding with ``torch.manual_seed`` fixes the initialisation and the
    shuffles together, as a hand-written loop does."""

    def __init__(self, n_rows: int) -> None:
        self.n_rows = n_rows

    def __iter__(self):
        return iter(torch.randperm(self.n_rows).tolist())

    def __len__(self) -> int:
        return self.n_rows


def train_classifier(
    module: nn.Module,
    X: np.ndarray,
    y: np.ndarray,
    *,
    epochs: int = 30,
    lr: float = 1e-3,
    batch_size: int = 64,
    seed: int | None = None,
    lr_schedule: str = "constant",
    verbose: int = 0,
) -> nn.Module:
    """Train ``module`` with Adam and cross-entropy through skorch; return it in eval mode.

    The training loop is skorch's :class:`~skorch.NeuralNetClassifier` (no validation split,
    shuffled mini-batches, one Adam step per batch), so a dense model is trained the way
    skorch users train any model. ``verbose=1`` prints skorch's per-epoch table.

    ``seed`` reseeds torch's global RNG before training (shuffles); ``None`` leaves it as it
    is, so ``torch.manual_seed(s); train_classifier(make_mlp(...), X, y)`` seeds the
    initialisation and the shuffles together. ``lr_schedule="cosine"`` anneals the learning
    rate to 0 over the epochs (``torch.optim.lr_scheduler.CosineAnnealingLR`` through skorch's
    ``LRScheduler`` callback), which lets a model fit its training data much more closely in
    the same number of epochs.
    """
    from skorch import NeuralNetClassifier
    from skorch.callbacks import LRScheduler

    if lr_schedule not in ("constant", "cosine"):
        raise ValueError(f"lr_schedule must be 'constant' or 'cosine'; got {lr_schedule!r}.")
    if seed is not None:
        torch.manual_seed(seed)
    X = np.asarray(X, dtype=np.float32)
    y = np.asarray(y, dtype=np.int64)
    callbacks = []
    if lr_schedule == "cosine":
        callbacks.append(("cosine", LRScheduler(torch.optim.lr_scheduler.CosineAnnealingLR,
                                                T_max=max(1, epochs))))
    parameter = next(module.parameters(), None)
    net = NeuralNetClassifier(
        module,
        criterion=nn.CrossEntropyLoss,
        optimizer=torch.optim.Adam,
        lr=lr,
        max_epochs=epochs,
        batch_size=batch_size,
        train_split=None,
        callbacks=callbacks,
        iterator_train__shuffle=False,
        iterator_train__sampler=_EpochPermutation(len(X)),
        # the loader's worker seed comes from its own generator, not from the global one
        iterator_train__generator=torch.Generator(),
        device=parameter.device if parameter is not None else "cpu",
        verbose=verbose,
    )
    net.fit(X, y)
    return net.module_.eval()
