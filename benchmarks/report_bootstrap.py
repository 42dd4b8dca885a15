"""Cost of intervals in a disparity report: ``n_boot`` paired, group-stratified resamples
against the plain report, on synthetic binary predictions.

The bootstrap draws per-group category counts from a multinomial (``fairprune.intervals``),
so its cost grows with ``n_boot × n_groups``, not with the number of rows. Medians of
interleaved runs; written to benchmarks/results/report_bootstrap.json.

    python benchmarks/report_bootstrap.py [--rows 10000] [--groups 10 100 1000] [--boot 1000]
"""

from __future__ import annotations

import argparse
import warnings

import numpy as np

from _timing import interleaved_medians, write_json
from fairprune import disparity_report


def predictions(rows: int, groups: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    g = rng.integers(0, groups, rows)
    y = rng.integers(0, 2, rows)
    dense = np.where(rng.random(rows) < 0.9, y, 1 - y)
    sparse = np.where(rng.random(rows) < 0.85, y, 1 - y)
    return y, dense, sparse, g


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--groups", type=int, nargs="+", default=[10, 100, 1000])
    parser.add_argument("--boot", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    rows = []
    print(f"{args.rows} rows, {args.boot} resamples")
    print(" groups   plain ms   intervals ms   ratio")
    for groups in args.groups:
        data = predictions(args.rows, groups)

        def plain(data=data):
            disparity_report(*data, tolerance=0.02)

        def intervals(data=data):
            disparity_report(*data, tolerance=0.02, n_boot=args.boot, random_state=0)

        with warnings.catch_warnings():  # small groups at 1000 groups of 10 rows: said once
            warnings.simplefilter("ignore")
            medians = interleaved_medians({"plain": plain, "intervals": intervals},
                                          args.repeats, warmup=1)
        row = {"groups": groups, "rows": args.rows, "n_boot": args.boot,
               "plain_ms": 1e3 * medians["plain"], "intervals_ms": 1e3 * medians["intervals"],
               "ratio": medians["intervals"] / medians["plain"]}
        rows.append(row)
        print(f"{groups:7d} {row['plain_ms']:10.1f} {row['intervals_ms']:14.1f} "
              f"{row['ratio']:7.1f}")
    print(f"wrote {write_json('report_bootstrap.json', {'rows': rows})}")


if __name__ == "__main__":
    main()
