"""Choose the tolerance with GridSearchCV: a Pipeline with preprocessing, accuracy and fairness
scorers, and a refit on the most accurate candidate that meets its tolerance on held-out folds.

    python examples/gridsearch_tolerance.py [--quick]
"""

import argparse
import warnings

import numpy as np
import pandas as pd
import torch
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer

from fairprune import FairPrunedClassifier, FairnessToleranceWarning
from fairprune.datasets import load_digits_groups
from fairprune.groups import by_target
from fairprune.model_selection import best_feasible
from fairprune.datasets.models import make_mlp, train_classifier
from fairprune.scorers import neg_max_excess_accuracy_gap_scorer, neg_pairwise_disparity_scorer


def main(quick: bool = False) -> GridSearchCV:
    X, y, _ = load_digits_groups()
    X64 = (X * 16).astype(np.float64)  # raw pixel counts; the pipeline rescales them
    torch.manual_seed(0)
    dense = train_classifier(make_mlp(64, 10), X, y, epochs=5 if quick else 30)
    pipe = make_pipeline(
        FunctionTransformer(lambda a: (a / 16).astype(np.float32)),
        FairPrunedClassifier(dense, sparsity=0.97, dense_layers=(), groups=by_target,
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
    columns = ["param_fairprunedclassifier__tolerance", "mean_test_accuracy", "mean_test_max_excess_accuracy_gap",
               "mean_test_pairwise_disparity"]
    print(pd.DataFrame(search.cv_results_)[columns].round(4).to_string(index=False))
    print("refit on candidate", search.best_index_, search.best_params_)
    return search


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    main(parser.parse_args().quick)
