"""The benchmark scripts run (tiny settings) and write their JSON: they cannot rot unnoticed.
Timings are never asserted here; `make bench` measures them."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"

RUNS = [
    ("ceag_overhead.py", ["--groups", "2", "30", "--repeats", "2", "--batch", "16"],
     "ceag_overhead.json"),
    ("short_step_overhead.py", ["--groups", "3", "20", "--rounds", "1", "--rows", "600",
                                "--epochs", "1", "--batch", "64", "--steps", "5"],
     "short_step_overhead.json"),
    ("fit_vs_hand_loop.py", ["--samples", "256", "--repeats", "1"], "fit_vs_hand_loop.json"),
    ("gmp_cost.py", ["--samples", "256", "--repeats", "1"], "gmp_cost.json"),
    ("gmp_cache_gridsearch.py", ["--quick", "--rounds", "1"], "gmp_cache_gridsearch.json"),
    ("heldout_step_cost.py", ["--samples", "512", "--epochs", "1", "--rounds", "1"],
     "heldout_step_cost.json"),
    ("report_bootstrap.py", ["--rows", "500", "--groups", "3", "--boot", "50", "--repeats", "1"],
     "report_bootstrap.json"),
    ("criteria_cost.py", ["--groups", "2", "5", "--rows", "128"], "criteria_cost.json"),
]


def run(script, args, out_dir):
    env = {**os.environ, "FAIRPRUNE_BENCH_OUT": str(out_dir), "MPLBACKEND": "Agg"}
    result = subprocess.run([sys.executable, str(BENCH / script), *args], env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


@pytest.mark.parametrize("script, args, output", RUNS, ids=[r[0] for r in RUNS])
def test_benchmark_script_runs_and_writes_json(tmp_path, script, args, output):
    stdout = run(script, args, tmp_path)
    payload = json.loads((tmp_path / output).read_text())
    assert payload and "wrote" in stdout
    if script == "ceag_overhead.py":
        assert [row["groups"] for row in payload["rows"]] == [2, 30]
        assert all(row["ceag_ms"] > 0 and row["nft_ms"] > 0 for row in payload["rows"])
        run("summarize.py", [str(tmp_path / "docs")], tmp_path)
        assert (tmp_path / "docs" / "overhead.png").stat().st_size > 0
        assert "| 30 |" in (tmp_path / "docs" / "bench.md").read_text()
    if script == "short_step_overhead.py":
        assert [row["groups"] for row in payload["results"]] == [3, 20]
        assert payload["threads"] == 1  # the default: one thread, stable timings
        assert all(len(row["samples_ms"]["CEAG"]) == 1 and row["nft_ms"] > 0
                   and row["paired_nft_ms"] > 0 and row["paired_ceag_over_nft"] > 0
                   for row in payload["results"])
        run("summarize.py", [str(tmp_path / "docs")], tmp_path)
        assert "Short steps" in (tmp_path / "docs" / "bench.md").read_text()
    if script == "gmp_cache_gridsearch.py":
        (row,) = payload["rows"]
        assert row["identical_scores"] and row["gmp_phases_run"] == 3
