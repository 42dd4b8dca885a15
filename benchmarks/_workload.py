"""The benchmarks' shared workload: a small CNN on 1x28x28 inputs and seeded synthetic data.

Inputs are random tensors: the cost of a training step does not depend on pixel values.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


def small_cnn(n_classes: int = 10) -> nn.Module:
    """2 conv + 2 linear layers (about 0.2M weights)."""
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
        nn.Linear(32 * 7 * 7, 128), nn.ReLU(), nn.Linear(128, n_classes),
    )


def synthetic_data(n_samples: int, n_groups: int, n_classes: int = 10, seed: int = 0):
    """``X`` (float32, n x 1 x 28 x 28), class indices ``y`` and group ids, as numpy arrays."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n_samples, 1, 28, 28), dtype=np.float32)
    y = rng.integers(0, n_classes, n_samples)
    groups = rng.integers(0, n_groups, n_samples)
    return X, y, groups
