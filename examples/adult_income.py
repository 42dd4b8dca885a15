"""UCI Adult: income prediction, race and race x sex (intersectional) groups, at high sparsity,
comparing NFT, EL, EL+RB and CEAG on held-out data.

    python examples/adult_income.py [--data ../shared/data/adult/adult.data] [--quick]   # about 50 seconds on 2 cores
"""

import argparse
import sys
import warnings
from pathlib import Path

import pandas as pd
import torch
from sklearn.model_selection import train_test_split

from fairprune import FairPrunedClassifier, FairnessToleranceWarning
from fairprune.datasets import adult_preprocessor, load_adult
from fairprune.datasets.models import make_mlp, train_classifier

DEFAULT = Path(__file__).resolve().parents[2] / "shared" / "data" / "adult" / "adult.data"
METHODS = {"NFT": dict(method="nft"), "EL": dict(method="equalized_loss", replay_buffer_size=0),
           "EL+RB": dict(method="equalized_loss"), "CEAG": dict(method="ceag")}


def main(data: Path, quick: bool = False) -> None:
    if not data.exists():
        raise SystemExit(f"adult_income.py: UCI Adult not found at {data}. Pass --data "
                         "PATH/TO/adult.data (the UCI file), or use "
                         "fairprune.datasets.fetch_adult() to download it into the data home.")
    X, y, groups = load_adult(data)
    strata = groups["race"] + groups["sex"] + y.astype(str)
    X_train, X_test, y_train, y_test, g_train, g_test = train_test_split(
        X, y, groups, test_size=0.2, stratify=strata, random_state=0)
    pre = adult_preprocessor().fit(X_train)  # statistics from the training rows only

    def encoded(rows, attributes):
        frame = pd.DataFrame(pre.transform(rows)).add_prefix("f")
        frame[["race", "sex"]] = attributes[["race", "sex"]].to_numpy()
        return frame

    train, test = encoded(X_train, g_train), encoded(X_test, g_test)
    if quick:
        train, y_train = train.iloc[:4000], y_train[:4000]
    torch.manual_seed(0)
    features = train.drop(columns=["race", "sex"]).to_numpy("float32")
    dense = train_classifier(make_mlp(features.shape[1], 2), features, y_train, epochs=2 if quick else 10,
                             batch_size=128)
    methods = {k: METHODS[k] for k in (("NFT", "CEAG") if quick else METHODS)}
    for locator in ("race", ["race", "sex"]):
        keep = [locator] if isinstance(locator, str) else locator
        unused = [c for c in ("race", "sex") if c not in keep]  # string columns must not reach X
        train_x, test_x = train.drop(columns=unused), test.drop(columns=unused)
        rows = []
        for name, params in methods.items():
            clf = FairPrunedClassifier(dense, groups=locator, sparsity=0.99, tolerance=0.01,
                                       dense_layers=(), pruning_epochs=1 if quick else 3,
                                       max_epochs=1 if quick else 12, lr=0.05, batch_size=256,
                                       verbose=0, **params)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FairnessToleranceWarning)
                clf.fit(train_x, y_train)  # the locator reads the group column(s) from the frame
            test_report = clf.disparity_report(test_x, y_test)
            rows.append({"method": name, "train max psi": clf.train_report_.attrs["max_excess_accuracy_gap"],
                         "test acc": test_report.attrs["sparse_accuracy"],
                         "test max psi": test_report.attrs["max_excess_accuracy_gap"],
                         "test Psi_PW": test_report.attrs["pairwise_disparity"]})
        print(f"\ngroups={locator!r}, 99% sparsity, eps=0.01")
        print(pd.DataFrame(rows).round(4).to_string(index=False))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    main(args.data, args.quick)
    sys.exit(0)
