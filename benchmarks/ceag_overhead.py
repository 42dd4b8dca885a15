"""Per-step cost of the constrained methods over naive fine-tuning (NFT).

A small CNN (2 conv + 2 linear layers, 90% unstructured masks) on 1x28x28 inputs, batch 256,
CPU. For each number of groups, one training step (forward, per-sample loss, the method's
updates, masks) of NFT, CEAG (replay buffers of 40) and EL+RB is timed, interleaved round-robin
in one run.

The constraints' cost (~1 ms) is smaller than the step-to-step jitter of a shared 2-core
machine (several ms), so the ratio is computed from two measurements taken side by side:
the methods' own cost per step, measured precisely on a probe model whose step costs next to
nothing (same batch, groups, buffers), and the small CNN's NFT step. Ratio =
1 + (CEAG − NFT on the probe) / (NFT on the CNN). The direct ratio of the CNN's medians is
printed too, as a check; it wobbles by a couple of percent. Written to
benchmarks/results/ceag_overhead.json. An epoch is these steps plus one host sync for the
history, so epoch-time ratios are the same to within that sync.
Inputs are random tensors: a step's cost does not depend on pixel values.

    python benchmarks/ceag_overhead.py [--groups 10 100 1000 5000] [--repeats 60]
"""

from __future__ import annotations

import argparse
import platform

import torch
from torch import nn

import statistics

from _timing import interleaved_samples, paired_ratio, write_json
from _workload import small_cnn
from fairprune.constraints import (
    CEAGProblem,
    EqualizedLossProblem,
    FairnessState,
    NaiveFineTuning,
)
from fairprune.training import FineTuningEngine, make_dual_optimizer
from fairprune.pruning import MaskSet, magnitude_masks, prunable_layers


def probe_model() -> nn.Module:
    """A model whose step costs next to nothing: what remains is the methods' own cost."""
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 16), nn.Linear(16, 16), nn.Linear(16, 10))


def make_step(method: str, n_groups: int, batch: int, make_model=small_cnn):
    torch.manual_seed(0)
    model = make_model()
    masks = MaskSet(magnitude_masks(model, prunable_layers(model), 0.9))
    masks.apply_(model)
    constrained = method != "nft"
    state = FairnessState(n_groups, 40 if constrained else 0, constrained)
    state.reference.fill(torch.rand(4 * batch), (torch.rand(4 * batch) > 0.1).float(),
                         torch.randint(0, n_groups, (4 * batch,)))
    primal = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    if method == "nft":
        problem, dual = NaiveFineTuning(state, 0.02), None
    else:
        problem = (CEAGProblem if method == "ceag" else EqualizedLossProblem)(state, 0.02)
        dual = make_dual_optimizer("sgd", state.multiplier.parameters(), 1e-3)
    engine = FineTuningEngine(problem, primal, dual, masks, max_multiplier_sum=None)  # as fit
    x = torch.randn(batch, 1, 28, 28)
    y = torch.randint(0, 10, (batch,))
    groups = torch.randint(0, n_groups, (batch,))

    def step():
        logits = model(x)
        loss = nn.functional.cross_entropy(logits, y, reduction="none")
        correct = (logits.detach().argmax(1) == y).float()
        engine.step(model, loss, correct, groups)

    return step


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--groups", type=int, nargs="+", default=[2, 10, 100, 1000, 5000])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=100)
    args = parser.parse_args()
    torch.set_num_threads(torch.get_num_threads())
    rows = []
    print(f"CPU threads {torch.get_num_threads()}, batch {args.batch}, {args.repeats} interleaved rounds")
    print(f"{'groups':>7} {'NFT ms':>8} {'+CEAG ms':>8} {'+EL+RB ms':>9} {'CEAG/NFT':>9} "
          f"{'EL+RB/NFT':>10} {'direct':>8}")
    for n_groups in args.groups:
        methods = ("nft", "ceag", "equalized_loss")
        cnn = interleaved_samples({m: make_step(m, n_groups, args.batch) for m in methods},
                                  args.repeats)
        probe = interleaved_samples(
            {m: make_step(m, n_groups, args.batch, probe_model) for m in methods},
            4 * args.repeats)
        t = {m: statistics.median(v) for m, v in cnn.items()}
        cost = {m: paired_ratio(probe, m, "nft") - 1.0 for m in methods}
        probe_nft = statistics.median(probe["nft"])
        row = {
            "groups": n_groups,
            "nft_ms": 1e3 * t["nft"],
            "ceag_ms": 1e3 * t["ceag"],
            "el_rb_ms": 1e3 * t["equalized_loss"],
            "ceag_cost_ms": 1e3 * cost["ceag"] * probe_nft,
            "el_rb_cost_ms": 1e3 * cost["equalized_loss"] * probe_nft,
            "ceag_over_nft": 1 + cost["ceag"] * probe_nft / t["nft"],
            "el_rb_over_nft": 1 + cost["equalized_loss"] * probe_nft / t["nft"],
            "ceag_over_nft_direct": paired_ratio(cnn, "ceag", "nft"),
            "el_rb_over_nft_direct": paired_ratio(cnn, "equalized_loss", "nft"),
        }
        rows.append(row)
        print(f"{n_groups:>7} {row['nft_ms']:8.2f} {row['ceag_cost_ms']:8.2f} "
              f"{row['el_rb_cost_ms']:9.2f} {row['ceag_over_nft']:9.3f} "
              f"{row['el_rb_over_nft']:10.3f} {row['ceag_over_nft_direct']:8.3f}")
    path = write_json("ceag_overhead.json", {"machine": platform.processor() or platform.machine(),
                                             "torch": torch.__version__, "batch": args.batch,
                                             "rows": rows})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
