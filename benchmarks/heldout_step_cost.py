"""Cost of held-out constraint estimates: ``constraint_data="heldout"`` runs one held-out
batch through the sparse model (eval mode, no gradient) at every training step.

Both variants fit the small CNN of ``_workload.py`` on the same synthetic data with the same
validation split (20%), 10 groups, batch 256, 1 GMP and ``--epochs`` CEAG epochs; the time
per fine-tuning step is the epochs' training time (skorch's ``dur`` minus nothing: both also
run the same validation pass) over their steps. Fits alternate; medians are reported and
written to benchmarks/results/heldout_step_cost.json.

    python benchmarks/heldout_step_cost.py [--samples 4096] [--epochs 3] [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import warnings

from skorch.dataset import ValidSplit

from _timing import write_json
from _workload import small_cnn, synthetic_data
from fairprune import FairPrunedClassifier


def step_ms(constraint_data: str, X, y, groups, dense, epochs: int, batch: int) -> float:
    clf = FairPrunedClassifier(dense, sparsity=0.9, dense_layers=(), pruning_epochs=1,
                               max_epochs=epochs, batch_size=batch, verbose=0,
                               train_split=ValidSplit(0.2, random_state=0),
                               constraint_data=constraint_data)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clf.fit(X, y, groups=groups)
    rows = clf.history[1:]  # the fine-tuning epochs
    steps = sum(sum("train_loss" in b for b in row["batches"]) for row in rows)
    return 1e3 * sum(row["dur"] for row in rows) / steps


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--samples", type=int, default=4096)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    X, y, groups = synthetic_data(args.samples, 10)
    dense = small_cnn()
    times = {"train": [], "heldout": []}
    for round_ in range(args.rounds):
        order = ["train", "heldout"] if round_ % 2 == 0 else ["heldout", "train"]
        for name in order:
            times[name].append(step_ms(name, X, y, groups, dense, args.epochs, args.batch))
    train, heldout = (statistics.median(times[n]) for n in ("train", "heldout"))
    result = {"samples": args.samples, "batch_size": args.batch, "epochs": args.epochs,
              "train_step_ms": train, "heldout_step_ms": heldout, "ratio": heldout / train}
    print(f"CEAG step with training estimates {train:.1f} ms, with held-out estimates "
          f"{heldout:.1f} ms: ratio {heldout / train:.3f}")
    print(f"wrote {write_json('heldout_step_cost.json', result)}")


if __name__ == "__main__":
    main()
