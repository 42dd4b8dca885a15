"""fairprune demo (`make demo`): prune a real model on real data, NFT against CEAG.

Default data: scikit-learn's bundled digits, every class a group. A dense 64-128-128-10 MLP
is trained (seeded, a few seconds), then pruned to 98% sparsity in every layer with gradual
magnitude pruning and fine-tuned two ways: naive fine-tuning (NFT) and constrained excess
accuracy gaps (CEAG, ε = 2 accuracy points). Both disparity reports are printed side by side
and `demo_disparity.png` shows ψ_g per group for both methods with the ε line.

    python examples/demo.py [--data path/to/adult.data] [--seed 0] [--out demo_disparity.png]
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from fairprune import FairPrunedClassifier, FairnessToleranceWarning, plot_disparity
from fairprune.datasets import load_adult, load_digits_groups
from fairprune.models import make_mlp, train_classifier


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", help="path to UCI adult.data (groups: race x sex)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="demo_disparity.png")
    args = parser.parse_args()

    if args.data:
        X, y, frame = load_adult(args.data)
        groups = (frame["race"] + " / " + frame["sex"]).to_numpy()
        setting = dict(sparsity=0.95, tolerance=0.02, dense_layers=(), pruning_epochs=3,
                       max_epochs=10, lr=0.05, batch_size=256)
        name = f"UCI Adult ({len(y)} rows), race x sex groups"
    else:
        X, y, frame = load_digits_groups()
        groups = frame["digit"].to_numpy()
        setting = dict(sparsity=0.98, tolerance=0.02, dense_layers=(), pruning_epochs=10,
                       max_epochs=50, lr=0.1)
        name = "scikit-learn digits (1797 images), classes as groups"

    print(f"Data: {name}")
    start = time.perf_counter()
    torch.manual_seed(args.seed)
    dense = train_classifier(make_mlp(X.shape[1], int(y.max()) + 1), X, y)
    dense_acc = float((dense(torch.as_tensor(X)).argmax(1).numpy() == y).mean())
    print(f"Dense MLP trained in {time.perf_counter() - start:.1f}s, training accuracy {dense_acc:.3f}")

    reports = {}
    for method in ("nft", "ceag"):
        start = time.perf_counter()
        clf = FairPrunedClassifier(dense, method=method, random_state=args.seed, verbose=0,
                                   **setting)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FairnessToleranceWarning)
            clf.fit(X, y, groups=groups)
        reports[method.upper()] = clf.disparity_report(X, y, groups=groups)
        rep = reports[method.upper()]
        print(f"{method.upper():>4}: {time.perf_counter() - start:5.1f}s  sparsity {clf.sparsity_:.3f}  "
              f"accuracy {rep.attrs['sparse_accuracy']:.3f}  max psi_g {rep.attrs['max_excess_accuracy_gap']:.3f}  "
              f"Psi_PW {rep.attrs['pairwise_disparity']:.3f}  groups over eps {rep.attrs['n_violating']}")

    table = pd.concat(
        {m: r.set_index("group")[["n", "sparse_accuracy", "accuracy_gap", "excess_accuracy_gap", "violates"]]
         for m, r in reports.items()}, axis=1)
    dense_col = reports["NFT"].set_index("group")["dense_accuracy"].rename(("", "dense_accuracy"))
    table.insert(0, ("", "dense_accuracy"), dense_col)
    with pd.option_context("display.width", 160, "display.max_columns", 20, "display.precision", 3):
        print(f"\nDisparity on the training data (tolerance eps = {setting['tolerance']}):")
        print(table)
    ax = plot_disparity(reports, top_k=30)
    ax.set_title(f"Excess accuracy gap per group at {setting['sparsity']:.0%} sparsity")
    ax.figure.tight_layout()
    ax.figure.savefig(args.out, dpi=120)
    print(f"\nSaved {Path(args.out).resolve()}")


if __name__ == "__main__":
    main()
