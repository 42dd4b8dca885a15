"""Plot the dynamics of CEAG from `history`: multipliers and excess accuracy gaps per epoch.

    python examples/plot_history.py [--quick] [--out ceag_dynamics.png]   # about 10 seconds on 2 cores
"""

import argparse
import warnings

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from fairprune import FairPrunedClassifier, FairnessToleranceWarning  # noqa: E402
from fairprune.datasets import load_digits_groups  # noqa: E402
from fairprune.datasets.models import make_mlp, train_classifier  # noqa: E402


def main(quick: bool = False, out: str = "ceag_dynamics.png") -> None:
    X, y, _ = load_digits_groups()
    torch.manual_seed(0)
    dense = train_classifier(make_mlp(64, 10), X, y, epochs=5 if quick else 30)
    clf = FairPrunedClassifier(dense, sparsity=0.98, tolerance=0.02, dense_layers=(),
                               pruning_epochs=2 if quick else 10, max_epochs=3 if quick else 50,
                               lr=0.1, verbose=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FairnessToleranceWarning)
        clf.fit(X, y, groups=y)
    epochs = np.arange(1, len(clf.history) + 1)
    multipliers = np.array(clf.history[:, "multipliers"])  # epochs x groups
    psi = np.array(clf.history[:, "train_excess_accuracy_gap"])
    fig, (top, bottom) = plt.subplots(2, 1, sharex=True, figsize=(7, 5))
    top.plot(epochs, multipliers)
    top.set_ylabel("multiplier λ_g")
    bottom.plot(epochs, psi)
    bottom.axhline(clf.tolerance, color="crimson", linestyle="--", label="ε")
    bottom.axvline(clf.pruning_epochs + 0.5, color="grey", linestyle=":", label="end of GMP")
    bottom.set_ylabel("ψ_g (epoch's training predictions)")
    bottom.set_xlabel("epoch")
    bottom.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out)
    print("saved", out, "- final multipliers:", np.round(multipliers[-1], 4).tolist())


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default="ceag_dynamics.png")
    args = parser.parse_args()
    main(args.quick, args.out)
