"""Small dense reference models and a plain training loop, for examples, tests and notebooks.

fairprune prunes a model *you* trained; these helpers give a quick, seeded dense baseline when
you only want to try the library.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

__all__ = ["make_digits_cnn", "make_image_cnn", "make_mlp", "train_classifier"]


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


def train_classifier(
    module: nn.Module,
    X: np.ndarray,
    y: np.ndarray,
    *,
    epochs: int = 30,
    lr: float = 1e-3,
    batch_size: int = 64,
    seed: int | None = None,
) -> nn.Module:
    """Train ``module`` with Adam and cross-entropy; return it in eval mode.

    ``seed`` reseeds torch's global RNG before training (shuffles); ``None`` leaves it as it
    is, so ``torch.manual_seed(s); train_classifier(make_mlp(...), X, y)`` seeds the
    initialisation and the shuffles together.
    """
    if seed is not None:
        torch.manual_seed(seed)
    optimizer = torch.optim.Adam(module.parameters(), lr=lr)
    Xt = torch.as_tensor(np.asarray(X, dtype=np.float32))
    yt = torch.as_tensor(np.asarray(y, dtype=np.int64))
    module.train()
    for _ in range(epochs):
        perm = torch.randperm(len(Xt))
        for i in range(0, len(Xt), batch_size):
            idx = perm[i : i + batch_size]
            optimizer.zero_grad()
            nn.functional.cross_entropy(module(Xt[idx]), yt[idx]).backward()
            optimizer.step()
    return module.eval()
