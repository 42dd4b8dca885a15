"""Shared fixtures: real data (bundled digits, UCI Adult when ../shared/data is present),
a trained dense MLP, and a device fixture that skips CUDA when absent."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import matplotlib
import numpy as np
import pytest
import torch
from hypothesis import settings

from fairprune.datasets.models import make_mlp, train_classifier

matplotlib.use("Agg")

# Property tests: a fixed, derandomised profile by default (CI and `make test` see the same
# examples on every run, so a green run stays green); HYPOTHESIS_PROFILE=explore draws new
# examples (and more of them) for local bug hunting.
settings.register_profile("ci", derandomize=True, print_blob=True)
settings.register_profile("explore", max_examples=500, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def train_dense_mlp(X: np.ndarray, y: np.ndarray, hidden=(128, 128), epochs=30, seed=0):
    """A dense MLP trained with Adam: the 'trained dense model' users bring."""
    torch.manual_seed(seed)
    model = make_mlp(X.shape[1], int(y.max()) + 1, hidden)
    return train_classifier(model, X, y, epochs=epochs)


@pytest.fixture(scope="session")
def digits():
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    return (X / 16.0).astype(np.float32), y.astype(np.int64)


@pytest.fixture(scope="session")
def digits_dense(digits):
    X, y = digits
    return train_dense_mlp(X, y)


@pytest.fixture(scope="session")
def adult_path():
    path = SHARED_DATA / "adult" / "adult.data"
    if not path.exists():
        pytest.skip(f"UCI Adult not found at {path} (../shared/data is absent in user clones)")
    return path


@pytest.fixture(params=["cpu", "cuda"])
def device(request):
    if request.param == "cuda" and not torch.cuda.is_available():
        pytest.skip("CUDA is not available")
    return request.param


def pytest_configure(config):
    os.environ.setdefault("MPLBACKEND", "Agg")
    # decoded-data caches go to a fresh folder, never the user's cache (subprocesses inherit)
    os.environ["FAIRPRUNE_DATA"] = tempfile.mkdtemp(prefix="fairprune-test-data-")
