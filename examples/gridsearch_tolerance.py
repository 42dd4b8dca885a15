"""Choose the tolerance with GridSearchCV: a Pipeline with preprocessing, accuracy and fairness
scorers, and a refit on the most accurate candidate that meets its tolerance on held-out folds.

The output lets you decide with the uncertainty in view: each candidate's fold mean with a
95% interval, which pairs of tolerances the folds tell apart (paired differences over the same
folds, ``fairprune.model_selection.compare_candidates``), and the refitted model's report on
a test split nobody tuned on, with bootstrap intervals and a verdict per group.

    python examples/gridsearch_tolerance.py [--quick]   # about 20 seconds on 2 cores
"""

import argparse
import warnings

import numpy as np
import pandas as pd
import torch
from sklearn.model_selection import GridSearchCV, StratifiedKFold, train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer

from fairprune import FairPrunedClassifier, FairnessToleranceWarning
from fairprune.datasets import load_digits_groups
from fairprune.groups import by_target
from fairprune.model_selection import best_feasible, compare_candidates
from fairprune.datasets.models import make_mlp, train_classifier
from fairprune.scorers import neg_max_excess_accuracy_gap_scorer, neg_pairwise_disparity_scorer


def main(quick: bool = False) -> GridSearchCV:
    X, y, _ = load_digits_groups()
    X, X_test, y, y_test = train_test_split(X, y, test_size=0.25, stratify=y, random_state=0)
    X64 = (X * 16).astype(np.float64)  # raw pixel counts; the pipeline rescales them
    torch.manual_seed(0)
    dense = train_classifier(make_mlp(64, 10), X, y, epochs=5 if quick else 30)
    pipe = make_pipeline(
        FunctionTransformer(lambda a: (a / 16).astype(np.float32)),
        FairPrunedClassifier(dense, sparsity=0.95, dense_layers=(), groups=by_target,
                             pruning_epochs=2 if quick else 5, max_epochs=2 if quick else 25,
                             lr=0.1, verbose=0),
    )
    grid = {"fairprunedclassifier__tolerance": [0.01, 0.05] if quick else [0.0, 0.01, 0.02, 0.05]}
    search = GridSearchCV(
        pipe, grid, cv=StratifiedKFold(2 if quick else 3, shuffle=True, random_state=0),
        scoring={"accuracy": "accuracy", "max_excess_accuracy_gap": neg_max_excess_accuracy_gap_scorer,
                 "pairwise_disparity": neg_pairwise_disparity_scorer},
        refit=best_feasible(tolerance_param="param_fairprunedclassifier__tolerance"),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FairnessToleranceWarning)
        search.fit(X64, y)
    param = "param_fairprunedclassifier__tolerance"
    accuracy, _ = compare_candidates(search.cv_results_, "accuracy", param=param, negate=False)
    disparity, differences = compare_candidates(search.cv_results_, param=param)
    table = pd.DataFrame({
        "tolerance": disparity["candidate"],
        "accuracy": accuracy["mean"], "acc_low": accuracy["ci_low"], "acc_high": accuracy["ci_high"],
        "max_psi_g": disparity["mean"], "psi_low": disparity["ci_low"],
        "psi_high": disparity["ci_high"]})
    with pd.option_context("display.float_format", "{:.3f}".format, "display.width", 120):
        print("Held-out folds: mean and 95% interval of each candidate (Student's t over the "
              "folds, corrected for their overlap)")
        print(table.to_string(index=False))
        print("\nPaired differences in held-out max psi_g (a - b, same folds):")
        print(differences.to_string(index=False))
    told_apart = differences[differences["distinguishable"]]
    print("Tolerances the folds tell apart: "
          + (", ".join(f"{a:g} vs {b:g}" for a, b in zip(told_apart["a"], told_apart["b"]))
             or "none: with these folds, the choice of eps makes no measurable difference"))
    print(f"\nrefit on candidate {search.best_index_}: {search.best_params_}")
    best = search.best_estimator_  # the pipeline: transform, then the pruned model's report
    report = best[-1].disparity_report(best[:-1].transform((X_test * 16).astype(np.float64)),
                                       y_test, groups=y_test, n_boot=1000, random_state=0)
    low, high = report.attrs["max_excess_accuracy_gap_ci"]
    print(f"Test split ({len(y_test)} rows, never tuned on): accuracy "
          f"{report.attrs['sparse_accuracy']:.3f}, max psi_g "
          f"{report.attrs['max_excess_accuracy_gap']:.3f} [95% interval {low:.3f}, {high:.3f}]; "
          "groups violating / undecided / within eps: "
          + " / ".join(str(int((report["verdict"] == v).sum()))
                       for v in ("violates", "undecided", "within")))
    return search


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    main(parser.parse_args().quick)
