"""Reproduce the paper's qualitative claims on the real data available here.

Settings: scikit-learn's digits (classes as groups) and UCI Adult from ../shared/data
(groups: race; race x sex; native-country). For each setting, two sparsities, seeds 0..2 and
the methods NFT, EL, EL+RB and CEAG: train/test accuracy, max psi_g and Psi_PW (mean ± std
over seeds). Writes a Markdown table, a CSV and figures under --out.

Splits are fixed and seeded (random_state=0), stratified by target and group
(Adult: income x race x sex; digits: class), 80% train / 20% test. Seeds change the dense
model's initialisation and the fine-tuning shuffles. Tolerance: eps = 0.02 on digits, and
the paper's UTKFace value eps = 0.01 on Adult, whose pruning disparities are small.

    python experiments/reproduce.py                  # full run (about 10 min on 2 cores)
    python experiments/reproduce.py --quick          # smoke form (seconds): tiny schedules and
                                                    # subsets; checks the pipeline, not results

The paper's face settings (UTKFace) are in ``experiments/reproduce_faces.py``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from sklearn.model_selection import train_test_split

from fairprune import FairPrunedClassifier, FairnessToleranceWarning, plot_disparity
from fairprune.datasets import adult_preprocessor, load_adult, load_digits_groups
from fairprune.datasets.models import make_image_cnn, make_mlp, train_classifier

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "experiments"))
import _tables as tables  # noqa: E402

ADULT = ROOT.parent / "shared" / "data" / "adult" / "adult.data"
METHODS = {
    "NFT": dict(method="nft"),
    "EL": dict(method="equalized_loss", replay_buffer_size=0),
    "EL+RB": dict(method="equalized_loss", replay_buffer_size=40),
    "CEAG": dict(method="ceag"),
}


@dataclass
class Setting:
    name: str
    sparsities: tuple[float, float]
    fit: dict
    dense_epochs: int
    tolerance: float
    data: tuple | None = field(default=None, repr=False)


def train_dense(X, y, seed, epochs):
    torch.manual_seed(seed)
    n_classes = int(y.max()) + 1
    model = make_image_cnn(n_classes) if X.ndim == 4 else make_mlp(X.shape[1], n_classes)
    return train_classifier(model, X, y, epochs=epochs, batch_size=128)


# The smoke form (--quick) shrinks every schedule and subsamples Adult so that the whole run
# takes seconds: it checks that the pipeline runs end to end, not what it finds.
QUICK_FIT = dict(pruning_epochs=1, max_epochs=2)
QUICK_DENSE_EPOCHS = 2
QUICK_ADULT_ROWS = 3000


def settings(quick: bool) -> list[Setting]:
    X, y, frame = load_digits_groups()
    split = train_test_split(X, y, frame["digit"].to_numpy(), test_size=0.2, stratify=y,
                             random_state=0)
    digits_fit = dict(dense_layers=(), pruning_epochs=10, max_epochs=50, lr=0.1)
    dense_epochs = 30
    if quick:
        digits_fit, dense_epochs = {**digits_fit, **QUICK_FIT}, QUICK_DENSE_EPOCHS
    out = [Setting("digits (classes)", (0.95, 0.98), digits_fit, dense_epochs, 0.02, split)]
    if not ADULT.exists():
        print(f"skipping UCI Adult: {ADULT} not found (../shared/data is absent)")
        return out
    X, y, groups = load_adult(ADULT)
    if quick:
        keep = np.random.default_rng(0).choice(len(y), QUICK_ADULT_ROWS, replace=False)
        X, y, groups = (X.iloc[keep].reset_index(drop=True), y[keep],
                        groups.iloc[keep].reset_index(drop=True))
    strata = groups["race"] + "|" + groups["sex"] + "|" + y.astype(str)
    if quick:  # the subset has strata of one row
        strata = y
    Xtr, Xte, ytr, yte, gtr, gte = train_test_split(X, y, groups, test_size=0.2, stratify=strata,
                                                    random_state=0)
    pre = adult_preprocessor().fit(Xtr)  # standardised with training statistics only
    Xtr, Xte = pre.transform(Xtr), pre.transform(Xte)
    adult_fit = dict(dense_layers=(), pruning_epochs=3, max_epochs=12, lr=0.05, batch_size=256)
    dense_epochs = 10
    if quick:
        adult_fit, dense_epochs = {**adult_fit, **QUICK_FIT}, QUICK_DENSE_EPOCHS
    columns = {
        "adult race": lambda g: g["race"].to_numpy(),
        "adult race x sex": lambda g: (g["race"] + " / " + g["sex"]).to_numpy(),
        "adult native-country": lambda g: g["native-country"].to_numpy(),
    }
    for name, label in columns.items():
        if quick and name != "adult race":
            continue
        out.append(Setting(name, (0.95, 0.99), adult_fit, dense_epochs, 0.01,
                           (Xtr, Xte, ytr, yte, label(gtr), label(gte))))
    return out


def run(quick: bool, out: Path) -> pd.DataFrame:
    seeds = [0] if quick else [0, 1, 2]
    methods = {k: v for k, v in METHODS.items() if not quick or k in ("NFT", "CEAG")}
    rows, reports = [], {}
    for setting in settings(quick):
        Xtr, Xte, ytr, yte, gtr, gte = setting.data
        sparsities = setting.sparsities[-1:] if quick else setting.sparsities
        for seed in seeds:
            dense = train_dense(Xtr, ytr, seed, setting.dense_epochs)
            for sparsity in sparsities:
                for method, params in methods.items():
                    start = time.perf_counter()
                    clf = FairPrunedClassifier(dense, sparsity=sparsity,
                                               tolerance=setting.tolerance,
                                               random_state=seed, verbose=0,
                                               **setting.fit, **params)
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore", FairnessToleranceWarning)
                        clf.fit(Xtr, ytr, groups=gtr)
                    train = clf.train_report_
                    test = clf.disparity_report(Xte, yte, groups=gte)
                    rows.append({
                        "setting": setting.name, "n_groups": len(clf.groups_),
                        "eps": setting.tolerance,
                        "sparsity": sparsity, "method": method, "seed": seed,
                        "dense_test_acc": test.attrs["dense_accuracy"],
                        "train_acc": train.attrs["sparse_accuracy"],
                        "test_acc": test.attrs["sparse_accuracy"],
                        "train_max_psi": train.attrs["max_excess_accuracy_gap"],
                        "test_max_psi": test.attrs["max_excess_accuracy_gap"],
                        "train_psi_pw": train.attrs["pairwise_disparity"],
                        "test_psi_pw": test.attrs["pairwise_disparity"],
                        "seconds": time.perf_counter() - start,
                    })
                    print(" ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}"
                                   for k, v in rows[-1].items()), flush=True)
                    if seed == 0 and sparsity == sparsities[-1]:
                        reports[(setting.name, method)] = train
    results = pd.DataFrame(rows)
    write_outputs(results, reports, out, quick)
    return results


def summary_table(results: pd.DataFrame) -> pd.DataFrame:
    metrics = ["train_acc", "test_acc", "train_max_psi", "test_max_psi", "train_psi_pw",
               "test_psi_pw"]
    return tables.summary_table(results, ["setting", "n_groups", "eps", "sparsity", "method"], metrics, list(METHODS))


def write_outputs(results: pd.DataFrame, reports: dict, out: Path, quick: bool) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    results.to_csv(out / "reproduction.csv", index=False)
    table = summary_table(results)
    command = "python experiments/reproduce.py" + (" --quick" if quick else "")
    header = (f"Produced by `{command}` on {dt.date.today().isoformat()} "
              f"(torch {torch.__version__}, {torch.get_num_threads()} CPU threads). "
              f"Mean ± std over seeds {sorted(results['seed'].unique().tolist())}; "
              "psi values are fractions (0.01 = 1 accuracy point).\n\n")
    (out / "reproduction.md").write_text(header + table.to_markdown(index=False) + "\n")
    print("\n" + header + table.to_markdown(index=False))

    settings_seen = list(dict.fromkeys(results["setting"]))
    fig, axes = plt.subplots(1, len(settings_seen), figsize=(4.2 * len(settings_seen), 3.6),
                             squeeze=False)
    for ax, name in zip(axes[0], settings_seen):
        part = results[results["setting"] == name]
        for method in METHODS:
            sub = part[part["method"] == method]
            if len(sub):
                ax.scatter(sub["train_max_psi"], sub["test_acc"], label=method, s=18)
        ax.axvline(part["eps"].iloc[0], color="crimson", linestyle="--", linewidth=1)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("train max ψ_g")
        ax.set_ylabel("test accuracy")
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "tradeoff.png", dpi=110)
    plt.close(fig)
    for name in settings_seen:
        pair = {m: reports[(name, m)] for m in ("NFT", "CEAG") if (name, m) in reports}
        if len(pair) == 2:
            eps = results.loc[results["setting"] == name, "eps"].iloc[0]
            ax = plot_disparity(pair, top_k=30, tolerance=eps)
            ax.set_title(f"{name}: training ψ_g, seed 0, highest sparsity", fontsize=9)
            ax.figure.tight_layout()
            slug = name.replace(" ", "_").replace("(", "").replace(")", "")
            ax.figure.savefig(out / f"psi_per_group_{slug}.png", dpi=110)
            plt.close(ax.figure)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="reduced CI form")
    parser.add_argument("--out", type=Path, default=ROOT / "experiments" / "results")
    args = parser.parse_args(argv)
    run(args.quick, args.out)


if __name__ == "__main__":
    main(sys.argv[1:])
