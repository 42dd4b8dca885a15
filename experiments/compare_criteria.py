"""The field's fair-pruning methods side by side: magnitude, FairGRAPE and learned masks, each
with naive or constrained fine-tuning.

Methods (pruning criterion + fine-tuning):
  NFT                 magnitude (GMP) + naive fine-tuning
  CEAG                magnitude (GMP) + CEAG (the paper)
  FairGRAPE + NFT     FairGRAPE's group-balanced importance + naive fine-tuning (as published,
                      on this script's schedule)
  FairGRAPE + CEAG    FairGRAPE + CEAG
  Bi-level + CEAG     learned masks under CEAG's Lagrangian + CEAG (our interpretation)
  Bi-level (penalty)  learned masks under the two-group parity penalty + naive fine-tuning
                      (two-group settings only: the bi-level paper's form)

Settings: UTKFace race / race and race / race x gender at 60% and 90% (the CPU schedule of
``reproduce_faces.py``, 3 GMP + 6 fine-tuning epochs, eps = 0.01, on a seeded 4,000-image
subset at 32 px, a third of the reproduction's 12,000, for time; the dense CNN trained the
same way on it), UCI Adult race x sex at 99% with the first and last layers dense (the
demo's setting) and Adult sex (two groups, for the penalty form), scikit-learn's digits with
classes as groups at 95%. Seeds 0, 1, 2. Per run: training and test accuracy, max psi_g and
Psi_PW, the test max psi_g's 95% bootstrap interval (1,000 paired, group-stratified
resamples), and the pruning phase's wall time and peak memory (the largest increase of the
process's resident memory over its value when the fit starts, sampled every 5 ms).

    python experiments/compare_criteria.py            # the CPU study (see the docs for its time)
    python experiments/compare_criteria.py --quick    # smoke form (seconds)

Every run's row is appended to ``<out>/criteria_rows.jsonl``: started again with the same
arguments after an interruption, the study skips the runs it already has.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shlex
import sys
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from skorch.callbacks import Callback
from sklearn.model_selection import train_test_split

from fairprune import FairnessToleranceWarning, FairPrunedClassifier
from fairprune.pruning import BiLevel

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "experiments"))
import _tables as tables  # noqa: E402
import reproduce  # noqa: E402
import reproduce_faces as faces  # noqa: E402

METHODS = {
    "NFT": dict(method="nft"),
    "CEAG": dict(method="ceag"),
    "FairGRAPE + NFT": dict(method="nft", pruning_criterion="fairgrape"),
    "FairGRAPE + CEAG": dict(method="ceag", pruning_criterion="fairgrape"),
    "Bi-level + CEAG": dict(method="ceag", pruning_criterion="bilevel"),
    "Bi-level (penalty) + NFT": dict(method="nft",
                                     pruning_criterion=BiLevel(fairness="penalty")),
}
TWO_GROUP_ONLY = {"Bi-level (penalty) + NFT"}


def resident_bytes() -> int:
    """The process's resident memory now (Linux ``/proc``; 0 elsewhere)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return 0
    import resource

    return pages * resource.getpagesize()


class PruningPhaseCost(Callback):
    """Wall time and peak resident-memory increase of a fit's pruning phase (its setup, the
    dense reference and every pruning epoch), sampled by a thread every 5 ms."""

    def on_train_begin(self, net, **kwargs):
        self.start_, self.base_, self.peak_ = time.perf_counter(), resident_bytes(), 0
        self.seconds_, self.running_ = None, True
        self.thread_ = threading.Thread(target=self._sample, daemon=True)
        self.thread_.start()

    def _sample(self):
        while self.running_:
            self.peak_ = max(self.peak_, resident_bytes() - self.base_)
            time.sleep(0.005)

    def on_epoch_begin(self, net, **kwargs):
        if len(net.history) == net.pruning_epochs + 1 and self.seconds_ is None:
            self._stop()

    def on_train_end(self, net, **kwargs):
        if self.seconds_ is None:
            self._stop()

    def _stop(self):
        self.seconds_ = time.perf_counter() - self.start_
        self.running_ = False
        self.thread_.join()

    def __getstate__(self):
        state = self.__dict__.copy()
        state.pop("thread_", None)
        return state


def face_settings(args) -> list[dict]:
    out = []
    if not args.data.is_dir():
        print(f"skipping UTKFace: {args.data} not found")
        return out
    cache = faces.get_data_home() / "reproduce_faces"
    for name in args.face_settings:
        target, columns = faces.SETTINGS[name]
        X, y, frame = faces.load_utkface(args.data, target=target, image_size=args.image_size,
                                         max_images=args.max_images)
        groups = faces.group_labels(frame, columns)
        strata = pd.Series(y).astype(str) + "|" + frame["race"] + "|" + frame["gender"]
        try:
            split = train_test_split(X, y, groups, test_size=0.2, stratify=strata,
                                     random_state=0)
        except ValueError:  # tiny subsets (--quick): strata of one image
            split = train_test_split(X, y, groups, test_size=0.2, stratify=y, random_state=0)
        n_classes = int(y.max()) + 1

        def dense(seed, split=split, n_classes=n_classes):
            return faces.dense_model(split[0], split[2], n_classes, seed, args.width,
                                     args.dense_epochs, cache)

        out.append(dict(name=f"UTKFace {name}", data=split, dense=dense,
                        sparsities=args.face_sparsities, tolerance=faces.TOLERANCE,
                        fit=dict(pruning_epochs=args.gmp_epochs, max_epochs=args.ft_epochs)))
    return out


def tabular_settings(args) -> list[dict]:
    out = []
    for setting in reproduce.settings(args.quick):
        if setting.name == "digits (classes)":
            fit, sparsities = setting.fit, (setting.sparsities[0],)
        elif setting.name == "adult race x sex":
            fit, sparsities = {**setting.fit, "dense_layers": ("first", "last")}, (0.99,)
        elif setting.name == "adult race" and args.quick:
            fit, sparsities = setting.fit, (0.9,)
        else:
            continue
        out.append(dict(name=setting.name, data=setting.data, sparsities=sparsities,
                        tolerance=setting.tolerance, fit=fit,
                        dense=lambda seed, s=setting: reproduce.train_dense(
                            s.data[0], s.data[2], seed, s.dense_epochs)))
        if setting.name == "adult race x sex":  # the two-group setting of the penalty form
            Xtr, Xte, ytr, yte, gtr, gte = setting.data
            sex = [np.array([label.split(" / ")[1] for label in g]) for g in (gtr, gte)]
            out.append(dict(out[-1], name="adult sex", data=(Xtr, Xte, ytr, yte, *sex)))
    return out


def run_one(setting, dense, sparsity, method, seed, args) -> dict:
    Xtr, Xte, ytr, yte, gtr, gte = setting["data"]
    cost = PruningPhaseCost()
    params = {**dict(sparsity=sparsity, tolerance=setting["tolerance"], random_state=seed,
                     verbose=0, device=args.device, callbacks=[("pruning_cost", cost)]),
              **setting["fit"], **METHODS[method]}
    clf = FairPrunedClassifier(dense, **params)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FairnessToleranceWarning)
        clf.fit(Xtr, ytr, groups=gtr)
    seconds = time.perf_counter() - start
    train = clf.train_report_
    test = clf.disparity_report(Xte, yte, groups=gte, n_boot=args.n_boot, random_state=seed)
    low, high = test.attrs.get("max_excess_accuracy_gap_ci", (np.nan, np.nan))
    return {
        "setting": setting["name"], "n_groups": len(clf.groups_), "sparsity": sparsity,
        "method": method, "seed": seed,
        "train_acc": train.attrs["sparse_accuracy"], "test_acc": test.attrs["sparse_accuracy"],
        "train_max_psi": train.attrs["max_excess_accuracy_gap"],
        "test_max_psi": test.attrs["max_excess_accuracy_gap"],
        "test_max_psi_low": low, "test_max_psi_high": high,
        "train_psi_pw": train.attrs["pairwise_disparity"],
        "test_psi_pw": test.attrs["pairwise_disparity"],
        "fit_status": clf.fit_status_,
        "pruning_seconds": cost.seconds_, "pruning_peak_mib": cost.peak_ / 2**20,
        "seconds": seconds,
    }


def methods_for(setting: dict, methods) -> list[str]:
    """The methods a setting runs: the penalty form only with two groups, and the two-group
    setting (there for the penalty form) only with NFT and CEAG beside it."""
    two_groups = len(np.unique(setting["data"][4])) == 2
    if two_groups:
        return [m for m in methods if m in TWO_GROUP_ONLY | {"NFT", "CEAG"}]
    return [m for m in methods if m not in TWO_GROUP_ONLY]


def run_all(settings, methods_of, log: tables.RowLog, run_one, args) -> pd.DataFrame:
    """Every (setting, seed, sparsity, method) run, printed as it ends; runs the row log
    already has are taken from it, and a dense model is trained only when a run needs it."""
    rows = []
    for setting in settings:
        for seed in args.seeds:
            dense = None
            for sparsity in setting["sparsities"]:
                for method in methods_of(setting):
                    row = log.done(setting["name"], sparsity, method, seed)
                    if row is None:  # not computed by an interrupted run of the same study
                        dense = setting["dense"](seed) if dense is None else dense
                        row = run_one(setting, dense, sparsity, method, seed, args)
                        log.add(row)
                    rows.append(row)
                    print(" ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}"
                                   for k, v in row.items()), flush=True)
    return pd.DataFrame(rows)


def study(args) -> pd.DataFrame:
    log = tables.RowLog(args.out / "criteria_rows.jsonl", run_arguments(args))
    return run_all([*tabular_settings(args), *face_settings(args)],
                   lambda setting: methods_for(setting, args.methods), log, run_one, args)


def run_arguments(args) -> dict:
    """The arguments that change a run's numbers (a resumed study must have the same)."""
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in sorted(vars(args).items())
            if k not in ("out", "data", "methods", "face_settings", "seeds")}


def summary_table(results: pd.DataFrame) -> pd.DataFrame:
    results = results.assign(test_max_psi_ci=[
        f"[{lo:.3f}, {hi:.3f}]" for lo, hi in zip(results["test_max_psi_low"],
                                                   results["test_max_psi_high"])])
    metrics = ["train_acc", "test_acc", "train_max_psi", "test_max_psi", "train_psi_pw",
               "test_psi_pw", "pruning_seconds", "pruning_peak_mib"]
    table = tables.summary_table(results, ["setting", "n_groups", "sparsity", "method"],
                                 metrics, list(METHODS))
    seed0 = results[results["seed"] == results["seed"].min()].set_index(
        ["setting", "sparsity", "method"])["test_max_psi_ci"]
    table["test_max_psi_ci (first seed)"] = [
        seed0.get((s, p, m), "") for s, p, m in zip(table["setting"], table["sparsity"],
                                                     table["method"])]
    return table


def study_parser(description: str, face_sparsities: list[float]) -> argparse.ArgumentParser:
    """The arguments this study shares with ``rate_constraints.py``: data, seeds, the face
    settings' scale and schedule, the bootstrap, the device and ``--quick``."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--data", type=Path, default=faces.UTKFACE)
    parser.add_argument("--out", type=Path, default=ROOT / "experiments" / "results")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--face-sparsities", nargs="+", type=float, default=face_sparsities)
    parser.add_argument("--max-images", type=int, default=4000)
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--dense-epochs", type=int, default=40)
    parser.add_argument("--gmp-epochs", type=int, default=3)
    parser.add_argument("--ft-epochs", type=int, default=6)
    parser.add_argument("--n-boot", type=int, default=1000)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--quick", action="store_true", help="smoke form: seconds")
    return parser


def apply_quick(args: argparse.Namespace) -> argparse.Namespace:
    """The smoke form: one seed, a tiny face subset and schedules (checks the pipeline)."""
    if args.quick:
        args.seeds, args.max_images, args.image_size, args.width = [0], 300, 16, 4
        args.dense_epochs, args.gmp_epochs, args.ft_epochs, args.n_boot = 2, 1, 1, 50
    return args


def parse(argv) -> argparse.Namespace:
    """The study's arguments (``--quick`` applied)."""
    parser = study_parser(__doc__.splitlines()[0], [0.6, 0.9])
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--face-settings", nargs="*", default=["race / race",
                                                                 "race / race x gender"],
                        choices=list(faces.SETTINGS))
    args = apply_quick(parser.parse_args(argv))
    if args.quick:
        args.face_settings, args.face_sparsities = ["race / race"], [0.9]
    return args


def main(argv=None) -> None:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse(argv)
    start = time.perf_counter()
    results = study(args)
    seconds = time.perf_counter() - start
    args.out.mkdir(parents=True, exist_ok=True)
    results.to_json(args.out / "criteria.json", orient="records", indent=1)
    shown = [a for i, a in enumerate(argv) if a != "--out" and (i == 0 or argv[i - 1] != "--out")]
    header = (
        f"Produced by `{shlex.join(['python', 'experiments/compare_criteria.py', *shown])}` on "
        f"{dt.date.today().isoformat()} in {seconds / 60:.1f} min (torch {torch.__version__}, "
        f"device {args.device}, {torch.get_num_threads()} CPU threads). Mean ± std over seeds "
        f"{args.seeds}; fractions (0.01 = 1 accuracy point); pruning_seconds and "
        "pruning_peak_mib: the pruning phase's wall time and peak resident-memory increase.\n\n")
    table = summary_table(results)
    (args.out / "criteria.md").write_text(header + table.to_markdown(index=False) + "\n")
    (args.out / "criteria_run.json").write_text(json.dumps({"seconds": seconds, "argv": argv}))
    print("\n" + header + table.to_markdown(index=False))


if __name__ == "__main__":
    main()
