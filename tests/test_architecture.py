"""The layering rules of the package, and the one group encoding shared by fit and reports."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import numpy as np
import pandas as pd
from hypothesis import given
from hypothesis import strategies as st

from fairprune.groups import GroupEncoder, encode_groups
from fairprune.metrics import group_accuracy
from fairprune.report import disparity_report

PACKAGE = Path(__file__).resolve().parents[1] / "fairprune"
#: scikit-learn's scorer base class: subclassing it is how a scorer joins metadata routing
ALLOWED_PRIVATE = {("sklearn.metrics._scorer", "_BaseScorer")}


def _imports(path: Path):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            module = "." * node.level + (node.module or "")
            for alias in node.names:
                yield module, alias.name
        elif isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, None


def _modules():
    return sorted(PACKAGE.rglob("*.py"))


def test_no_private_names_are_imported_across_modules():
    offenders = [
        f"{path.relative_to(PACKAGE)}: from {module} import {name}"
        for path in _modules()
        for module, name in _imports(path)
        if name and name.startswith("_") and not name.startswith("__")
        and (module, name) not in ALLOWED_PRIVATE
    ]
    assert offenders == []


def test_constraints_and_pruning_are_independent_layers():
    for package, other in (("constraints", "pruning"), ("pruning", "constraints")):
        for path in (PACKAGE / package).glob("*.py"):
            for module, _ in _imports(path):
                assert not module.startswith("skorch"), f"{path.name} imports skorch"
                assert other not in module and "training" not in module, (
                    f"{package}/{path.name} imports {module}")


def test_the_core_imports_nothing_of_the_paper_support_but_its_settings():
    """``fairprune.datasets`` (loaders, models, the paper's settings) sits apart from the
    core: only ``paper_defaults`` is imported from it."""
    found = [f"{path.relative_to(PACKAGE)}: {module}"
             for path in _modules() if "datasets" not in path.relative_to(PACKAGE).parts
             for module, _ in _imports(path)
             if "datasets" in module.split(".") and module.lstrip(".") != "datasets.paper"
             and not module.startswith(("sklearn", "torchvision"))]
    assert found == []


def test_groups_module_knows_nothing_of_torch():
    assert not [m for m, _ in _imports(PACKAGE / "groups.py") if m.split(".")[0] == "torch"]


def test_the_estimator_class_lives_in_one_module():
    """No base class of fairprune's own between FairPrunedClassifier and skorch: its
    methods and fitted attributes are in estimator.py."""
    from skorch import NeuralNetClassifier

    from fairprune import FairPrunedClassifier

    assert FairPrunedClassifier.__bases__ == (NeuralNetClassifier,)
    own = [cls for cls in FairPrunedClassifier.__mro__ if cls.__module__.startswith("fairprune")]
    assert own == [FairPrunedClassifier]


def test_one_formulation_of_the_lagrangian_in_the_package():
    """The package steps with strict violations and a weighted loss; Cooper's CMPState form
    lives only in the tests, as the reference."""
    found = [str(path.relative_to(PACKAGE)) for path in _modules()
             if re.search(r"def (compute_cmp_state|differentiable_violation)|CMPState\(", path.read_text())]
    assert found == []


def test_every_file_write_goes_through_the_atomic_writer():
    """Files fairprune writes are created exclusively and renamed into place: no module but
    the writer opens a path for writing or makes temporary files itself."""
    pattern = re.compile(r"open\([^)]*['\"][wa]b?['\"]|NamedTemporaryFile|\.write_bytes\(|\.write_text\(")
    found = [str(path.relative_to(PACKAGE)) for path in _modules()
             if path.name != "_files.py" and pattern.search(path.read_text())]
    assert found == []


def test_nothing_is_loaded_in_a_way_that_can_run_code():
    pattern = re.compile(r"weights_only\s*=\s*False|pickle\.loads?\(|joblib\.load\(|allow_pickle\s*=\s*True")
    found = [str(path.relative_to(PACKAGE)) for path in _modules()
             if pattern.search(path.read_text())]
    assert found == []


def test_only_the_phases_module_compares_epochs_with_pruning_epochs():
    pattern = re.compile(r"[<>]=?\s*\w+\.pruning_epochs|pruning_epochs\s*[<>]")
    found = [str(path.relative_to(PACKAGE)) for path in _modules()
             if pattern.search(path.read_text())]
    assert found == ["training/phases.py"]


labels = st.one_of(
    st.lists(st.integers(-3, 3), min_size=1, max_size=30),
    st.lists(st.sampled_from(["b", "a", "Others", "White", "é"]), min_size=1, max_size=30),
    st.lists(st.tuples(st.sampled_from(["x", "y"]), st.integers(0, 2)), min_size=1, max_size=30),
)


def _agree(groups, n: int) -> None:
    y = np.zeros(n, dtype=int)
    encoder_order = GroupEncoder().fit(groups).classes_.tolist()
    index, codes = encode_groups(groups)
    assert index.tolist() == encoder_order
    assert group_accuracy(y, y, groups).index.tolist() == encoder_order
    assert disparity_report(y, y, y, groups)["group"].tolist() == encoder_order
    assert np.array_equal(codes, GroupEncoder().fit(groups).transform(groups))


@given(labels)
def test_fit_metrics_and_report_encode_groups_alike(values):
    groups = np.empty(len(values), dtype=object)
    groups[:] = values
    _agree(groups, len(values))


@given(st.lists(st.sampled_from(["lo", "mid", "hi"]), min_size=1, max_size=30), st.booleans())
def test_categoricals_keep_their_category_order_everywhere(values, ordered):
    groups = pd.Series(pd.Categorical(values, categories=["lo", "mid", "hi"], ordered=ordered))
    _agree(groups, len(values))
    assert GroupEncoder().fit(groups).classes_.tolist() == [
        c for c in ["lo", "mid", "hi"] if c in set(values)]
