"""The paper studies in experiments/ run in their reduced forms (--quick), so none can rot."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from support import make_utkface_folder

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENTS = ROOT / "experiments"
ADULT = ROOT.parent / "shared" / "data" / "adult" / "adult.data"
UTKFACE = ROOT.parent / "shared" / "data" / "utkface"


def run(script, args, out_dir):
    env = {**os.environ, "MPLBACKEND": "Agg"}
    result = subprocess.run([sys.executable, str(EXPERIMENTS / script), *args], env=env,
                            capture_output=True, text=True, timeout=600, cwd=out_dir)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_reproduction_quick_form(tmp_path):
    result = subprocess.run(
        [sys.executable, str(EXPERIMENTS / "reproduce.py"), "--quick", "--out", str(tmp_path)],
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
    folder = UTKFACE
    if not folder.is_dir():
        folder = tmp_path / "faces"
        folder.mkdir()
        make_utkface_folder(folder, n=120)
    result = subprocess.run(
        [sys.executable, str(EXPERIMENTS / "reproduce_faces.py"), "--quick",
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


def test_heldout_study_smoke_form(tmp_path):
    """The held-out study's smoke form: every method runs on an Adult subset (when present)."""
    stdout = run("heldout_study.py", ["--quick", "--out", str(tmp_path)], tmp_path)
    if not ADULT.exists():
        assert "skipping UCI Adult" in stdout
        return
    rows = json.loads((tmp_path / "heldout_study.json").read_text())
    assert {row["method"] for row in rows} == {
        "NFT", "CEAG", "CEAG + held-out", "CEAG + selection", "CEAG + both"}
    assert all(row["test_max_psi_low"] <= row["test_max_psi_high"] for row in rows)
    differences = json.loads((tmp_path / "heldout_study_differences.json").read_text())
    assert {d["method"] for d in differences} == {"CEAG", "CEAG + held-out",
                                                   "CEAG + selection", "CEAG + both"}
    assert {row["setting"] for row in rows} == {"adult race x sex, 99%",
                                                "adult native-country, 99%"}
    assert "| adult race x sex, 99%" in (tmp_path / "heldout_study.md").read_text()
    assert (tmp_path / "heldout_study.png").stat().st_size > 0


@pytest.mark.skipif(not ADULT.exists(), reason="UCI Adult is not in ../shared/data")
def test_adult_probe_quick_form(tmp_path):
    """The Adult demo's probe: every run of its table, with the evidence columns."""
    run("adult_probe.py", ["--quick", "--out", str(tmp_path)], tmp_path)
    result = json.loads((tmp_path / "adult_probe_quick.json").read_text())
    runs = {row["run"]: row for row in result["runs"]}
    assert len(runs) == 16 and "CEAG, first & last layers dense" in runs
    for row in runs.values():
        assert 0 <= row["accuracy"] <= 1 and row["fit_status"] in {
            "ok", "collapsed", "tolerance_not_met"}
    kept = runs["NFT, first & last layers dense"]["sparsity_of_all_weights"]
    assert kept < runs["NFT"]["sparsity_of_all_weights"] == pytest.approx(0.99, abs=0.01)
    assert "`python experiments/adult_probe.py --quick`" in (
        tmp_path / "adult_probe_quick.md").read_text()


def face_folder(tmp_path) -> Path:
    """The real UTKFace folder when it is there, else a generated folder of its format."""
    if UTKFACE.is_dir():
        return UTKFACE
    folder = tmp_path / "faces"
    folder.mkdir()
    make_utkface_folder(folder, n=120)
    return folder


def test_criteria_study_smoke_form(tmp_path):
    """The side-by-side study of pruning criteria in its smoke form: every method runs."""
    folder = face_folder(tmp_path)
    run("compare_criteria.py", ["--quick", "--data", str(folder), "--out", str(tmp_path)],
        tmp_path)
    rows = json.loads((tmp_path / "criteria.json").read_text())
    assert {row["method"] for row in rows} >= {"NFT", "CEAG", "FairGRAPE + NFT",
                                                "FairGRAPE + CEAG", "Bi-level + CEAG"}
    assert all(row["pruning_seconds"] > 0 for row in rows)
    assert "| digits (classes)" in (tmp_path / "criteria.md").read_text()


def test_rate_constraints_study_smoke_form(tmp_path):
    """The TPR / equalized-odds study in its smoke form."""
    folder = face_folder(tmp_path)
    stdout = run("rate_constraints.py", ["--quick", "--data", str(folder), "--out",
                                         str(tmp_path)], tmp_path)
    rows = json.loads((tmp_path / "rate_constraints.json").read_text())
    assert {row["method"] for row in rows} == {"NFT", "CEAG (accuracy)", "CEAG (TPR)",
                                                "CEAG (equalized odds)"}
    assert all(0 <= row["train_max_tpr"] <= 1 for row in rows)
    assert "UTKFace gender / race" in stdout
