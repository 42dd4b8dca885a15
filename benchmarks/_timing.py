"""Side-by-side timing helpers: interleave the variants so drift hits all of them equally."""

from __future__ import annotations

import json
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path

# FAIRPRUNE_BENCH_OUT redirects the JSON files (the test suite's smoke runs use a temp dir)
RESULTS = Path(os.environ.get("FAIRPRUNE_BENCH_OUT", Path(__file__).resolve().parent / "results"))


def interleaved_samples(variants: dict[str, Callable[[], None]], repeats: int, warmup: int = 3):
    """Seconds of every call of each variant: rounds of one call per variant, the order
    rotated every round so that no variant always follows the same one."""
    for fn in variants.values():
        for _ in range(warmup):
            fn()
    names = list(variants)
    samples: dict[str, list[float]] = {name: [] for name in variants}
    for round_ in range(repeats):
        shift = round_ % len(names)
        for name in names[shift:] + names[:shift]:
            start = time.perf_counter()
            variants[name]()
            samples[name].append(time.perf_counter() - start)
    return samples


def interleaved_medians(variants: dict[str, Callable[[], None]], repeats: int, warmup: int = 3):
    """Median seconds per call of each variant, calls interleaved round-robin."""
    samples = interleaved_samples(variants, repeats, warmup)
    return {name: statistics.median(values) for name, values in samples.items()}


def paired_ratio(samples: dict[str, list[float]], variant: str, base: str) -> float:
    """``variant`` time over ``base`` time from the median of the per-round differences.

    Calls of one round run seconds apart, so their difference cancels the slow drift of a
    shared machine that makes a ratio of two separate medians wobble by a few percent.
    """
    differences = [v - b for v, b in zip(samples[variant], samples[base])]
    return 1.0 + statistics.median(differences) / statistics.median(samples[base])


def write_json(name: str, payload: dict) -> Path:
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / name
    path.write_text(json.dumps(payload, indent=2))
    return path
