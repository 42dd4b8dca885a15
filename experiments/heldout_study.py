"""Does fairness hold on unseen data? NFT, CEAG and CEAG with held-out estimates and/or
fairness-aware epoch selection, on test data.

Settings, each with seeds 0-2 (dense model, shuffles) and eps = 0.01:

* UCI Adult at 99% sparsity, groups race x sex (10) and native-country (42): a dense MLP that
  is *not* overfit (about 87% training accuracy, 86% test).
* UTKFace at 90% sparsity, race / race and race / race x gender (the face reproduction's 32 px
  CNN; 3 GMP + 6 fine-tuning epochs) in two regimes of the dense model: trained 40 epochs to
  near 100% training accuracy (the paper's overfit regime) and trained 8 epochs (not overfit).

Every method trains on the same 80% of the training split, with the other 20% held out
(``ValidSplit(0.2, stratified)``): "CEAG + held-out" moves its multipliers with the held-out
estimates (``constraint_data="heldout"``), "+ Σλ ≤ 1" also bounds the multipliers
(``max_multiplier_sum=1``), "dual step × 0.1" takes a tenth of the automatic step of the
multipliers, "CEAG + selection" keeps the most accurate epoch whose held-out
max psi_g meets eps (``epoch_selection="fair"``). Test data never enters a fit.

    python experiments/heldout_study.py          # about 40 minutes on 2 cores
    python experiments/heldout_study.py --quick  # smoke form: an Adult subset, tiny schedules
"""

from __future__ import annotations

import argparse
import itertools
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
sys.path.insert(0, str(ROOT / "experiments"))
import _tables as tables  # noqa: E402
import reproduce_faces as faces  # noqa: E402

from fairprune import FairPrunedClassifier  # noqa: E402
from fairprune.datasets import adult_preprocessor, load_adult  # noqa: E402
from fairprune.datasets.models import make_mlp, train_classifier  # noqa: E402

ADULT = ROOT.parent / "shared" / "data" / "adult" / "adult.data"
EPS = 0.01
METHODS = {
    "NFT": dict(method="nft"),
    "CEAG": dict(method="ceag"),
    "CEAG + held-out": dict(method="ceag", constraint_data="heldout"),
    "CEAG + held-out, Σλ ≤ 1": dict(method="ceag", constraint_data="heldout",
                                    max_multiplier_sum=1.0),
    # the automatic dual step of the plain CEAG fit in the same setting, times 0.1
    "CEAG + held-out, dual step × 0.1": dict(method="ceag", constraint_data="heldout",
                                             dual_scale=("CEAG", 0.1)),
    "CEAG + selection": dict(method="ceag", epoch_selection="fair"),
    "CEAG + both": dict(method="ceag", constraint_data="heldout", epoch_selection="fair"),
}


def adult_settings(quick: bool = False):
    """Adult race x sex and native-country at 99%, on one split and one dense model per seed."""
    X, y, groups = load_adult(ADULT)
    if quick:
        keep = np.random.default_rng(0).choice(len(y), 3000, replace=False)
        X, y, groups = X.iloc[keep], y[keep], groups.iloc[keep]
    race_sex = (groups["race"] + " / " + groups["sex"]).to_numpy()
    country = groups["native-country"].to_numpy()
    strata = race_sex + "|" + y.astype(str)
    Xtr, Xte, ytr, yte, rtr, rte, ctr, cte = train_test_split(
        X, y, race_sex, country, test_size=0.2, stratify=y if quick else strata, random_state=0)
    pre = adult_preprocessor().fit(Xtr)
    Xtr, Xte = pre.transform(Xtr), pre.transform(Xte)
    models = {}

    def dense(seed):  # shared by both groupings
        if seed not in models:
            torch.manual_seed(seed)
            models[seed] = train_classifier(make_mlp(Xtr.shape[1], 2), Xtr, ytr,
                                            epochs=2 if quick else 10, batch_size=128)
        return models[seed]

    fit = dict(sparsity=0.99, dense_layers=(), pruning_epochs=1 if quick else 3,
               max_epochs=2 if quick else 12, lr=0.05, batch_size=256)
    yield "adult race x sex, 99%", (Xtr, Xte, ytr, yte, rtr, rte), dense, fit
    yield "adult native-country, 99%", (Xtr, Xte, ytr, yte, ctr, cte), dense, fit


#: dense-model regimes of the face settings: training epochs
FACE_REGIMES = {"overfit": 40, "not overfit": 8}
FACE_SETTINGS = ("race / race", "race / race x gender")


def face_settings():
    """The face settings at 90%, each in both regimes of the dense CNN."""
    args = faces.parse([])
    X, y, frame = faces.load_utkface(args.data, target="race", image_size=args.image_size,
                                     max_images=args.max_images)
    strata = pd.Series(y).astype(str) + "|" + frame["race"] + "|" + frame["gender"]
    cache = faces.get_data_home() / "reproduce_faces"
    fit = dict(sparsity=0.9, pruning_epochs=args.gmp_epochs, max_epochs=args.ft_epochs,
               memory=str(cache / "gmp"))
    for regime, epochs in FACE_REGIMES.items():
        for setting in FACE_SETTINGS:
            groups = faces.group_labels(frame, faces.SETTINGS[setting][1])
            data = train_test_split(X, y, groups, test_size=0.2, stratify=strata,
                                    random_state=0)

            def dense(seed, data=data, epochs=epochs):
                return faces.dense_model(data[0], data[2], 5, seed, args.width, epochs, cache)

            yield f"utkface {setting}, 90%, {regime}", data, dense, fit


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "results")
    args = parser.parse_args(argv)
    start, rows = time.perf_counter(), []
    if not ADULT.exists():
        print(f"skipping UCI Adult: {ADULT} not found")
    settings = [adult_settings(args.quick)] if ADULT.exists() else []
    if faces.UTKFACE.is_dir() and not args.quick:
        settings.append(face_settings())
    for name, (Xtr, Xte, ytr, yte, gtr, gte), dense_for, fit in itertools.chain(*settings):
        for seed in ((0,) if args.quick else (0, 1, 2)):
            dense = dense_for(seed)
            fitted_dual_lr = {}  # method -> dual_lr_ of its fit with this seed
            for method, params in METHODS.items():
                params = dict(params)
                if "dual_scale" in params:  # METHODS lists the base method first
                    base, scale = params.pop("dual_scale")
                    params["dual_lr"] = scale * fitted_dual_lr[base]
                clf = FairPrunedClassifier(
                    dense, tolerance=EPS, random_state=seed, verbose=0,
                    train_split=ValidSplit(0.2, stratified=True, random_state=seed),
                    **fit, **params)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    clf.fit(Xtr, ytr, groups=gtr)
                fitted_dual_lr[method] = clf.dual_lr_
                test = clf.disparity_report(Xte, yte, groups=gte)
                row = {"setting": name, "sparsity": fit["sparsity"], "method": method,
                       "seed": seed,
                       "train_max_psi": clf.train_report_.attrs["max_excess_accuracy_gap"],
                       "valid_max_psi": clf.history[-1, "valid_max_excess_accuracy_gap"],
                       "test_max_psi": test.attrs["max_excess_accuracy_gap"],
                       "test_psi_pw": test.attrs["pairwise_disparity"],
                       "test_acc": test.attrs["sparse_accuracy"],
                       "dense_train_acc": clf.train_report_.attrs["dense_accuracy"],
                       "dense_test_acc": test.attrs["dense_accuracy"],
                       "selected_epoch": getattr(clf, "selected_epoch_", None)}
                rows.append(row)
                print(row, flush=True)
    results = pd.DataFrame(rows)
    if results.empty:
        return
    metrics = ["test_acc", "test_max_psi", "test_psi_pw", "train_max_psi", "dense_train_acc",
               "dense_test_acc"]
    table = tables.summary_table(results, ["setting", "sparsity", "method"], metrics,
                                 list(METHODS))
    minutes = (time.perf_counter() - start) / 60
    header = (f"Produced by `python experiments/heldout_study.py` in {minutes:.1f} min "
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
    columns = min(3, len(settings))
    rows_ = -(-len(settings) // columns)
    fig, axes = plt.subplots(rows_, columns, figsize=(5 * columns, 3.6 * rows_), squeeze=False)
    for ax in axes.flat[len(settings):]:
        ax.set_visible(False)
    for ax, setting in zip(axes.flat, settings):
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
