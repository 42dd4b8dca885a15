"""The distribution: a wheel that holds the whole package and its licence, declares exactly the
dependencies it imports, and runs the quickstart when installed outside the source tree."""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from email.parser import Parser
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out, source = tmp_path_factory.mktemp("dist"), tmp_path_factory.mktemp("source")
    # a clean copy of what the sdist holds: a build in place would leave build/ behind, whose
    # stale files could slip into later wheels
    shutil.copytree(ROOT / "fairprune", source / "fairprune",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for name in ("pyproject.toml", "setup.cfg", "README.md", "LICENSE", "CITATION.cff"):
        shutil.copy(ROOT / name, source / name)
    # no build isolation: the build needs only the setuptools of this environment, offline
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(source), "--no-deps",
                    "--no-build-isolation", "--quiet", "-w", str(out)], check=True,
                   capture_output=True, timeout=300)
    (built,) = out.glob("fairprune-*.whl")
    return built


def _metadata(wheel: Path):
    with zipfile.ZipFile(wheel) as archive:
        name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        return Parser().parsestr(archive.read(name).decode()), archive.namelist()


def test_wheel_holds_every_subpackage_and_the_licence(wheel):
    _, names = _metadata(wheel)
    packages = {str(p.parent.relative_to(ROOT)).replace("\\", "/")
                for p in (ROOT / "fairprune").rglob("__init__.py")}
    for package in packages:
        assert f"{package}/__init__.py" in names, package
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    assert not [n for n in names if n.startswith("tests/")]


def _imported_distributions() -> set[str]:
    """Third-party distributions imported anywhere in the package (lazy imports included)."""
    mapping = packages_distributions()
    found = set()
    for path in (ROOT / "fairprune").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules = [node.module]
            elif isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            else:
                continue
            for module in modules:
                top = module.split(".")[0]
                if top in sys.stdlib_module_names or top == "fairprune":
                    continue
                found.update(d.lower() for d in mapping.get(top, [top]))
    return found


def test_declared_dependencies_are_exactly_the_imported_ones(wheel):
    metadata, _ = _metadata(wheel)
    core, extras = set(), set()
    for requirement in metadata.get_all("Requires-Dist"):
        name = requirement.split(";")[0].split("[")[0]
        for sep in "<>=!~ ":
            name = name.split(sep)[0]
        (extras if "extra ==" in requirement else core).add(name.strip().lower())
    imported = _imported_distributions()
    assert core - imported == set(), "declared but never imported"
    # every import is declared: as a core dependency, or as an extra for a lazy import
    assert imported - core - extras == set(), "imported but not declared"


def test_installed_wheel_runs_the_quickstart_outside_the_source_tree(wheel, tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    python = venv / "bin" / "python"
    site = Path(subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True, capture_output=True, text=True).stdout.strip())
    # the third-party packages of this environment, without its editable fairprune (.pth files
    # of an added directory are not processed, so its editable finder stays inactive)
    (site / "third_party.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([str(python), "-m", "pip", "install", "--no-deps", "--quiet", str(wheel)],
                   check=True, capture_output=True, timeout=300)
    script = ROOT / "examples" / "quickstart.py"
    result = subprocess.run(
        [str(python), "-c",
         "import runpy, sys, fairprune; print('from', fairprune.__file__); "
         f"sys.argv = ['quickstart', '--quick']; runpy.run_path({str(script)!r}, "
         "run_name='__main__')"],
        cwd=tmp_path, capture_output=True, text=True, timeout=600,
        env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})  # no source tree
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"from {site}" in result.stdout
    assert "max" in result.stdout.lower()
