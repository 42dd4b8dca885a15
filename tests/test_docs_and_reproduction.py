"""`make docs` builds offline, and the reproduction script runs in its reduced form."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ADULT = ROOT.parent / "shared" / "data" / "adult" / "adult.data"


def test_docs_build_offline_without_warnings(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "sphinx", "-b", "html", "-q", "-W", "--keep-going",
         str(ROOT / "docs"), str(tmp_path / "html")],
        capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    page = (tmp_path / "html" / "api.html").read_text()
    assert "FairPrunedClassifier" in page and "excess_accuracy_gaps" in page


def test_reproduction_quick_form(tmp_path):
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "reproduce.py"), "--quick", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=300, check=True,
    )
    table = (tmp_path / "reproduction.md").read_text()
    assert "digits (classes)" in table and "CEAG" in table and "NFT" in table
    assert (tmp_path / "tradeoff.png").stat().st_size > 0
    if ADULT.exists():
        assert "adult race" in table
    else:
        assert "skipping UCI Adult" in result.stdout
