"""CPU forward time of resnet18 (10 classes): dense against channel-pruned and exported.

50% of the output channels of every coupled group are removed (first conv and classifier
dense), the masked model is exported with physical removal (Torch-Pruning), outputs are
checked equal, and both forward passes are timed interleaved in one run (batch 32, 3x64x64).
Writes benchmarks/results/channel_export_speed.json.

    python benchmarks/channel_export_speed.py [--fraction 0.5] [--repeats 20]
"""

from __future__ import annotations

import argparse

import torch
import torchvision

from _timing import interleaved_medians, write_json
from fairprune.pruning import MaskSet, channel_masks, export_module, prunable_layers


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--fraction", type=float, default=0.5)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    torch.manual_seed(0)
    dense = torchvision.models.resnet18(weights=None, num_classes=10).eval()
    x = torch.randn(32, 3, 64, 64)
    masked = torchvision.models.resnet18(weights=None, num_classes=10).eval()
    masked.load_state_dict(dense.state_dict())
    masks, plan = channel_masks(masked, prunable_layers(masked), args.fraction, x[:2])
    mask_set = MaskSet(masks, plan, tuple(x.shape[1:]))
    mask_set.apply_(masked)
    exported = export_module(masked, mask_set).eval()
    with torch.no_grad():
        assert torch.allclose(masked(x), exported(x), atol=1e-4)
        t = interleaved_medians({"dense": lambda: dense(x), "exported": lambda: exported(x)},
                                args.repeats)
    n_dense = sum(p.numel() for p in dense.parameters())
    n_exported = sum(p.numel() for p in exported.parameters())
    ratio = t["dense"] / t["exported"]
    print(f"resnet18, {args.fraction:.0%} channels removed: parameters {n_dense:,} -> {n_exported:,}")
    print(f"forward (batch 32, 3x64x64, CPU): dense {1e3 * t['dense']:.1f} ms, exported "
          f"{1e3 * t['exported']:.1f} ms, speed-up dense/exported = {ratio:.2f}x")
    write_json("channel_export_speed.json", {"fraction": args.fraction, "params_dense": n_dense,
                                             "params_exported": n_exported,
                                             "dense_ms": 1e3 * t["dense"],
                                             "exported_ms": 1e3 * t["exported"],
                                             "speedup": ratio})


if __name__ == "__main__":
    main()
