"""Does fairness hold on unseen data? NFT, CEAG and CEAG with held-out estimates and/or
fairness-aware epoch selection, on test data.

Settings: UCI Adult, race x sex groups (10) at 99% sparsity — a dense MLP that is *not*
overfit (about 85% training accuracy) — and UTKFace race / race at 90% (the face study's
32 px CNN, trained to near 100% training accuracy: the paper's overfit regime; 3 GMP + 6
fine-tuning epochs). Every method trains on the same 80% of the training split, with the other
20% held out (``ValidSplit(0.2, stratified)``): "CEAG + held-out" moves its multipliers with
the held-out estimates (``constraint_data="heldout"``), "CEAG + selection" keeps the most
accurate epoch whose held-out max psi_g meets eps (``epoch_selection="fair"``). eps = 0.01;
seeds 0-2 (dense model, shuffles); test data never enters a fit.

    python benchmarks/heldout_study.py          # about 15 minutes on 2 cores
    python benchmarks/heldout_study.py --quick  # smoke form: an Adult subset, tiny schedules
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from skorch.dataset import ValidSplit
from sklearn.model_selection import train_test_split

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import _tables as tables  # noqa: E402
import reproduce_faces as faces  # noqa: E402

from fairprune import FairPrunedClassifier  # noqa: E402
from fairprune.datasets import adult_preprocessor, load_adult  # noqa: E402
from fairprune.models import make_mlp, train_classifier  # noqa: E402

ADULT = ROOT.parent / "shared" / "data" / "adult" / "adult.data"
EPS = 0.01
METHODS = {
    "NFT": dict(method="nft"),
    "CEAG": dict(method="ceag"),
    "CEAG + held-out": dict(method="ceag", constraint_data="heldout"),
    "CEAG + selection": dict(method="ceag", epoch_selection="fair"),
    "CEAG + both": dict(method="ceag", constraint_data="heldout", epoch_selection="fair"),
}


def adult_setting(quick: bool = False):
    X, y, groups = load_adult(ADULT)
    if quick:
        keep = np.random.default_rng(0).choice(len(y), 3000, replace=False)
        X, y, groups = X.iloc[keep], y[keep], groups.iloc[keep]
    labels = (groups["race"] + " / " + groups["sex"]).to_numpy()
    strata = labels + "|" + y.astype(str)
    Xtr, Xte, ytr, yte, gtr, gte = train_test_split(X, y, labels, test_size=0.2,
                                                    stratify=y if quick else strata,
                                                    random_state=0)
    pre = adult_preprocessor().fit(Xtr)
    data = pre.transform(Xtr), pre.transform(Xte), ytr, yte, gtr, gte

    def dense(seed):
        torch.manual_seed(seed)
        return train_classifier(make_mlp(data[0].shape[1], 2), data[0], ytr,
                                epochs=2 if quick else 10, batch_size=128)

    fit = dict(sparsity=0.99, dense_layers=(), pruning_epochs=1 if quick else 3,
               max_epochs=2 if quick else 12, lr=0.05, batch_size=256)
    return "adult race x sex, 99%", data, dense, fit


def face_setting():
    args = faces.parse([])
    X, y, frame = faces.load_utkface(args.data, target="race", image_size=args.image_size,
                                     max_images=args.max_images)
    groups = frame["race"].to_numpy()
    strata = pd.Series(y).astype(str) + "|" + frame["race"] + "|" + frame["gender"]
    data = train_test_split(X, y, groups, test_size=0.2, stratify=strata, random_state=0)
    cache = faces.get_data_home() / "reproduce_faces"

    def dense(seed):
        return faces.dense_model(data[0], data[2], 5, seed, args.width, args.dense_epochs, cache)

    fit = dict(sparsity=0.9, pruning_epochs=args.gmp_epochs, max_epochs=args.ft_epochs,
               memory=str(cache / "gmp"))
    Xtr, Xte, ytr, yte, gtr, gte = data
    return "utkface race / race, 90%", (Xtr, Xte, ytr, yte, gtr, gte), dense, fit


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "results")
    args = parser.parse_args(argv)
    start, rows = time.perf_counter(), []
    if not ADULT.exists():
        print(f"skipping UCI Adult: {ADULT} not found")
    settings = [lambda: adult_setting(args.quick)] if ADULT.exists() else []
    if faces.UTKFACE.is_dir() and not args.quick:
        settings.append(face_setting)
    for make in settings:
        name, (Xtr, Xte, ytr, yte, gtr, gte), dense_for, fit = make()
        for seed in ((0,) if args.quick else (0, 1, 2)):
            dense = dense_for(seed)
            for method, params in METHODS.items():
                clf = FairPrunedClassifier(
                    dense, tolerance=EPS, random_state=seed, verbose=0,
                    train_split=ValidSplit(0.2, stratified=True, random_state=seed),
                    **fit, **params)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    clf.fit(Xtr, ytr, groups=gtr)
                test = clf.disparity_report(Xte, yte, groups=gte)
                row = {"setting": name, "sparsity": fit["sparsity"], "method": method,
                       "seed": seed,
                       "train_max_psi": clf.train_report_.attrs["max_excess_accuracy_gap"],
                       "valid_max_psi": clf.history[-1, "valid_max_eag"],
                       "test_max_psi": test.attrs["max_excess_accuracy_gap"],
                       "test_psi_pw": test.attrs["pairwise_disparity"],
                       "test_acc": test.attrs["sparse_accuracy"],
                       "selected_epoch": getattr(clf, "selected_epoch_", None)}
                rows.append(row)
                print(row, flush=True)
    results = pd.DataFrame(rows)
    if results.empty:
        return
    metrics = ["test_acc", "test_max_psi", "test_psi_pw", "train_max_psi"]
    table = tables.summary_table(results, ["setting", "sparsity", "method"], metrics,
                                 list(METHODS))
    minutes = (time.perf_counter() - start) / 60
    header = (f"Produced by `python benchmarks/heldout_study.py` in {minutes:.1f} min "
              f"({torch.get_num_threads()} CPU threads); eps = {EPS}; mean ± std over seeds "
              "0-2; fractions. `train_max_psi` is on the 80% of the training split the weights "
              "trained on.\n\n")
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    results.to_json(out / "heldout_study.json", orient="records", indent=1)
    (out / "heldout_study.md").write_text(header + table.to_markdown(index=False) + "\n")
    print("\n" + header + table.to_markdown(index=False))
    plot(results, out / "heldout_study.png")


def plot(results: pd.DataFrame, path: Path) -> None:
    import matplotlib.pyplot as plt

    settings = list(dict.fromkeys(results["setting"]))
    fig, axes = plt.subplots(1, len(settings), figsize=(5 * len(settings), 3.6), squeeze=False)
    for ax, setting in zip(axes[0], settings):
        part = results[results["setting"] == setting]
        for method in METHODS:
            rows = part[part["method"] == method]
            ax.errorbar(rows["test_acc"].mean(), rows["test_max_psi"].mean(),
                        xerr=rows["test_acc"].std(), yerr=rows["test_max_psi"].std(),
                        marker="o", capsize=3, label=method)
        ax.axhline(EPS, color="k", linestyle="--", linewidth=1)
        ax.set_title(setting, fontsize=9)
        ax.set_xlabel("test accuracy")
        ax.set_ylabel("test max ψ_g")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
