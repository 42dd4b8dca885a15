"""The docs: `make docs` builds offline without warnings, and every Python code block of the
README and the docs runs, page by page, as printed."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


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
    figures = re.findall(r"!\[[^\]]*\]\(results/([^)]+\.png)\)", (ROOT / "docs" / "results.md").read_text())
    results = (tmp_path / "html" / "results.html").read_text()
    assert figures
    for name in figures:
        assert f"_images/{name}" in results, name
        assert (tmp_path / "html" / "_images" / name).stat().st_size > 0


def _blocks(page: Path) -> list[str]:
    return BLOCK.findall(page.read_text())


@pytest.mark.parametrize("page", [p for p in PAGES if _blocks(p)], ids=lambda p: p.name)
def test_code_blocks_run(page, tmp_path):
    """The page's blocks run in order in one fresh interpreter (later blocks may use names
    defined by earlier ones), outside the source tree."""
    script = "\n\n".join(_blocks(page))
    script = "import matplotlib\nmatplotlib.use('Agg')\n" + script
    (tmp_path / "page.py").write_text(script)
    result = subprocess.run([sys.executable, "page.py"], cwd=tmp_path, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, f"{page.name}:\n{result.stderr[-3000:]}"
