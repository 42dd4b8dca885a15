"""The paper's UTKFace settings at CPU scale: NFT, NFT+ES, EL, EL+RB and CEAG on real faces.

Settings (target / groups), as in the paper:
  race / race (main), gender / race, race / race x gender (10 intersectional groups).
Data: the UTKFace aligned-and-cropped folder, resized to --image-size px, a fixed seeded
80/20 split stratified by target x race x gender (random_state=0). Dense model: the small
CNN of ``fairprune.datasets.models.make_face_cnn`` trained from scratch with Adam until it fits the
training images (near 100% training accuracy, like the paper's overfit MobileNetV2), cached
under the data home. Seeds change the dense model and the fine-tuning shuffles.

Default (CPU, about 80 minutes on 2 cores): a seeded stratified subset of 12,000 images at
32 px, the dense CNN trained with random horizontal flips (the paper's augmentation), 3 GMP
epochs then 6 fine-tuning epochs, the paper's optimizer (SGD 1e-2, momentum 0.9, weight decay
1e-4, batch 128, LR x0.1 at 60/80/90% of all epochs), buffers of 40, eps = 0.01, 3 seeds.
Every method at race / race 60%; NFT and CEAG at the other sparsities; NFT, EL, EL+RB and
CEAG in the other settings (60%).
``--full`` runs every image, the paper's 15 + 45 epochs and 5 seeds (a GPU job). The GMP
phase is shared by the methods of a cell through ``memory=``.

    python experiments/reproduce_faces.py                 # default CPU study (see --help)
    python experiments/reproduce_faces.py --quick         # smoke form on a tiny subset (seconds)
    python experiments/reproduce_faces.py --full --device cuda
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import shlex
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from sklearn.model_selection import train_test_split
from skorch.dataset import ValidSplit

from fairprune import FairnessToleranceWarning, FairPrunedClassifier, paper_defaults, plot_disparity
from fairprune.datasets import load_utkface
from fairprune.training import auto_dual_lr
from fairprune.datasets.models import make_face_cnn, train_classifier
from fairprune.datasets.utkface import get_data_home

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "experiments"))
import _tables as tables  # noqa: E402

UTKFACE = ROOT.parent / "shared" / "data" / "utkface"
TOLERANCE = 0.01
#: method name -> estimator parameters (on top of the schedule)
METHODS = {
    "NFT": dict(method="nft"),
    "NFT+ES": dict(method="nft", epoch_selection="accuracy",
                   train_split=ValidSplit(0.1, stratified=True, random_state=0)),
    "EL": dict(method="equalized_loss", replay_buffer_size=0),
    "EL+RB": dict(method="equalized_loss", replay_buffer_size=40),
    "CEAG": dict(method="ceag"),
    # the paper's configuration in one call; the script's schedule (--gmp-epochs, --ft-epochs)
    # replaces its 15 + 45 epochs unless --full. With fairprune's defaults this differs from
    # the "CEAG" row in the multipliers' step only (fixed 1e-4 against "auto").
    "CEAG (paper dual step)": {k: v for k, v in paper_defaults("utkface").items()
                               if k not in ("pruning_epochs", "max_epochs")},
}
SETTINGS = {
    "race / race": ("race", ("race",)),
    "gender / race": ("gender", ("race",)),
    "race / race x gender": ("race", ("race", "gender")),
}


def group_labels(frame: pd.DataFrame, columns: tuple[str, ...]) -> np.ndarray:
    if len(columns) == 1:
        return frame[columns[0]].to_numpy()
    return frame[list(columns)].astype(str).agg(" / ".join, axis=1).to_numpy()


def dense_model(X, y, n_classes: int, seed: int, width: int, epochs: int, cache: Path,
                flips: bool = True):
    """The face CNN trained with Adam for ``epochs`` epochs with random horizontal flips, the
    paper's augmentation in every training phase (cached by data and settings).
    ``flips=False`` trains it on the unflipped images only (fine-tuning still flips): the
    ablation of ``--dense-without-flips``."""
    digest = hashlib.sha256()
    digest.update(np.ascontiguousarray(X[:: max(1, len(X) // 256)]).tobytes())
    digest.update(np.ascontiguousarray(y).tobytes())
    digest.update(f"{n_classes}-{seed}-{width}-{epochs}-{X.shape}".encode())
    if flips:
        digest.update(b"-flips")
    path = cache / f"dense-{digest.hexdigest()[:24]}.pt"
    torch.manual_seed(seed)
    model = make_face_cnn(n_classes, width=width)
    if path.exists():
        model.load_state_dict(torch.load(path, weights_only=True))
        return model.eval()
    model[0].p = 0.5 if flips else 0.0
    model = train_classifier(model, X, y, epochs=epochs, lr=2e-3, batch_size=128,
                             lr_schedule="cosine")
    model[0].p = 0.5  # fine-tuning flips, the paper's augmentation
    cache.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), path)
    return model


def run_cell(dense, data, sparsity, seed, method, args, memory) -> tuple[dict, FairPrunedClassifier]:
    Xtr, Xte, ytr, yte, gtr, gte = data
    method_params = dict(METHODS[method])
    scale = method_params.pop("dual_scale", None)
    if scale is not None:  # "auto" times `scale`: the ablation of the automatic dual step
        steps = int(np.ceil(len(ytr) / 128))  # the estimator's default batch size
        method_params["dual_lr"] = scale * auto_dual_lr("auto", "ceag", len(np.unique(gtr)),
                                                        steps, args.ft_epochs)
    params = {**dict(sparsity=sparsity, tolerance=TOLERANCE, pruning_epochs=args.gmp_epochs,
                     max_epochs=args.ft_epochs, random_state=seed, verbose=0,
                     device=args.device, memory=memory), **method_params}
    if sparsity == "85% channels":
        params.update(sparsity=0.85, pruning="channel")
    start = time.perf_counter()
    clf = FairPrunedClassifier(dense, **params)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FairnessToleranceWarning)
        clf.fit(Xtr, ytr, groups=gtr)
    train = clf.train_report_
    test = clf.disparity_report(Xte, yte, groups=gte)
    history = clf.history
    row = {
        "sparsity": str(sparsity), "method": method, "seed": seed,
        "dense_train_acc": train.attrs["dense_accuracy"],
        "dense_test_acc": test.attrs["dense_accuracy"],
        "train_acc": train.attrs["sparse_accuracy"], "test_acc": test.attrs["sparse_accuracy"],
        "train_max_psi": train.attrs["max_excess_accuracy_gap"],
        "test_max_psi": test.attrs["max_excess_accuracy_gap"],
        "train_psi_pw": train.attrs["pairwise_disparity"],
        "test_psi_pw": test.attrs["pairwise_disparity"],
        "max_multiplier": float(np.max(np.abs(history[-1, "multipliers"]))),
        "dual_lr": float(getattr(clf, "dual_lr_", float("nan"))),
        "selected_epoch": getattr(clf, "selected_epoch_", None),
        "seconds": time.perf_counter() - start,
    }
    return row, clf


def add_dual_scales(scales) -> list[str]:
    """Methods "CEAG, auto step xS" for the ablation of ``dual_lr="auto"``."""
    names = []
    for scale in scales:
        name = f"CEAG, auto step x{scale:g}"
        METHODS[name] = dict(method="ceag", dual_scale=scale)
        names.append(name)
    return names


def study(args) -> pd.DataFrame:
    cache = get_data_home() / "reproduce_faces"
    memory = str(cache / "gmp") if not args.no_gmp_cache else None
    rows, figures = [], {}
    for setting in args.settings:
        target, columns = SETTINGS[setting]
        X, y, frame = load_utkface(args.data, target=target, image_size=args.image_size,
                                   max_images=args.max_images)
        groups = group_labels(frame, columns)
        strata = pd.Series(y).astype(str) + "|" + frame["race"] + "|" + frame["gender"]
        try:
            split = train_test_split(X, y, groups, test_size=0.2, stratify=strata,
                                     random_state=0)
        except ValueError:  # tiny subsets (--max-images): strata of one image
            split = train_test_split(X, y, groups, test_size=0.2, stratify=y, random_state=0)
        n_classes = int(y.max()) + 1
        main = setting == "race / race"
        sparsities = args.sparsities if main else args.other_sparsities
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            dense = dense_model(split[0], split[2], n_classes, seed, args.width,
                                args.dense_epochs, cache, flips=not args.dense_without_flips)
            for sparsity in sparsities:
                # every method at the main cell (first sparsity), fewer elsewhere
                first = main and sparsity == sparsities[0]
                methods = args.methods if first else (
                    args.sparsity_methods if main else args.other_methods)
                for method in methods:
                    row, clf = run_cell(dense, split, sparsity, seed, method, args, memory)
                    row = {"setting": setting, "n_groups": len(clf.groups_), **row}
                    rows.append(row)
                    print(" ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}"
                                   for k, v in row.items()), flush=True)
                    if seed == 0 and method in ("NFT", "CEAG"):
                        figures[(setting, str(sparsity), method)] = clf.train_report_
    return pd.DataFrame(rows), figures


def summary_table(results: pd.DataFrame) -> pd.DataFrame:
    metrics = ["train_acc", "test_acc", "train_max_psi", "test_max_psi", "train_psi_pw",
               "test_psi_pw", "max_multiplier"]
    return tables.summary_table(results, ["setting", "n_groups", "sparsity", "method"], metrics, list(METHODS))


def write_outputs(results: pd.DataFrame, figures: dict, args, seconds: float) -> None:
    import matplotlib.pyplot as plt

    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    results.to_json(out / "faces.json", orient="records", indent=1)
    table = summary_table(results)
    shown = [a for i, a in enumerate(args.argv)  # where the files go changes no number
             if a != "--out" and (i == 0 or args.argv[i - 1] != "--out")]
    header = (
        f"Produced by `{shlex.join(['python', 'experiments/reproduce_faces.py', *shown])}` on "
        f"{dt.date.today().isoformat()} in {seconds / 60:.1f} min (torch {torch.__version__}, "
        f"device {args.device}, {torch.get_num_threads()} CPU threads). {args.image_size} px, "
        f"face CNN width {args.width}, {args.gmp_epochs} GMP + {args.ft_epochs} fine-tuning "
        f"epochs, eps = {TOLERANCE}. Mean ± std over seeds "
        f"{sorted(results['seed'].unique().tolist())}; fractions (0.01 = 1 accuracy point).\n\n")
    (out / "faces.md").write_text(header + table.to_markdown(index=False) + "\n")
    print("\n" + header + table.to_markdown(index=False))
    for setting, sparsity in dict.fromkeys(key[:2] for key in figures):  # each cell once
        pair = {m: figures.get((setting, sparsity, m)) for m in ("NFT", "CEAG")}
        if any(v is None for v in pair.values()):
            continue
        ax = plot_disparity(pair, tolerance=TOLERANCE)
        ax.set_title(f"UTKFace {setting}, {sparsity}: training ψ_g, seed 0", fontsize=9)
        ax.figure.tight_layout()
        slug = f"{setting}_{sparsity}".replace(" / ", "_").replace(" ", "_").replace("%", "pct")
        ax.figure.savefig(out / f"faces_psi_{slug}.png", dpi=110)
        plt.close(ax.figure)
    (out / "faces_run.json").write_text(json.dumps({"seconds": seconds, "argv": args.argv}))


def parse(argv) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=UTKFACE)
    parser.add_argument("--out", type=Path, default=ROOT / "experiments" / "results")
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--dense-epochs", type=int, default=40)
    parser.add_argument("--gmp-epochs", type=int, default=3)
    parser.add_argument("--ft-epochs", type=int, default=6)
    parser.add_argument("--seeds", type=int, default=3, help="how many seeds")
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--max-images", type=int, default=12000)
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    parser.add_argument("--sparsities", nargs="+", default=[0.6, 0.9, 0.95, 0.99, "85% channels"],
                        type=lambda v: v if "channel" in v else float(v))
    parser.add_argument("--other-sparsities", nargs="+", default=[0.6],
                        type=lambda v: v if "channel" in v else float(v))
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--sparsity-methods", nargs="+", choices=list(METHODS),
                        default=["NFT", "CEAG"],
                        help="methods at the main setting's other sparsities")
    parser.add_argument("--other-methods", nargs="+", default=["NFT", "EL", "EL+RB", "CEAG"],
                        choices=list(METHODS), help="methods of the other settings")
    parser.add_argument("--dense-without-flips", action="store_true",
                        help="ablation: train the dense model on unflipped images only")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--no-gmp-cache", action="store_true")
    parser.add_argument("--quick", action="store_true",
                        help="smoke form: 300 images, 16 px, 1 seed, tiny schedules")
    parser.add_argument("--full", action="store_true",
                        help="the paper's schedule (15 + 45 epochs) and 5 seeds: a GPU job")
    parser.add_argument("--dual-scales", nargs="*", type=float, default=[],
                        help="add CEAG with the automatic dual step times these factors "
                             "(to --methods and --sparsity-methods)")
    args = parser.parse_args(argv)
    args.argv = list(argv)
    scaled = add_dual_scales(args.dual_scales)
    args.methods = [*args.methods, *scaled]
    args.sparsity_methods = [*args.sparsity_methods, *scaled]
    if args.quick:
        args.max_images, args.image_size, args.seeds = 300, 16, 1
        args.dense_epochs, args.gmp_epochs, args.ft_epochs, args.width = 2, 1, 1, 4
        args.sparsities, args.other_sparsities = [0.9], [0.9]
        args.settings = ["race / race", "gender / race"]
        args.methods = ["NFT", "NFT+ES", "EL+RB", "CEAG"]
        args.other_methods = args.sparsity_methods = ["NFT", "CEAG"]
    if args.full:
        args.gmp_epochs, args.ft_epochs, args.seeds, args.max_images = 15, 45, 5, None
    return args


def main(argv=None) -> None:
    args = parse(sys.argv[1:] if argv is None else argv)
    if not args.data.is_dir():
        print(f"skipping UTKFace: {args.data} not found")
        return
    start = time.perf_counter()
    results, figures = study(args)
    write_outputs(results, figures, args, time.perf_counter() - start)


if __name__ == "__main__":
    main()
