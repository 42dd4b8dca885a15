"""The dense-model helpers: training through skorch, faithful to a plain Adam loop."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from fairprune.datasets.models import make_mlp, train_classifier


def adam_loop(module, X, y, epochs, lr, batch_size, cosine):
    """The reference: a hand-written mini-batch Adam loop over ``torch.randperm`` shuffles."""
    optimizer = torch.optim.Adam(module.parameters(), lr=lr)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs) if cosine else None
    Xt, yt = torch.as_tensor(X), torch.as_tensor(y)
    module.train()
    for _ in range(epochs):
        perm = torch.randperm(len(Xt))
        for i in range(0, len(Xt), batch_size):
            idx = perm[i : i + batch_size]
            optimizer.zero_grad()
            nn.functional.cross_entropy(module(Xt[idx]), yt[idx]).backward()
            optimizer.step()
        if scheduler is not None:
            scheduler.step()
    return module.eval()


@pytest.mark.parametrize("schedule", ["constant", "cosine"])
def test_train_classifier_equals_a_plain_adam_loop(schedule):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((300, 8)).astype(np.float32)
    y = rng.integers(0, 3, 300)
    torch.manual_seed(3)
    trained = train_classifier(make_mlp(8, 3), X, y, epochs=4, batch_size=64, lr_schedule=schedule)
    after_skorch = torch.rand(3)
    torch.manual_seed(3)
    reference = adam_loop(make_mlp(8, 3), X, y, 4, 1e-3, 64, schedule == "cosine")
    after_loop = torch.rand(3)
    assert not trained.training
    for (name, a), b in zip(trained.state_dict().items(), reference.state_dict().values()):
        assert torch.equal(a, b), name
    # the same draws from the global generator: seeding still fixes what comes next
    assert torch.equal(after_skorch, after_loop)
    # and it trained: the weights moved away from the initialisation
    torch.manual_seed(3)
    assert not torch.equal(make_mlp(8, 3)[0].weight, trained[0].weight)


def test_train_classifier_prints_skorchs_table_when_verbose(capsys):
    X = np.random.default_rng(1).standard_normal((40, 4)).astype(np.float32)
    y = np.arange(40) % 2
    train_classifier(make_mlp(4, 2, hidden=(8,)), X, y, epochs=2, verbose=1)
    out = capsys.readouterr().out
    assert "train_loss" in out and "epoch" in out
    train_classifier(make_mlp(4, 2, hidden=(8,)), X, y, epochs=2)
    assert capsys.readouterr().out == ""


def test_train_classifier_rejects_unknown_schedule():
    with pytest.raises(ValueError, match="lr_schedule"):
        train_classifier(make_mlp(4, 2), np.zeros((4, 4), np.float32), np.array([0, 1, 0, 1]),
                         lr_schedule="step")
