"""Why CEAG did not move on the Adult demo when every layer was pruned, on training data.

The Adult demo's setting (``make demo DATA=<adult.data>``): UCI Adult, income target,
race x sex groups (10), the demo's 80% training split, its dense MLP (128-128, 10 epochs),
99% sparsity, 3 GMP + 12 fine-tuning epochs, eps = 0.01, first with every layer pruned
(``dense_layers=()``, as the demo once did), then with the first and last layers kept dense
(the paper's convention and the demo's setting now). The GMP phase is shared by the runs of
one setting (``memory``).

Every run reports, on the training rows, the final model's accuracy, max psi_g, the group with
the largest psi_g and its share of the rows, the sum of the multipliers and that group's
multiplier, and the share of rows predicted positive. The runs:

* NFT and CEAG with the automatic dual step (the demo);
* CEAG with 10x and 100x the dual step (a larger step alone);
* CEAG at 10x with ``max_multiplier_sum=1`` (the Lagrangian's overall-loss weight kept >= 0);
* CEAG with 4x the fine-tuning epochs (too short a schedule?);
* the reweighting bound: NFT on the training rows with the violating group's rows repeated
  w times, w in {2, 4, 10} (in expectation, a loss that weighs them w times the others). A
  multiplier lambda <= 1 on one group weighs its rows by at most 1 / share of the rows (at
  lambda = 1 the Lagrangian trains on that group alone); past 1 the Lagrangian gives every
  other group a negative weight. So if no weight brings the group's psi_g to eps, the
  constraint is out of this sparse model's reach with a positive-weight Lagrangian;
* CEAG at 95% and 90% sparsity (does capacity make eps reachable?);
* NFT and CEAG (automatic and 10x dual step) at 99% with the first and last layers dense.

    python experiments/adult_probe.py           # about 10 minutes on 2 cores
    python experiments/adult_probe.py --quick   # smoke form: a subset, tiny schedules

Writes docs/results/adult_probe.{md,json} (``--out`` elsewhere).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from sklearn.model_selection import train_test_split

ROOT = Path(__file__).resolve().parents[1]

from fairprune import FairPrunedClassifier  # noqa: E402
from fairprune.datasets import adult_preprocessor, load_adult  # noqa: E402
from fairprune.datasets.models import make_mlp, train_classifier  # noqa: E402

ADULT = ROOT.parent / "shared" / "data" / "adult" / "adult.data"
SETTING = dict(sparsity=0.99, tolerance=0.01, dense_layers=(), pruning_epochs=3,
               max_epochs=12, lr=0.05, batch_size=256)


def load_demo_split(seed: int, quick: bool):
    """The demo's Adult data and 80% / 20% split (same stratification and seed)."""
    X, y, frame = load_adult(ADULT)
    X = adult_preprocessor().fit_transform(X)
    groups = (frame["race"] + " / " + frame["sex"]).to_numpy()
    if quick:
        keep = np.random.default_rng(0).choice(len(y), 3000, replace=False)
        X, y, groups = X[keep], y[keep], groups[keep]
    strata = pd.Series(groups).astype(str) + "|" + pd.Series(y).astype(str)
    stratify = strata if strata.value_counts().min() >= 2 else pd.Series(y)
    X, _, y, _, groups, _ = train_test_split(X, y, groups, test_size=0.2, stratify=stratify,
                                             random_state=seed)
    return X.astype(np.float32), y, groups


def summarize(clf, X, y, groups) -> dict:
    """Training-data figures of a fitted run."""
    report = clf.disparity_report(X, y, groups=groups)
    worst = report.loc[report["excess_accuracy_gap"].idxmax()]
    multipliers = clf.multipliers_
    predicted = clf.predict(X)
    return {
        "accuracy": float(report.attrs["sparse_accuracy"]),
        "max_psi": float(report.attrs["max_excess_accuracy_gap"]),
        "worst_group": str(worst["group"]),
        "worst_share": float(worst["n"] / len(y)),
        "worst_gap": float(worst["accuracy_gap"]),
        "overall_gap": float(report.attrs["dense_accuracy"] - report.attrs["sparse_accuracy"]),
        "multiplier_sum": float(multipliers.sum()),
        "worst_multiplier": float(multipliers.get(worst["group"], 0.0)),
        "positive_share": float((predicted == 1).mean()),
        "n_over_eps": int(report.attrs["n_violating"]),
    }


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "results")
    args = parser.parse_args(argv)
    if not ADULT.exists():
        raise SystemExit(f"adult.data not found at {ADULT}")
    X, y, groups = load_demo_split(args.seed, args.quick)
    setting = dict(SETTING)
    dense_epochs = 10
    if args.quick:
        setting.update(pruning_epochs=1, max_epochs=2)
        dense_epochs = 2
    torch.manual_seed(args.seed)
    dense = train_classifier(make_mlp(X.shape[1], 2), X, y, epochs=dense_epochs)
    rows = []
    with tempfile.TemporaryDirectory() as memory, warnings.catch_warnings():
        warnings.simplefilter("ignore")

        def run(name, repeat=None, **params):
            start = time.perf_counter()
            clf = FairPrunedClassifier(dense, random_state=args.seed, verbose=0,
                                       memory=None if repeat else memory,
                                       **{**setting, **params})
            rows_fit = np.arange(len(y))
            if repeat:  # the group's rows `weight` times
                group, weight = repeat
                extra = np.flatnonzero(groups == group)
                rows_fit = np.concatenate([rows_fit] + [extra] * (int(weight) - 1))
            clf.fit(X[rows_fit], y[rows_fit], groups=groups[rows_fit])
            row = {"run": name, **summarize(clf, X, y, groups),
                   "dense_accuracy": float(clf.train_report_.attrs["dense_accuracy"]),
                   "majority_rate": float(np.bincount(y).max() / len(y)),
                   "sparsity_of_all_weights": float(np.mean(np.concatenate([
                       (p.detach().cpu().numpy() == 0).ravel() for n, p in
                       clf.module_.named_parameters() if n.endswith("weight")]))),
                   "dual_lr": float(getattr(clf, "dual_lr_", 0.0)),
                   "fit_status": clf.fit_status_, "seconds": time.perf_counter() - start}
            rows.append(row)
            print(f"{name:<38} acc {row['accuracy']:.4f}  max psi {row['max_psi']:.4f} "
                  f"({row['worst_group']}, {row['worst_share']:.0%})  sum lambda "
                  f"{row['multiplier_sum']:.3f}  positive {row['positive_share']:.3f}  "
                  f"{row['seconds']:.0f}s", flush=True)
            return clf

        run("NFT", method="nft")
        ceag = run("CEAG, automatic dual step", method="ceag")
        auto = ceag.dual_lr_
        run("CEAG, 10x dual step", method="ceag", dual_lr=10 * auto)
        run("CEAG, 100x dual step", method="ceag", dual_lr=100 * auto)
        run("CEAG, 10x, max_multiplier_sum=1", method="ceag", dual_lr=10 * auto,
            max_multiplier_sum=1.0)
        run("CEAG, 4x fine-tuning epochs", method="ceag",
            max_epochs=4 * setting["max_epochs"])
        worst = rows[0]["worst_group"]
        for weight in (2, 4, 10):
            run(f"NFT, {worst} rows weighted {weight}x", repeat=(worst, weight), method="nft")
        for sparsity in (0.95, 0.9):
            run(f"NFT at {sparsity:.0%} sparsity", method="nft", sparsity=sparsity)
            run(f"CEAG at {sparsity:.0%} sparsity", method="ceag", sparsity=sparsity)
        kept = dict(dense_layers=("first", "last"))
        run("NFT, first & last layers dense", method="nft", **kept)
        paper = run("CEAG, first & last layers dense", method="ceag", **kept)
        run("CEAG, first & last dense, 10x dual step", method="ceag",
            dual_lr=10 * paper.dual_lr_, **kept)
    result = {"setting": {**setting, "dense_epochs": dense_epochs, "seed": args.seed,
                          "quick": args.quick, "rows": int(len(y))}, "runs": rows}
    args.out.mkdir(parents=True, exist_ok=True)
    suffix = "_quick" if args.quick else ""
    (args.out / f"adult_probe{suffix}.json").write_text(json.dumps(result, indent=2))
    table = pd.DataFrame(rows)[["run", "accuracy", "max_psi", "worst_group", "worst_share",
                                "multiplier_sum", "worst_multiplier", "positive_share",
                                "sparsity_of_all_weights", "fit_status"]]
    (args.out / f"adult_probe{suffix}.md").write_text(
        "Training data of the Adult demo's setting (majority-class rate "
        f"{rows[0]['majority_rate']:.4f}, dense accuracy {rows[0]['dense_accuracy']:.4f}); "
        f"command: `python experiments/adult_probe.py{' --quick' if args.quick else ''}`.\n\n"
        + table.to_markdown(index=False, floatfmt=".4f") + "\n")
    return result


if __name__ == "__main__":
    main()
