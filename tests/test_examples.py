"""Every example runs in a reduced form (--quick), so none can rot."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ADULT = ROOT.parent / "shared" / "data" / "adult" / "adult.data"


def run(script, *args, cwd):
    return subprocess.run([sys.executable, str(ROOT / "examples" / script), *args],
                          capture_output=True, text=True, timeout=600, check=True, cwd=cwd).stdout


def test_quickstart(tmp_path):
    out = run("quickstart.py", "--quick", cwd=tmp_path)
    assert "excess_accuracy_gap" in out and "zero parameters" in out


def test_gridsearch_tolerance(tmp_path):
    out = run("gridsearch_tolerance.py", "--quick", cwd=tmp_path)
    assert "mean_test_max_excess_accuracy_gap" in out and "refit on candidate" in out


def test_many_groups(tmp_path):
    out = run("many_groups.py", "--quick", "--out", str(tmp_path / "m.png"), cwd=tmp_path)
    assert "40 groups" in out and (tmp_path / "m.png").stat().st_size > 0


def test_plot_history(tmp_path):
    out = run("plot_history.py", "--quick", "--out", str(tmp_path / "h.png"), cwd=tmp_path)
    assert "final multipliers" in out and (tmp_path / "h.png").stat().st_size > 0


def test_adult_income(tmp_path):
    if not ADULT.exists():
        pytest.skip(f"UCI Adult not found at {ADULT}")
    out = run("adult_income.py", "--quick", "--data", str(ADULT), cwd=tmp_path)
    assert "groups='race'" in out and "groups=['race', 'sex']" in out and "CEAG" in out


def test_utkface_on_a_generated_folder(tmp_path):
    from test_datasets import make_utkface_folder

    folder = tmp_path / "faces"
    folder.mkdir()
    make_utkface_folder(folder, n=30)
    out = run("utkface.py", str(folder), "--quick", cwd=tmp_path)
    assert "race x gender" in out and "ceag" in out
