"""Cost of the estimator: ``FairPrunedClassifier.fit`` against a hand-written PyTorch loop.

Both do the same work on the same data (the small CNN of ``_workload.py``, synthetic
1x28x28 inputs, 10 groups, batch 256, shuffled): the dense model's per-group reference, GMP
epochs (cubic schedule, masks recomputed each epoch), CEAG epochs with replay buffers, one
per-epoch diagnostic of the excess accuracy gaps, and a final pass of the dense and sparse
models over the training data (the estimator's ``train_report_``). The hand loop uses
fairprune's constraint and pruning primitives directly, so the ratio is the price of skorch
and the estimator. Runs alternate; medians are reported and written to
benchmarks/results/fit_vs_hand_loop.json.

    python benchmarks/fit_vs_hand_loop.py [--samples 4096] [--repeats 3]
"""

from __future__ import annotations

import argparse
import copy
import math
import statistics
import time

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from _timing import write_json
from _workload import small_cnn, synthetic_data
from fairprune import FairPrunedClassifier
from fairprune.constraints import (
    CEAGProblem,
    FairnessState,
    NaiveFineTuning,
)
from fairprune.training import FineTuningEngine, make_dual_optimizer
from fairprune.pruning import MaskSet, cubic_sparsity, magnitude_masks, prunable_layers

SETTING = dict(sparsity=0.9, tolerance=0.02, pruning_epochs=2, max_epochs=2, batch_size=256,
               lr=0.01)


def hand_loop(dense: nn.Module, X, y, groups, n_groups: int) -> nn.Module:
    s = SETTING
    data = TensorDataset(torch.as_tensor(X), torch.as_tensor(y), torch.as_tensor(groups))
    model = copy.deepcopy(dense)
    reference = copy.deepcopy(dense).eval()
    state = FairnessState(n_groups, 40, constrained=True)
    with torch.no_grad():
        pieces = [(nn.functional.cross_entropy(out := reference(xb), yb, reduction="none"),
                   (out.argmax(1) == yb).float(), gb)
                  for xb, yb, gb in DataLoader(data, batch_size=s["batch_size"])]
        state.reference.fill(*(torch.cat(p) for p in zip(*pieces)))
    primal = torch.optim.SGD(model.parameters(), lr=s["lr"], momentum=0.9, weight_decay=1e-4)
    steps = math.ceil(len(data) / s["batch_size"])
    dual = make_dual_optimizer("sgd", state.multiplier.parameters(), 4 / (n_groups * steps))
    layers = prunable_layers(model, ())
    loader = DataLoader(data, batch_size=s["batch_size"], shuffle=True)
    masks = None
    for epoch in range(s["pruning_epochs"] + s["max_epochs"]):
        torch.manual_seed(epoch)
        gmp = epoch < s["pruning_epochs"]
        if gmp:
            target = cubic_sparsity(epoch, s["sparsity"], end_step=s["pruning_epochs"] - 1)
            masks = MaskSet(magnitude_masks(model, layers, target))
            masks.apply_(model)
        problem = (NaiveFineTuning if gmp else CEAGProblem)(state, s["tolerance"])
        engine = FineTuningEngine(problem, primal, None if gmp else dual, masks)
        state.reset_epoch()
        model.train()
        for xb, yb, gb in loader:
            out = model(xb)
            engine.step(model, nn.functional.cross_entropy(out, yb, reduction="none"),
                        (out.detach().argmax(1) == yb).float(), gb)
        state.epoch_excess_gaps().cpu()  # the per-epoch diagnostic
    model.eval()
    with torch.no_grad():  # final per-group report: dense and sparse predictions
        for xb, _, _ in DataLoader(data, batch_size=s["batch_size"]):
            reference(xb).argmax(1), model(xb).argmax(1)
    return model


def estimator_fit(dense: nn.Module, X, y, groups) -> FairPrunedClassifier:
    return FairPrunedClassifier(dense, dense_layers=(), lr_milestones=None, verbose=0,
                                **SETTING).fit(X, y, groups=groups)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--samples", type=int, default=4096)
    parser.add_argument("--groups", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    X, y, groups = synthetic_data(args.samples, args.groups)
    torch.manual_seed(0)
    dense = small_cnn()
    import warnings

    warnings.simplefilter("ignore")  # random labels: the tolerance is not the point here
    times = {"fit": [], "hand_loop": []}
    estimator_fit(dense, X[:512], y[:512], groups[:512])  # warm-up
    for _ in range(args.repeats):
        start = time.perf_counter()
        hand_loop(dense, X, y, groups, args.groups)
        times["hand_loop"].append(time.perf_counter() - start)
        start = time.perf_counter()
        estimator_fit(dense, X, y, groups)
        times["fit"].append(time.perf_counter() - start)
    fit_s, loop_s = (statistics.median(times[k]) for k in ("fit", "hand_loop"))
    epochs = SETTING["pruning_epochs"] + SETTING["max_epochs"]
    print(f"{args.samples} samples, {epochs} epochs, batch {SETTING['batch_size']}, "
          f"{torch.get_num_threads()} threads, medians of {args.repeats}")
    print(f"hand loop {loop_s:.2f} s, fit {fit_s:.2f} s, fit / hand loop {fit_s / loop_s:.3f}")
    path = write_json("fit_vs_hand_loop.json", {
        "samples": args.samples, "groups": args.groups, "epochs": epochs, **SETTING,
        "hand_loop_s": loop_s, "fit_s": fit_s, "fit_over_hand_loop": fit_s / loop_s,
        "all_times_s": times,
    })
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
