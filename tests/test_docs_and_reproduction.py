"""`make docs` builds offline, and the reproduction script runs in its reduced form."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ADULT = ROOT.parent / "shared" / "data" / "adult" / "adult.data"
UTKFACE = ROOT.parent / "shared" / "data" / "utkface"


def test_docs_build_offline_without_warnings(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "sphinx", "-b", "html", "-q", "-W", "--keep-going",
         str(ROOT / "docs"), str(tmp_path / "html")],
        capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    page = (tmp_path / "html" / "api.html").read_text()
    assert "FairPrunedClassifier" in page and "excess_accuracy_gaps" in page
    # every figure results.md shows is in the built page and copied next to it
    import re

    figures = re.findall(r"!\[[^\]]*\]\(results/([^)]+\.png)\)", (ROOT / "docs" / "results.md").read_text())
    results = (tmp_path / "html" / "results.html").read_text()
    assert figures
    for name in figures:
        assert f"_images/{name}" in results, name
        assert (tmp_path / "html" / "_images" / name).stat().st_size > 0


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


def test_face_reproduction_quick_form(tmp_path):
    """The face study's smoke form (a 300-image subset, tiny schedules) on the real UTKFace
    folder when it is there, else on a generated folder of the same format."""
    from test_datasets import make_utkface_folder

    folder = UTKFACE
    if not folder.is_dir():
        folder = tmp_path / "faces"
        folder.mkdir()
        make_utkface_folder(folder, n=120)
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "reproduce_faces.py"), "--quick",
         "--data", str(folder), "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    table = (tmp_path / "faces.md").read_text()
    for name in ("race / race", "gender / race", "NFT+ES", "EL+RB", "CEAG"):
        assert name in table
    rows = json.loads((tmp_path / "faces.json").read_text())
    assert {row["method"] for row in rows} >= {"NFT", "NFT+ES", "EL+RB", "CEAG"}
    assert all(0 <= row["train_acc"] <= 1 for row in rows)
    assert (tmp_path / "faces_psi_race_race_0.9.png").stat().st_size > 0
