"""Bounding what pruning does to true- and false-positive rates: CEAG on accuracy, on TPR and
on equalized odds, against naive fine-tuning.

Methods: NFT; CEAG on accuracy gaps (the paper); CEAG on TPR gaps (``gap_metric="tpr"``);
CEAG on TPR and TNR gaps (``gap_metric="equalized_odds"``). eps = 0.01.

Settings (binary targets):
  adult sex        UCI Adult income, sex groups (2), 99% of the hidden layer pruned with the
                   first and last layers dense (the demo's setting: 3 GMP + 12 fine-tuning
                   epochs, batch 256, lr 0.05), the reproduction's fixed split and dense MLP;
  adult race       the same with race groups (5);
  UTKFace gender / race   gender prediction, race groups, 90% (the CPU schedule of
                   ``reproduce_faces.py``, 3 GMP + 6 fine-tuning epochs, on a seeded
                   4,000-image subset at 32 px, the dense CNN trained the same way on it).
Seeds 0, 1, 2. Per run, on training and test rows: accuracy, max excess TPR gap, max excess
TNR gap and max excess accuracy gap; the test max excess TPR gap's 95% bootstrap interval.

    python experiments/rate_constraints.py            # the CPU study
    python experiments/rate_constraints.py --quick    # smoke form (seconds)

Rows go to ``<out>/rate_constraints_rows.jsonl`` as they come; started again with the same
arguments, the study skips the runs it already has.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shlex
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from fairprune import FairnessToleranceWarning, FairPrunedClassifier

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "experiments"))
import _tables as tables  # noqa: E402
import compare_criteria  # noqa: E402
import reproduce  # noqa: E402

TOLERANCE = 0.01
METHODS = {
    "NFT": dict(method="nft"),
    "CEAG (accuracy)": dict(method="ceag"),
    "CEAG (TPR)": dict(method="ceag", gap_metric="tpr"),
    "CEAG (equalized odds)": dict(method="ceag", gap_metric="equalized_odds"),
}


def adult_settings(quick: bool) -> list[dict]:
    out = []
    for setting in reproduce.settings(quick):
        if setting.name != ("adult race" if quick else "adult race x sex"):
            continue
        Xtr, Xte, ytr, yte, gtr, gte = setting.data
        fit = {**setting.fit, "dense_layers": ("first", "last")}
        dense = (lambda seed, s=setting: reproduce.train_dense(s.data[0], s.data[2], seed,
                                                                  s.dense_epochs))
        parts = {"adult race": 0} if quick else {"adult sex": 1, "adult race": 0}
        for name, part in parts.items():
            labels = [np.array([str(g).split(" / ")[part] for g in groups])
                      for groups in (gtr, gte)]
            out.append(dict(name=name, data=(Xtr, Xte, ytr, yte, *labels), dense=dense,
                            sparsities=(0.99,), fit=fit))
    return out


def face_settings(args) -> list[dict]:
    options = argparse.Namespace(**{**vars(args), "face_settings": ["gender / race"],
                                    "face_sparsities": args.face_sparsities})
    return compare_criteria.face_settings(options)


def run_one(setting, dense, sparsity, method, seed, args) -> dict:
    Xtr, Xte, ytr, yte, gtr, gte = setting["data"]
    params = {**dict(sparsity=sparsity, tolerance=TOLERANCE, random_state=seed, verbose=0,
                     device=args.device), **setting["fit"], **METHODS[method]}
    clf = FairPrunedClassifier(dense, **params)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FairnessToleranceWarning)
        clf.fit(Xtr, ytr, groups=gtr)
    train = clf.train_report_
    test = clf.disparity_report(Xte, yte, groups=gte, n_boot=args.n_boot, random_state=seed)
    low, high = test.attrs.get("max_excess_tpr_gap_ci", (np.nan, np.nan))
    row = {"setting": setting["name"], "n_groups": len(clf.groups_), "sparsity": sparsity,
           "method": method, "seed": seed, "seconds": time.perf_counter() - start,
           "test_max_tpr_low": low, "test_max_tpr_high": high}
    for split, report in (("train", train), ("test", test)):
        row[f"{split}_acc"] = report.attrs["sparse_accuracy"]
        row[f"{split}_max_tpr"] = report.attrs["max_excess_tpr_gap"]
        row[f"{split}_max_tnr"] = report.attrs["max_excess_tnr_gap"]
        row[f"{split}_max_acc_gap"] = report.attrs["max_excess_accuracy_gap"]
    return row


def parse(argv) -> argparse.Namespace:
    """The study's arguments (``--quick`` applied)."""
    parser = compare_criteria.study_parser(__doc__.splitlines()[0], [0.9])
    return compare_criteria.apply_quick(parser.parse_args(argv))


def main(argv=None) -> None:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse(argv)
    start = time.perf_counter()
    log = tables.RowLog(args.out / "rate_constraints_rows.jsonl",
                        compare_criteria.run_arguments(args))
    results = compare_criteria.run_all([*adult_settings(args.quick), *face_settings(args)],
                                       lambda setting: list(METHODS), log, run_one, args)
    seconds = time.perf_counter() - start
    args.out.mkdir(parents=True, exist_ok=True)
    results.to_json(args.out / "rate_constraints.json", orient="records", indent=1)
    metrics = ["train_acc", "test_acc", "train_max_tpr", "test_max_tpr", "train_max_tnr",
               "test_max_tnr", "train_max_acc_gap", "test_max_acc_gap"]
    table = tables.summary_table(results, ["setting", "n_groups", "sparsity", "method"],
                                 metrics, list(METHODS))
    shown = [a for i, a in enumerate(argv) if a != "--out" and (i == 0 or argv[i - 1] != "--out")]
    header = (
        f"Produced by `{shlex.join(['python', 'experiments/rate_constraints.py', *shown])}` on "
        f"{dt.date.today().isoformat()} in {seconds / 60:.1f} min (torch {torch.__version__}, "
        f"device {args.device}, {torch.get_num_threads()} CPU threads). eps = {TOLERANCE}. "
        f"Mean ± std over seeds {args.seeds}; fractions (0.01 = 1 point). max_tpr / max_tnr / "
        "max_acc_gap: the largest excess drop of a group's true-positive rate, true-negative "
        "rate and accuracy.\n\n")
    (args.out / "rate_constraints.md").write_text(header + table.to_markdown(index=False) + "\n")
    (args.out / "rate_constraints_run.json").write_text(json.dumps({"seconds": seconds,
                                                                    "argv": argv}))
    print("\n" + header + table.to_markdown(index=False))


if __name__ == "__main__":
    main()
