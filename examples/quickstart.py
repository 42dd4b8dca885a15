"""Quickstart: prune a digits classifier with CEAG and read the disparity report.

    python examples/quickstart.py [--quick]   # about 17 seconds on 2 cores
"""

import argparse

import torch

from fairprune import FairPrunedClassifier
from fairprune.datasets import load_digits_groups
from fairprune.datasets.models import make_mlp, train_classifier


def main(quick: bool = False) -> None:
    X, y, groups = load_digits_groups()
    torch.manual_seed(0)
    dense = train_classifier(make_mlp(64, 10), X, y, epochs=5 if quick else 30)

    clf = FairPrunedClassifier(
        dense, sparsity=0.9, tolerance=0.02, method="ceag",
        pruning_epochs=2 if quick else 5, max_epochs=2 if quick else 20, lr=0.05,
    )
    clf.fit(X, y, groups=groups["digit"])
    report = clf.disparity_report(X, y, groups=groups["digit"])
    print(report.round(3).to_string(index=False))
    print({k: report.attrs[k] for k in ("overall_gap", "pairwise_disparity", "max_excess_accuracy_gap")})
    print(clf.sparsity_table().round(3).to_string(index=False))
    sparse_model = clf.export()  # plain nn.Module, zeros folded in
    print(type(sparse_model).__name__, "with", sum(int((p == 0).sum()) for p in sparse_model.parameters()),
          "zero parameters")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    main(parser.parse_args().quick)
