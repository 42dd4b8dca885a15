"""Does fairness hold on unseen data? NFT, CEAG and CEAG with held-out estimates and/or
fairness-aware epoch selection, on test data.

Settings, each with seeds 0-2 (dense model, shuffles) and eps = 0.01:

* UCI Adult at 99% sparsity, groups race x sex (10) and native-country (42): a dense MLP that
  is *not* overfit (about 87% training accuracy, 86% test).
* UTKFace at 90% sparsity, race / race and race / race x gender (the face reproduction's 32 px
  CNN; 3 GMP + 6 fine-tuning epochs) in two regimes of the dense model: trained 40 epochs to
  near 100% training accuracy (the paper's overfit regime) and trained 8 epochs (not overfit).

Every method trains on the same 80% of the training split, with the other 20% held out
(``ValidSplit(0.2, stratified)``): "CEAG + held-out" moves its multipliers with held-out
estimates, one held-out batch per training step, with the automatic dual step
(``constraint_data="heldout"``), "CEAG + selection" keeps the most accurate epoch whose
held-out max psi_g meets eps (``epoch_selection="fair"``). Test data never enters a fit.

Every test figure has a 95% interval: a paired, group-stratified bootstrap of the test rows
(1,000 resamples; ``disparity_report(n_boot=...)``), averaged over seeds. The difference of
each method from NFT in test max psi_g and Psi_PW has its own interval, from resamples that
serve both methods' predictions on the same rows; it is marked significant (*) when that
interval excludes 0.

    python experiments/heldout_study.py --regimes "not overfit"  # about 50 minutes, 2 cores
    python experiments/heldout_study.py          # both regimes of the face models (longer)
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
import reproduce_faces as faces  # noqa: E402

from fairprune import FairPrunedClassifier  # noqa: E402
from fairprune.datasets import adult_preprocessor, load_adult  # noqa: E402
from fairprune.groups import encode_groups  # noqa: E402
from fairprune.intervals import (category_counts, percentile_interval,  # noqa: E402
                                 statistics_of_counts)
from fairprune.datasets.models import make_mlp, train_classifier  # noqa: E402

ADULT = ROOT.parent / "shared" / "data" / "adult" / "adult.data"
EPS = 0.01
N_BOOT = 1000
METHODS = {
    "NFT": dict(method="nft"),
    "CEAG": dict(method="ceag"),
    "CEAG + held-out": dict(method="ceag", constraint_data="heldout"),
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


def face_settings(regimes=tuple(FACE_REGIMES)):
    """The face settings at 90%, each in the given regimes of the dense CNN."""
    args = faces.parse([])
    X, y, frame = faces.load_utkface(args.data, target="race", image_size=args.image_size,
                                     max_images=args.max_images)
    strata = pd.Series(y).astype(str) + "|" + frame["race"] + "|" + frame["gender"]
    cache = faces.get_data_home() / "reproduce_faces"
    fit = dict(sparsity=0.9, pruning_epochs=args.gmp_epochs, max_epochs=args.ft_epochs,
               memory=str(cache / "gmp"))
    for regime in regimes:
        epochs = FACE_REGIMES[regime]
        for setting in FACE_SETTINGS:
            groups = faces.group_labels(frame, faces.SETTINGS[setting][1])
            data = train_test_split(X, y, groups, test_size=0.2, stratify=strata,
                                    random_state=0)

            def dense(seed, data=data, epochs=epochs):
                return faces.dense_model(data[0], data[2], 5, seed, args.width, epochs, cache)

            yield f"utkface {setting}, 90%, {regime}", data, dense, fit


def paired_differences(y_true, dense, predictions: dict, groups, seed: int) -> dict:
    """Bootstrap replicates of each method's test max psi_g and Psi_PW minus NFT's, from
    resamples of the test rows within groups that serve every method at once (paired).

    Each row's category holds whether the dense model and each method are right; a group's
    resample draws category counts from a multinomial, as :mod:`fairprune.intervals` does for
    one model, and the counts of two models are its marginal sums."""
    methods = list(predictions)
    _, codes = encode_groups(groups)
    n_groups = int(codes.max()) + 1
    right = np.stack([dense == y_true] + [predictions[m] == y_true for m in methods])
    categories = (right.astype(np.int64) * (2 ** np.arange(len(right)))[:, None]).sum(axis=0)
    counts = category_counts(categories, codes, n_groups, 2 ** len(right))
    sizes = counts.sum(axis=1)
    rng = np.random.default_rng(seed)
    boot = rng.multinomial(sizes, counts / np.maximum(sizes, 1)[:, None],
                           size=(N_BOOT, n_groups))
    k = np.arange(counts.shape[1])

    def figures(j):  # (max psi, Psi_PW) replicates of method j (1-based among `right`)
        four = np.zeros(boot.shape[:2] + (4,))
        for code in range(4):  # 2 * dense right + sparse right
            match = ((k & 1) == code // 2) & (((k >> j) & 1) == code % 2)
            four[..., code] = boot[..., match].sum(axis=-1)
        stats = statistics_of_counts(four, binary=False)
        return np.stack([stats["max_excess_accuracy_gap"], stats["pairwise_disparity"]])

    base = figures(1 + methods.index("NFT"))
    return {m: figures(1 + i) - base for i, m in enumerate(methods) if m != "NFT"}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "results")
    parser.add_argument("--regimes", nargs="+", choices=list(FACE_REGIMES),
                        default=list(FACE_REGIMES), help="dense-model regimes of the faces")
    args = parser.parse_args(argv)
    start, rows, differences = time.perf_counter(), [], []
    if not ADULT.exists():
        print(f"skipping UCI Adult: {ADULT} not found")
    settings = [adult_settings(args.quick)] if ADULT.exists() else []
    if faces.UTKFACE.is_dir() and not args.quick:
        settings.append(face_settings(tuple(args.regimes)))
    for name, (Xtr, Xte, ytr, yte, gtr, gte), dense_for, fit in itertools.chain(*settings):
        replicates = {}  # method -> its differences from NFT, one array per seed
        for seed in ((0,) if args.quick else (0, 1, 2)):
            dense = dense_for(seed)
            predictions = {}
            for method, params in METHODS.items():
                clf = FairPrunedClassifier(
                    dense, tolerance=EPS, random_state=seed, verbose=0,
                    train_split=ValidSplit(0.2, stratified=True, random_state=seed),
                    **fit, **params)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    clf.fit(Xtr, ytr, groups=gtr)
                    test = clf.disparity_report(Xte, yte, groups=gte, n_boot=N_BOOT,
                                                random_state=seed)
                predictions[method] = clf.predict(Xte)
                dense_test = clf.predict_dense(Xte)
                row = {"setting": name, "sparsity": fit["sparsity"], "method": method,
                       "seed": seed,
                       "train_max_psi": clf.train_report_.attrs["max_excess_accuracy_gap"],
                       "valid_max_psi": clf.history[-1, "valid_max_excess_accuracy_gap"],
                       "test_max_psi": test.attrs["max_excess_accuracy_gap"],
                       "test_max_psi_low": test.attrs["max_excess_accuracy_gap_ci"][0],
                       "test_max_psi_high": test.attrs["max_excess_accuracy_gap_ci"][1],
                       "test_psi_pw": test.attrs["pairwise_disparity"],
                       "test_psi_pw_low": test.attrs["pairwise_disparity_ci"][0],
                       "test_psi_pw_high": test.attrs["pairwise_disparity_ci"][1],
                       "test_acc": test.attrs["sparse_accuracy"],
                       "multiplier_sum": float(clf.multipliers_.sum()),
                       "fit_status": clf.fit_status_,
                       "dense_train_acc": clf.train_report_.attrs["dense_accuracy"],
                       "dense_test_acc": test.attrs["dense_accuracy"],
                       "selected_epoch": getattr(clf, "selected_epoch_", None)}
                rows.append(row)
                print(row, flush=True)
            for method, diff in paired_differences(yte, dense_test, predictions, gte,
                                                   seed).items():
                replicates.setdefault(method, []).append(diff)
        for method, diffs in replicates.items():  # mean over seeds, replicate by replicate
            mean = np.mean(diffs, axis=0)
            for metric, values in zip(("test_max_psi", "test_psi_pw"), mean):
                low, high = percentile_interval(values, 0.95)
                differences.append({"setting": name, "method": method, "metric": metric,
                                    "low": float(low), "high": float(high),
                                    "significant": bool(low > 0 or high < 0)})
    results = pd.DataFrame(rows)
    if results.empty:
        return
    table = summary(results, pd.DataFrame(differences))
    minutes = (time.perf_counter() - start) / 60
    command = " ".join(["python experiments/heldout_study.py", *(argv or sys.argv[1:])])
    header = (f"Produced by `{command}` in {minutes:.1f} min "
              f"({torch.get_num_threads()} CPU threads); eps = {EPS}; mean over seeds 0-2; "
              "fractions. Test figures carry [the mean over seeds of their 95% bootstrap "
              f"interval] ({N_BOOT} paired, group-stratified resamples of the test rows); "
              "`vs NFT` is the mean difference from NFT in test max psi_g, * where its paired "
              "95% interval excludes 0. `train_max_psi` is on the 80% of the training split "
              "the weights trained on.\n\n")
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    results.to_json(out / "heldout_study.json", orient="records", indent=1)
    pd.DataFrame(differences).to_json(out / "heldout_study_differences.json",
                                      orient="records", indent=1)
    (out / "heldout_study.md").write_text(header + table.to_markdown(index=False) + "\n")
    print("\n" + header + table.to_markdown(index=False))
    plot(results, out / "heldout_study.png")


def summary(results: pd.DataFrame, differences: pd.DataFrame) -> pd.DataFrame:
    """One row per setting and method: means over seeds, test figures with their intervals,
    the difference from NFT with its significance."""
    order = {m: i for i, m in enumerate(METHODS)}
    lines = []
    for (setting, method), part in results.groupby(["setting", "method"], sort=False):
        line = {"setting": setting, "method": method,
                "test_acc": f"{part['test_acc'].mean():.3f}"}
        for metric in ("test_max_psi", "test_psi_pw"):
            line[metric] = (f"{part[metric].mean():.3f} [{part[metric + '_low'].mean():.3f}, "
                            f"{part[metric + '_high'].mean():.3f}]")
        if not differences.empty:
            match = differences[(differences["setting"] == setting)
                                & (differences["method"] == method)
                                & (differences["metric"] == "test_max_psi")]
            nft = results[(results["setting"] == setting) & (results["method"] == "NFT")]
            if len(match):
                delta = part["test_max_psi"].mean() - nft["test_max_psi"].mean()
                line["vs NFT"] = f"{delta:+.3f}{' *' if match['significant'].iloc[0] else ''}"
            else:
                line["vs NFT"] = ""
        line["train_max_psi"] = f"{part['train_max_psi'].mean():.3f}"
        line["collapsed"] = int((part["fit_status"] == "collapsed").sum())
        line["_order"] = order[method]
        lines.append(line)
    table = pd.DataFrame(lines).sort_values(["setting", "_order"], kind="stable")
    return table.drop(columns="_order")


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
