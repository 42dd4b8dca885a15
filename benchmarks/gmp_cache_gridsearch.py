"""GridSearchCV over the tolerance with and without the GMP cache (``memory=``).

Scikit-learn's digits (classes as groups), the 64-128-128-10 MLP of the test suite pruned to
95%, ``GridSearchCV`` over 4 tolerances with 3 stratified folds (12 fits, no refit), scored by
accuracy and the negated max excess accuracy gap. Two schedules: GMP-heavy (10 GMP + 5
fine-tuning epochs) and the estimator's defaults (15 + 45). Checks that ``cv_results_`` scores
are identical and writes the speed-ups to benchmarks/results/gmp_cache_gridsearch.json.
Searches with and without the cache alternate (``--rounds`` each, a cold cache every time);
the fastest of each is kept, as machine noise only ever adds time.

    python benchmarks/gmp_cache_gridsearch.py [--quick] [--rounds 2]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from sklearn.model_selection import GridSearchCV, StratifiedKFold

from _timing import write_json
from fairprune import FairPrunedClassifier
from fairprune.datasets import load_digits_groups
from fairprune.groups import by_target
from fairprune.datasets.models import make_mlp, train_classifier
from fairprune.scorers import neg_max_excess_accuracy_gap_scorer

SCHEDULES = {"gmp_heavy": dict(pruning_epochs=10, max_epochs=5),
             "defaults": dict(pruning_epochs=15, max_epochs=45)}
SCORES = ("accuracy", "max_excess_accuracy_gap")


def search(dense, X, y, schedule: dict, memory) -> tuple[float, dict]:
    clf = FairPrunedClassifier(dense, sparsity=0.95, dense_layers=(), groups=by_target,
                               lr=0.05, memory=memory, verbose=0, **schedule)
    grid = GridSearchCV(clf, {"tolerance": [0.005, 0.01, 0.02, 0.05]},
                        cv=StratifiedKFold(3, shuffle=True, random_state=0), refit=False,
                        scoring={"accuracy": "accuracy", "max_excess_accuracy_gap": neg_max_excess_accuracy_gap_scorer},
                        error_score="raise")
    start = time.perf_counter()
    grid.fit(X, y)
    return time.perf_counter() - start, grid.cv_results_


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="one tiny schedule (smoke test)")
    parser.add_argument("--rounds", type=int, default=2, help="alternating runs per variant")
    args = parser.parse_args()
    schedules = {"quick": dict(pruning_epochs=2, max_epochs=1)} if args.quick else SCHEDULES
    warnings.simplefilter("ignore")
    X, y, _ = load_digits_groups()
    torch.manual_seed(0)
    dense = train_classifier(make_mlp(X.shape[1], 10), X, y, epochs=30)
    rows = []
    for name, schedule in schedules.items():
        plain_times, cached_times = [], []
        for _ in range(args.rounds):  # alternate, keep the fastest of each: machine noise
            seconds, plain = search(dense, X, y, schedule, None)
            plain_times.append(seconds)
            with tempfile.TemporaryDirectory() as cache:  # a cold cache every round
                seconds, cached = search(dense, X, y, schedule, cache)
                stored = sum(1 for _ in Path(cache).rglob("*.gmp.pt"))
            cached_times.append(seconds)
        plain_s, cached_s = min(plain_times), min(cached_times)
        identical = all(np.array_equal(plain[f"split{k}_test_{s}"], cached[f"split{k}_test_{s}"])
                        for k in range(3) for s in SCORES)
        rows.append({"schedule": name, **schedule, "without_cache_s": plain_s,
                     "with_cache_s": cached_s, "speedup": plain_s / cached_s,
                     "gmp_phases_run": stored, "identical_scores": identical,
                     "all_times_s": {"without": plain_times, "with": cached_times}})
        print(f"{name:>9} ({schedule['pruning_epochs']} GMP + {schedule['max_epochs']} epochs): "
              f"{plain_s:6.1f} s -> {cached_s:6.1f} s with memory=, {plain_s / cached_s:.2f}x, "
              f"{stored} GMP phases run for 12 fits, identical cv_results_ scores: {identical}")
        if not identical:
            sys.exit("cv_results_ differ between the cached and the plain search")
    path = write_json("gmp_cache_gridsearch.json", {"fits": 12, "rows": rows})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
