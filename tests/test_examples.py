"""The README's usage example, the demo and every example (in a reduced form, --quick) run,
so none can rot."""

import re
import subprocess
import sys
from pathlib import Path

import pytest
from support import make_utkface_folder

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
    assert "psi_low" in out and "distinguishable" in out and "refit on candidate" in out
    assert "Tolerances the folds tell apart:" in out and "[95% interval" in out


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
    folder = tmp_path / "faces"
    folder.mkdir()
    make_utkface_folder(folder, n=30)
    out = run("utkface.py", str(folder), "--quick", cwd=tmp_path)
    assert "race x gender" in out and "ceag" in out


def test_readme_usage_example_runs():
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert blocks, "README has no python example"
    namespace: dict = {}
    exec(compile(blocks[0], "README.md", "exec"), namespace)  # noqa: S102
    report = namespace["report"]
    assert len(report) == 10
    assert 0 <= report.attrs["max_excess_accuracy_gap"] <= report.attrs["pairwise_disparity"]
    assert namespace["clf"].sparsity_ > 0.89


def test_demo_prints_both_reports_and_writes_png(tmp_path):
    out = tmp_path / "demo.png"
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "demo.py"), "--out", str(out)],
        capture_output=True, text=True, timeout=600, check=True,
    )
    assert " NFT:" in result.stdout and "CEAG:" in result.stdout
    assert "excess_accuracy_gap" in result.stdout
    assert out.stat().st_size > 10_000
    nft = float(re.search(r"NFT:.*max psi_g ([0-9.]+)", result.stdout).group(1))
    ceag = float(re.search(r"CEAG:.*max psi_g ([0-9.]+)", result.stdout).group(1))
    # float sums depend on the thread count; on the training rows NFT breaks eps = 0.02 and
    # CEAG ends far below it (2 threads: 0.081 against 0.023)
    assert nft > 0.02 and ceag < nft
    # the test rows are reported with intervals and a verdict per group
    assert "Disparity on the test data, with 95% intervals" in result.stdout
    tests = re.findall(r"test: accuracy [0-9.]+  max psi_g ([0-9.]+) \[95% interval "
                       r"([0-9.]+), ([0-9.]+)\]", result.stdout)
    assert len(tests) == 2
    assert all(float(low) <= float(high) for _, low, high in tests)
    assert "undecided" in result.stdout or "within" in result.stdout


def test_demo_on_a_utkface_format_folder(tmp_path):
    folder = tmp_path / "faces"
    folder.mkdir()
    make_utkface_folder(folder, n=40)
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "demo.py"), "--data", str(folder), "--quick",
         "--out", str(tmp_path / "faces.png")],
        capture_output=True, text=True, timeout=600, check=True,
    )
    assert "UTKFace folder" in result.stdout and "CEAG:" in result.stdout
    assert (tmp_path / "faces.png").stat().st_size > 0


@pytest.mark.parametrize("script", sorted(p.name for p in (ROOT / "examples").glob("*.py")))
def test_every_example_describes_itself_in_help(script, tmp_path):
    doc = (ROOT / "examples" / script).read_text().split('"""')[1]
    out = run(script, "--help", cwd=tmp_path)
    assert doc.splitlines()[0] in out and f"python examples/{script}" in out


def test_an_example_that_cannot_run_exits_non_zero_with_the_reason(tmp_path):
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "adult_income.py"), "--data",
         str(tmp_path / "missing.data")], capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert "UCI Adult not found" in result.stderr and "fetch_adult" in result.stderr
