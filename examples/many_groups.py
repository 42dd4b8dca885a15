"""Many groups: 40 intersectional groups on digits (class x ink-level quartile), CEAG with
one constraint per group, and the disparity plot restricted to the worst groups.

    python examples/many_groups.py [--quick] [--out many_groups.png]   # about 15 seconds on 2 cores
"""

import argparse
import warnings

import numpy as np
import torch

from fairprune import FairPrunedClassifier, FairnessToleranceWarning, plot_disparity
from fairprune.datasets import load_digits_groups
from fairprune.datasets.models import make_mlp, train_classifier


def main(quick: bool = False, out: str = "many_groups.png") -> None:
    X, y, _ = load_digits_groups()
    ink = np.digitize(X.sum(1), np.quantile(X.sum(1), [0.25, 0.5, 0.75]))
    groups = [(int(c), int(q)) for c, q in zip(y, ink)]  # 10 classes x 4 quartiles
    torch.manual_seed(0)
    dense = train_classifier(make_mlp(64, 10), X, y, epochs=5 if quick else 30)
    reports = {}
    for method in ("nft", "ceag"):
        clf = FairPrunedClassifier(dense, method=method, sparsity=0.98, tolerance=0.03,
                                   dense_layers=(), pruning_epochs=2 if quick else 10,
                                   max_epochs=2 if quick else 50, lr=0.1, verbose=0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FairnessToleranceWarning)
            clf.fit(X, y, groups=groups)
        reports[method.upper()] = clf.train_report_
        print(f"{method}: {len(clf.groups_)} groups, max psi {clf.train_report_.attrs['max_excess_accuracy_gap']:.3f}, "
              f"groups over eps {clf.train_report_.attrs['n_violating']}, "
              f"active multipliers {(clf.multipliers_ > 0).sum()}")
    ax = plot_disparity(reports, top_k=15)
    ax.figure.tight_layout()
    ax.figure.savefig(out)
    print("saved", out)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default="many_groups.png")
    args = parser.parse_args()
    main(args.quick, args.out)
