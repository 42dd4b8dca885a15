"""The training step never waits for the device: no host synchronisation per step.

On a GPU, reading a value on the host (``.item()``, ``bool(t)``, ``.tolist()``), and ops whose
output size depends on values (``nonzero``, boolean-mask indexing, ``bincount``, ``unique``)
stall the pipeline. On CPU, :class:`SyncCounter` intercepts every torch call of a block with a
``TorchFunctionMode`` and records those that would synchronise; :func:`forbid_host_sync` (used
by the engine and estimator tests elsewhere) fails a block that makes any. With CUDA, the
estimator's step also runs under ``torch.cuda.set_sync_debug_mode("error")``
(``test_training_options``).
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

import fairprune.training.engine as engine_module
from support import SyncCounter, forbid_host_sync
from fairprune.constraints import CEAGProblem, EqualizedLossProblem, FairnessState, NaiveFineTuning
from fairprune.pruning import MaskSet, magnitude_masks, prunable_layers
from fairprune.training import FineTuningEngine, make_dual_optimizer

def test_the_counter_sees_what_syncs():
    x = torch.arange(6.0)
    with SyncCounter() as counter:
        x.sum().item()
        bool(x.max() > 2)
        x[x > 2]
        torch.bincount(x.long())
        x.nonzero()
    assert counter.calls == ["item", "__bool__", "__getitem__[bool mask]", "bincount", "nonzero"]


def make_engine(method: str, num_groups: int, buffer_size: int = 40):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 3))
    masks = MaskSet(magnitude_masks(model, prunable_layers(model), 0.5))
    constrained = method != "nft"
    state = FairnessState(num_groups, buffer_size if constrained else 0, constrained)
    state.reference.fill(torch.rand(64), (torch.rand(64) > 0.2).float(),
                         torch.randint(0, num_groups, (64,)))
    problems = {"nft": NaiveFineTuning, "ceag": CEAGProblem, "el": EqualizedLossProblem}
    problem = problems[method](state, 0.01)
    dual = make_dual_optimizer("sgd", state.multiplier.parameters(), 0.1) if constrained else None
    primal = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    return model, FineTuningEngine(problem, primal, dual, masks, max_multiplier_sum=None)


def run_steps(model, engine, steps=3, num_groups=5):
    for _ in range(steps):
        x, y = torch.randn(32, 8), torch.randint(0, 3, (32,))
        group_ids = torch.randint(0, num_groups, (32,))
        logits = model(x)
        loss = nn.functional.cross_entropy(logits, y, reduction="none")
        correct = (logits.detach().argmax(1) == y).float()
        engine.step(model, loss, correct, group_ids)


@pytest.fixture
def no_cpu_id_check(monkeypatch):
    """The group-id range check reads values and runs on CPU tensors only (on a GPU it is
    skipped for this reason); take it out so the count covers what a GPU step runs."""
    monkeypatch.setattr(engine_module, "check_group_ids", lambda *args: None)


@pytest.mark.parametrize("method, buffer_size, max_sum", [
    ("nft", 0, None), ("ceag", 4, None), ("ceag", 0, None), ("el", 4, None), ("el", 0, None),
    ("ceag", 4, 1.0),
])
def test_engine_step_has_no_host_sync(method, buffer_size, max_sum, no_cpu_id_check):
    model, engine = make_engine(method, 5, buffer_size)
    engine.max_multiplier_sum = max_sum
    run_steps(model, engine, steps=2)  # warm up: lazily created optimizer state
    with forbid_host_sync():
        run_steps(model, engine)
    if method != "nft":  # and the step did update the multipliers
        assert engine.problem.state.multiplier_values().abs().sum() > 0


@pytest.mark.parametrize("layout", ["cells", "marginal"])
def test_cell_and_marginal_steps_have_no_host_sync(layout, no_cpu_id_check):
    """The statistics of gap_metric cells (families) and of marginal groups (a row in one
    group per attribute) stay on the device too."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))
    masks = MaskSet(magnitude_masks(model, ["0", "2"], 0.5))
    families = torch.tensor([0, 0, 1, 1, 2]) if layout == "cells" else None
    state = FairnessState(5, 4, True, families=families)
    state.reference.fill(torch.rand(64), (torch.rand(64) > 0.2).float(),
                         torch.randint(0, 5, (64,)))
    dual = make_dual_optimizer("sgd", state.multiplier.parameters(), 0.1)
    primal = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    engine = FineTuningEngine(CEAGProblem(state, 0.01), primal, dual, masks)

    def steps(count):
        for _ in range(count):
            x, y = torch.randn(32, 8), torch.randint(0, 3, (32,))
            ids = (torch.randint(0, 5, (32,)) if layout == "cells" else
                   torch.stack([torch.randint(0, 2, (32,)), torch.randint(2, 5, (32,))], 1))
            logits = model(x)
            loss = nn.functional.cross_entropy(logits, y, reduction="none")
            engine.step(model, loss, (logits.detach().argmax(1) == y).float(), ids)

    steps(2)
    with forbid_host_sync():
        steps(3)
    assert state.multiplier_values().abs().sum() > 0
