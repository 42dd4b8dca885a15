"""UTKFace: gender prediction with race groups (the paper's setting) on a folder of
`[age]_[gender]_[race]_[date].jpg` images you have; intersectional race x gender groups too.

    python examples/utkface.py PATH/TO/UTKFace [--quick]
"""

import argparse
import warnings

import numpy as np
import pandas as pd
import torch
from sklearn.model_selection import train_test_split

from fairprune import FairPrunedClassifier, FairnessToleranceWarning
from fairprune.datasets import load_utkface
from fairprune.datasets.models import make_image_cnn, train_classifier


def main(folder: str, quick: bool = False) -> pd.DataFrame:
    X, y, groups = load_utkface(folder, target="gender", image_size=32)
    race = groups["race"].to_numpy()
    race_gender = np.empty(len(y), dtype=object)  # 1-D array of (race, gender) tuples
    race_gender[:] = list(zip(groups["race"], groups["gender"]))
    idx_train, idx_test = train_test_split(np.arange(len(y)), test_size=0.2, random_state=0,
                                           stratify=race if not quick else None)
    torch.manual_seed(0)
    dense = train_classifier(make_image_cnn(2), X[idx_train], y[idx_train], epochs=2 if quick else 20)
    rows = []
    for name, labels in (("race", race), ("race x gender", race_gender)):
        for method in ("nft", "ceag"):
            clf = FairPrunedClassifier(dense, method=method, sparsity=0.9, tolerance=0.01,
                                       pruning_epochs=1 if quick else 15,
                                       max_epochs=1 if quick else 45, verbose=0)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FairnessToleranceWarning)
                clf.fit(X[idx_train], y[idx_train], groups=labels[idx_train])
            test = clf.disparity_report(X[idx_test], y[idx_test], groups=labels[idx_test])
            rows.append({"groups": name, "method": method,
                         "train max psi": clf.train_report_.attrs["max_excess_accuracy_gap"],
                         "test acc": test.attrs["sparse_accuracy"],
                         "test max psi": test.attrs["max_excess_accuracy_gap"]})
    table = pd.DataFrame(rows)
    print(table.round(4).to_string(index=False))
    return table


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    main(args.folder, args.quick)
