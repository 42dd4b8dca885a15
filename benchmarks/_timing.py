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


def interleaved_medians(variants: dict[str, Callable[[], None]], repeats: int, warmup: int = 3):
    """Median seconds per call of each variant, calls interleaved round-robin."""
    for fn in variants.values():
        for _ in range(warmup):
            fn()
    samples: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(repeats):
        for name, fn in variants.items():
            start = time.perf_counter()
            fn()
            samples[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in samples.items()}


def write_json(name: str, payload: dict) -> Path:
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / name
    path.write_text(json.dumps(payload, indent=2))
    return path
