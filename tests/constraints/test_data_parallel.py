"""Two data-parallel processes (gloo, CPU) take the same dual step from combined statistics.

Each process trains a DDP-wrapped model on its own shard of every batch, as skorch's
AccelerateMixin or a hand-written DDP loop would. The multipliers must stay identical on both
processes (they do not when the statistics are left uncombined: the control run), and the dense
reference built from two shards must equal the one built from the whole data.
"""

from __future__ import annotations

import os
from unittest import mock

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from fairprune.constraints import (
    CEAGProblem,
    EqualizedLossProblem,
    FairnessState,
)
from fairprune.training import FineTuningEngine, make_dual_optimizer
from fairprune.constraints import distributed as fp_dist

N_GROUPS, N_FEATURES, N_CLASSES, N_SAMPLES, BATCH = 4, 6, 3, 256, 32

pytestmark = pytest.mark.skipif(not dist.is_gloo_available(), reason="gloo backend missing")


def make_data():
    gen = torch.Generator().manual_seed(0)
    X = torch.randn(N_SAMPLES, N_FEATURES, generator=gen)
    groups = torch.randint(0, N_GROUPS, (N_SAMPLES,), generator=gen)
    y = (X[:, 0] > 0).long() + (groups == 3).long()  # group 3 is harder
    return X, y, groups


def make_model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(N_FEATURES, 16), nn.ReLU(), nn.Linear(16, N_CLASSES))


def run_rank(rank: int, world: int, init_file: str, out_dir: str, method: str, buffer: int,
             combine: bool):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank,
                            world_size=world)
    torch.set_num_threads(1)
    try:
        X, y, groups = make_data()
        dense = make_model()
        criterion = nn.CrossEntropyLoss(reduction="none")
        shard = slice(rank, None, world)  # this process's share of the data
        state = FairnessState(N_GROUPS, buffer_size=buffer, constrained=True)
        with torch.no_grad():
            logits = dense(X[shard])
            state.reference.fill(criterion(logits, y[shard]),
                                 (logits.argmax(1) == y[shard]).float(), groups[shard])
        model = nn.parallel.DistributedDataParallel(make_model())
        optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
        problem = (CEAGProblem(state, tolerance=0.0) if method == "ceag"
                   else EqualizedLossProblem(state, 0.0))
        engine = FineTuningEngine(problem, optimizer,
                                  make_dual_optimizer("sgd", state.multiplier.parameters(), 0.5),
                                  max_multiplier_sum=None)
        patch = (mock.patch.object(fp_dist, "world_size", return_value=1) if not combine
                 else mock.patch.object(fp_dist, "world_size", wraps=fp_dist.world_size))
        with patch:
            for step in range(12):
                batch = slice(step * BATCH % N_SAMPLES, step * BATCH % N_SAMPLES + BATCH)
                index = torch.arange(N_SAMPLES)[batch][rank::world]  # sharded batch
                out = model(X[index])
                engine.step(model, criterion(out, y[index]),
                            (out.detach().argmax(1) == y[index]).float(), groups[index])
        torch.save({
            "multipliers": state.multiplier_values().clone(),
            "reference": {k: v.clone() for k, v in state.reference.state_dict().items()},
            "weights": [p.detach().clone() for p in model.parameters()],
        }, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.barrier()  # both ranks done before teardown
        dist.destroy_process_group()
    # gloo's threads can abort the interpreter's own shutdown now and then ("terminate called
    # without an active exception", SIGABRT after the work is done): leave without it
    os._exit(0)


def spawn(tmp_path, method, buffer, combine):
    out = tmp_path / "out"
    out.mkdir()
    mp.spawn(run_rank, args=(2, str(tmp_path / "init"), str(out), method, buffer, combine),
             nprocs=2, join=True)
    return [torch.load(out / f"rank{r}.pt") for r in range(2)]


def full_data_reference():
    X, y, groups = make_data()
    state = FairnessState(N_GROUPS, 0, constrained=True)
    with torch.no_grad():
        logits = make_model()(X)
        state.reference.fill(nn.functional.cross_entropy(logits, y, reduction="none"),
                             (logits.argmax(1) == y).float(), groups)
    return state.reference.state_dict()


@pytest.mark.parametrize("method, buffer", [("ceag", 8), ("equalized_loss", 0)],
                         ids=["ceag-buffers", "el-batch-estimates"])
def test_processes_take_the_same_dual_step(tmp_path, method, buffer):
    rank0, rank1 = spawn(tmp_path, method, buffer, combine=True)
    assert torch.equal(rank0["multipliers"], rank1["multipliers"])
    assert rank0["multipliers"].abs().sum() > 0  # the constraints were active
    for w0, w1 in zip(rank0["weights"], rank1["weights"]):
        torch.testing.assert_close(w0, w1)  # DDP kept the models in step
    expected = full_data_reference()
    for name, value in expected.items():
        torch.testing.assert_close(rank0["reference"][name], value)
        torch.testing.assert_close(rank1["reference"][name], value)


def test_uncombined_statistics_let_the_multipliers_drift_apart(tmp_path):
    """Control: the check above can fail."""
    rank0, rank1 = spawn(tmp_path, "ceag", 8, combine=False)
    assert not torch.equal(rank0["multipliers"], rank1["multipliers"])
