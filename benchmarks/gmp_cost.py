"""Cost of one GMP update as a share of a training epoch.

A GMP update recomputes the masks from the weights' magnitudes (layer-wise, global, or
channel groups traced with Torch-Pruning) and applies them; it runs once per pruning epoch.
The epoch is NFT steps of the small CNN of ``_workload.py`` at batch 256 over ``--samples``
inputs (the same engine as fit). Times are medians of interleaved runs; written to
benchmarks/results/gmp_cost.json.

    python benchmarks/gmp_cost.py [--samples 4096] [--repeats 10]
"""

from __future__ import annotations

import argparse
import math

import torch
from torch import nn

from _timing import interleaved_medians, write_json
from _workload import small_cnn
from fairprune.constraints import FairnessState, NaiveFineTuning
from fairprune.training import FineTuningEngine
from fairprune.pruning import MaskSet, channel_masks, magnitude_masks, prunable_layers


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--samples", type=int, default=4096)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    torch.manual_seed(0)
    model = small_cnn()
    layers = prunable_layers(model, ())
    example = torch.randn(2, 1, 28, 28)
    state = FairnessState(10, 0, constrained=False)
    primal = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    masks = MaskSet(magnitude_masks(model, layers, 0.5))
    engine = FineTuningEngine(NaiveFineTuning(state, 0.02), primal, None, masks)
    x, y = torch.randn(args.batch, 1, 28, 28), torch.randint(0, 10, (args.batch,))
    groups = torch.randint(0, 10, (args.batch,))

    def step():
        out = model(x)
        engine.step(model, nn.functional.cross_entropy(out, y, reduction="none"),
                    (out.detach().argmax(1) == y).float(), groups)

    def update(kind):
        def run():
            if kind == "channel":
                found, _ = channel_masks(model, layers, 0.5, example)
            else:
                found = magnitude_masks(model, layers, 0.9, kind)
            MaskSet(found).apply_(model)
        return run

    variants = {"step": step, **{k: update(k) for k in ("layerwise", "global", "channel")}}
    t = interleaved_medians(variants, args.repeats)
    epoch = t["step"] * math.ceil(args.samples / args.batch)
    rows = []
    print(f"epoch of {args.samples} samples at batch {args.batch}: {epoch * 1e3:.0f} ms")
    for kind in ("layerwise", "global", "channel"):
        share = t[kind] / (epoch + t[kind])
        rows.append({"pruning": kind, "update_ms": 1e3 * t[kind], "share_of_epoch": share})
        print(f"{kind:>9} update {1e3 * t[kind]:7.2f} ms = {100 * share:5.2f}% of a GMP epoch")
    path = write_json("gmp_cost.json", {"samples": args.samples, "batch": args.batch,
                                        "epoch_ms": 1e3 * epoch, "rows": rows})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
