"""How the cost of group-aware pruning and fine-tuning grows with the number of groups.

The face CNN of the studies (width 16, 3x32x32 inputs, first and last layers dense, 90%
unstructured masks) on 2,048 random images (a pass's cost does not depend on pixel values),
groups drawn uniformly at random. For 2, 10, 100 and 1000 groups, each in a fresh process:

* FairGRAPE's importance pass over the rows (batch 64, one forward per batch and one backward
  per group present in it) and its greedy choice at 90%, against one NFT training epoch over
  the same rows;
* a CEAG fine-tuning epoch (replay buffers of 40) against an NFT epoch (batch 128; the
  mean of 2 fine-tuning epochs each: a coarse figure, ``ceag_overhead.py`` measures the
  step's overhead precisely).

Time: wall seconds. Memory: the largest increase of the process's resident memory over its
value before the measured phase (sampled every 5 ms). Both as ratios to NFT's epoch. Written
to benchmarks/results/criteria_cost.json and plotted to docs/results/criteria_cost.png.

    python benchmarks/criteria_cost.py [--groups 2 10 100 1000] [--rows 2048]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sys
import threading
import time
from pathlib import Path

from _timing import RESULTS, write_json

DOCS_RESULTS = Path(__file__).resolve().parents[1] / "docs" / "results"


def _resident() -> int:
    import resource

    try:
        return int(Path("/proc/self/statm").read_text().split()[1]) * resource.getpagesize()
    except (OSError, IndexError, ValueError):
        return 0


class _Peak:
    """The peak increase of resident memory while the ``with`` block runs."""

    def __enter__(self):
        self.base, self.peak, self.running = _resident(), 0, True
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()
        self.start = time.perf_counter()
        return self

    def _sample(self):
        while self.running:
            self.peak = max(self.peak, _resident() - self.base)
            time.sleep(0.005)

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.start
        self.running = False
        self.thread.join()
        self.peak = max(self.peak, _resident() - self.base)


def _measure(task: str, n_groups: int, rows: int, queue) -> None:
    """One measurement in this (fresh) process: ``(seconds, peak bytes)`` on the queue."""
    import numpy as np
    import torch

    from fairprune import FairPrunedClassifier
    from fairprune.datasets.models import make_face_cnn
    from fairprune.pruning import MaskSet, magnitude_masks, prunable_layers
    from fairprune.pruning.fairgrape import greedy_keep_mask, group_importance

    import warnings

    warnings.simplefilter("ignore")  # random images: the dense model is untrained, on purpose
    torch.manual_seed(0)
    torch.set_num_threads(2)
    rng = np.random.default_rng(0)
    X = rng.normal(size=(rows, 3, 32, 32)).astype("float32")
    y = rng.integers(0, 5, rows)
    codes = rng.integers(0, n_groups, rows)
    model = make_face_cnn(5, width=16, flip=False)
    layers = prunable_layers(model)
    if task == "fairgrape":
        masks = MaskSet(magnitude_masks(model, layers, 0.5))
        masks.apply_(model)
        names = [f"{n}.weight" for n in layers]

        def batches():
            for start in range(0, rows, 64):
                yield (torch.as_tensor(X[start:start + 64]), torch.as_tensor(y[start:start + 64]),
                       torch.as_tensor(codes[start:start + 64]))

        def loss(logits, target):
            return torch.nn.functional.cross_entropy(logits, target, reduction="none")

        with _Peak() as cost:
            importance = group_importance(model, names, batches(), n_groups, loss,
                                          lambda m, x: m(x))
            for name, mask in masks.items():
                n_keep = mask.numel() - round(0.9 * mask.numel())
                greedy_keep_mask(importance[name], mask.bool(), n_keep)
        queue.put((cost.seconds, cost.peak))
        return
    clf = FairPrunedClassifier(model, sparsity=0.9, method=task, pruning_epochs=1,
                               max_epochs=2, verbose=0, lr_milestones=None)
    with _Peak() as cost:
        clf.fit(X, y, groups=codes)
    seconds = float(np.mean(clf.history[1:, "dur"]))  # fine-tuning epochs
    queue.put((seconds, cost.peak))


def measure(task: str, n_groups: int, rows: int) -> tuple[float, int]:
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=_measure, args=(task, n_groups, rows, queue))
    process.start()
    result = queue.get(timeout=1800)
    process.join()
    return result


def plot(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = [r["n_groups"] for r in results]
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    for key, label in (("fairgrape_time_ratio", "FairGRAPE importance + greedy"),
                       ("ceag_time_ratio", "CEAG epoch")):
        axes[0].plot(groups, [r[key] for r in results], marker="o", label=label)
    for key, label in (("fairgrape_peak_mib", "FairGRAPE importance + greedy"),
                       ("ceag_peak_mib", "CEAG fit"), ("nft_peak_mib", "NFT fit")):
        axes[1].plot(groups, [r[key] for r in results], marker="o", label=label)
    axes[0].set_ylabel("time / NFT epoch")
    axes[1].set_ylabel("peak memory increase (MiB)")
    for ax in axes:
        ax.set_xscale("log")
        ax.set_xlabel("groups")
        ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--groups", type=int, nargs="+", default=[2, 10, 100, 1000])
    parser.add_argument("--rows", type=int, default=2048)
    # the test suite's smoke runs (FAIRPRUNE_BENCH_OUT) keep the plot beside their JSON
    default_plot = (RESULTS if "FAIRPRUNE_BENCH_OUT" in os.environ else DOCS_RESULTS)
    parser.add_argument("--plot", type=Path, default=default_plot / "criteria_cost.png")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    results = []
    for n_groups in args.groups:
        nft, nft_peak = measure("nft", n_groups, args.rows)
        ceag, ceag_peak = measure("ceag", n_groups, args.rows)
        fairgrape, fairgrape_peak = measure("fairgrape", n_groups, args.rows)
        row = {"n_groups": n_groups, "nft_epoch_seconds": nft, "ceag_epoch_seconds": ceag,
               "fairgrape_seconds": fairgrape, "ceag_time_ratio": ceag / nft,
               "fairgrape_time_ratio": fairgrape / nft, "nft_peak_mib": nft_peak / 2**20,
               "ceag_peak_mib": ceag_peak / 2**20, "fairgrape_peak_mib": fairgrape_peak / 2**20}
        results.append(row)
        print(json.dumps(row), flush=True)
    write_json("criteria_cost.json", {"rows": args.rows, "results": results})
    plot(results, args.plot)
    print(f"wrote {RESULTS / 'criteria_cost.json'} and {args.plot}")


if __name__ == "__main__":
    main()
