"""Constraint overhead where a step takes milliseconds: a short-step MLP through ``fit``.

The workload: an MLP 256-512-512-10 at 90% sparsity, batch 256, 40,000 rows of random
features, random groups (10, 100, 1000, 5000). Every method is fitted through the estimator
(1 GMP + 3 fine-tuning epochs; skorch's loop, callbacks and history included) and timed by
skorch's own epoch durations (``history[:, "dur"]``) over the fine-tuning epochs, divided by
the number of steps. NFT, CEAG and EL+RB fits alternate, the order rotated every round;
ratios are medians of the per-round differences over NFT's median (see ``_timing``), so the
slow drift of a shared machine cancels. A step of this MLP is a few milliseconds on a CPU,
about what a GPU step of a real model takes, so a fixed per-step cost shows here that the
CNN of ``ceag_overhead.py`` hides. On CUDA (``--device cuda``) the epoch durations include
skorch's per-batch loss read, the same for every method. One CPU thread by default: with two,
whole fits of the same method settle at either of two speeds (about 4.8 and 6.1 ms per step
on a 2-core machine), a spread that hides a few percent.

Whole fits still vary by a few percent from one run of the script to the next, so each
setting also gets a *paired step* measurement: the last fitted model of every method takes
``--steps`` training steps on the same fixed batch, the methods alternating step by step
(``train_step``: forward, constraints, backward, optimizer, masks; no data loading, history
or callbacks). The median difference to NFT's step is the constraints' own cost in the
setting of a real fit, where the model's weights fill the caches. Written to
benchmarks/results/short_step_overhead.json.

    python benchmarks/short_step_overhead.py [--groups 10 100 1000 5000] [--rounds 7] [--threads 1]
                                             [--steps 1500]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import warnings

import numpy as np
import torch
from torch import nn

from _timing import interleaved_samples, paired_ratio, write_json
from fairprune import FairPrunedClassifier
from fairprune.groups import FEATURES_KEY, GROUPS_KEY

METHODS = {"NFT": dict(method="nft"), "CEAG": dict(method="ceag"),
           "EL+RB": dict(method="equalized_loss", replay_buffer_size=40)}


def workload(n_rows: int, n_groups: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n_rows, 256), dtype=np.float32)
    y = rng.integers(0, 10, n_rows)
    groups = rng.integers(0, n_groups, n_rows)
    torch.manual_seed(seed)
    dense = nn.Sequential(nn.Linear(256, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(),
                          nn.Linear(512, 10))
    return dense, X, y, groups


def step_ms(dense, X, y, groups, method: str, args) -> tuple[float, FairPrunedClassifier]:
    """Mean milliseconds per step over the fine-tuning epochs of one fit, and the fit."""
    clf = FairPrunedClassifier(dense, sparsity=0.9, dense_layers=(), pruning_epochs=1,
                               max_epochs=args.epochs, batch_size=args.batch, verbose=0,
                               random_state=0, device=args.device, **METHODS[method])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clf.fit(X, y, groups=groups)
    steps = int(np.ceil(len(y) / args.batch))
    durations = clf.history[1:, "dur"]  # fine-tuning epochs only
    return 1e3 * float(np.mean(durations)) / steps, clf


def paired_steps(fitted: dict, X, y, groups, args) -> dict[str, list[float]]:
    """Milliseconds of every ``train_step`` of each fitted method on one fixed batch, the
    methods alternating (see the module docstring)."""
    rows = np.random.default_rng(1).choice(len(y), args.batch, replace=False)
    codes = fitted["NFT"].group_encoder_.transform(groups[rows])
    batch = ({FEATURES_KEY: torch.as_tensor(X[rows]), GROUPS_KEY: torch.as_tensor(codes)},
             torch.as_tensor(y[rows]))
    synchronize = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)

    def step(clf):
        def run():
            clf.train_step(batch)
            synchronize()  # timing only: the step itself never waits for the device
        return run

    samples = interleaved_samples({name: step(clf) for name, clf in fitted.items()},
                                  repeats=args.steps, warmup=20)
    return {name: [1e3 * t for t in times] for name, times in samples.items()}


def measure(n_groups: int, args) -> dict:
    dense, X, y, groups = workload(args.rows, n_groups)
    names = list(METHODS)
    samples: dict[str, list[float]] = {name: [] for name in names}
    fitted: dict[str, FairPrunedClassifier] = {}
    step_ms(dense, X, y, groups, "CEAG", args)  # warm-up
    for round_ in range(args.rounds):
        shift = round_ % len(names)
        for name in names[shift:] + names[:shift]:
            ms, fitted[name] = step_ms(dense, X, y, groups, name, args)
            samples[name].append(ms)
    paired = paired_steps(fitted, X, y, groups, args)

    def extra_ms(name):
        return statistics.median(paired[name]) - statistics.median(paired["NFT"])

    return {"groups": n_groups, "nft_ms": statistics.median(samples["NFT"]),
            "ceag_ms": statistics.median(samples["CEAG"]),
            "el_rb_ms": statistics.median(samples["EL+RB"]),
            "ceag_over_nft": paired_ratio(samples, "CEAG", "NFT"),
            "el_rb_over_nft": paired_ratio(samples, "EL+RB", "NFT"),
            "samples_ms": samples,
            "paired_nft_ms": statistics.median(paired["NFT"]),
            "paired_ceag_extra_ms": extra_ms("CEAG"), "paired_el_rb_extra_ms": extra_ms("EL+RB"),
            "paired_ceag_over_nft": paired_ratio(paired, "CEAG", "NFT"),
            "paired_el_rb_over_nft": paired_ratio(paired, "EL+RB", "NFT")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--groups", type=int, nargs="+", default=[10, 100, 1000, 5000])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--rows", type=int, default=40_000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads of torch")
    parser.add_argument("--steps", type=int, default=1500,
                        help="paired training steps per method (after the fits)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"device {args.device}, CPU threads {torch.get_num_threads()}, {args.rows} rows, "
          f"batch {args.batch}, {args.rounds} interleaved rounds")
    print(f"{'groups':>7} {'NFT ms':>8} {'CEAG ms':>8} {'EL+RB ms':>9} {'CEAG/NFT':>9} "
          f"{'EL+RB/NFT':>10} | paired: {'CEAG +ms':>8} {'EL+RB +ms':>9}")
    rows = []
    for n_groups in args.groups:
        row = measure(n_groups, args)
        rows.append(row)
        print(f"{n_groups:>7} {row['nft_ms']:8.2f} {row['ceag_ms']:8.2f} {row['el_rb_ms']:9.2f} "
              f"{row['ceag_over_nft']:9.3f} {row['el_rb_over_nft']:10.3f} | "
              f"{'':8}{row['paired_ceag_extra_ms']:8.3f} {row['paired_el_rb_extra_ms']:9.3f}",
              flush=True)
    path = write_json("short_step_overhead.json", {
        "machine": platform.processor() or platform.machine(), "torch": torch.__version__,
        "device": args.device, "threads": torch.get_num_threads(), "rows": args.rows,
        "batch": args.batch, "epochs": args.epochs, "rounds": args.rounds, "steps": args.steps,
        "results": rows})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
