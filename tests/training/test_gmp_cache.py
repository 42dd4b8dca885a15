"""memory=: the GMP phase is stored once and loaded by fits that differ only after pruning."""

import copy
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from joblib import Memory
from sklearn.model_selection import GridSearchCV, StratifiedKFold

from fairprune import FairPrunedClassifier, GMPCacheWarning
from fairprune.training.gmp_cache import gmp_key
from fairprune.groups import by_target
from fairprune.scorers import neg_max_excess_accuracy_gap_scorer, neg_pairwise_disparity_scorer

SMALL = dict(sparsity=0.9, dense_layers=(), pruning_epochs=3, max_epochs=2, lr=0.05, verbose=0)


def stored_phases(location) -> int:
    """Number of GMP phases stored under ``location``."""
    return sum(1 for _ in Path(location).rglob("*.gmp.pt"))


def test_loaded_phase_gives_the_same_model_as_running_it(digits, digits_dense, tmp_path):
    X, y = digits
    plain = FairPrunedClassifier(digits_dense, tolerance=0.02, **SMALL).fit(X, y, groups=y)
    runs = FairPrunedClassifier(digits_dense, tolerance=0.02, memory=tmp_path, **SMALL)
    loads = FairPrunedClassifier(digits_dense, tolerance=0.02, memory=str(tmp_path), **SMALL)
    runs.fit(X, y, groups=y)
    assert stored_phases(tmp_path) == 1
    loads.fit(X, y, groups=y)
    assert stored_phases(tmp_path) == 1  # loaded, not run again
    for clf in (runs, loads):
        np.testing.assert_array_equal(clf.predict_proba(X), plain.predict_proba(X))
        np.testing.assert_array_equal(clf.multipliers_, plain.multipliers_)
        assert clf.history[:, "train_loss"] == plain.history[:, "train_loss"]
        assert clf.history[:, "n_violated"] == plain.history[:, "n_violated"]
    for (name, mask), (other, reference) in zip(loads.masks_.items(), plain.masks_.items()):
        assert name == other
        assert torch.equal(mask, reference)


def test_tolerance_dependent_history_is_recomputed_on_load(digits, digits_dense, tmp_path):
    X, y = digits
    FairPrunedClassifier(digits_dense, tolerance=0.5, memory=tmp_path, **SMALL).fit(X, y, groups=y)
    loaded = FairPrunedClassifier(digits_dense, tolerance=0.0, memory=tmp_path, **SMALL)
    loaded.fit(X, y, groups=y)
    plain = FairPrunedClassifier(digits_dense, tolerance=0.0, **SMALL).fit(X, y, groups=y)
    assert stored_phases(tmp_path) == 1
    assert loaded.history[:, "n_violated"] == plain.history[:, "n_violated"]
    assert max(loaded.history[:, "n_violated"]) > 0


@pytest.mark.parametrize("change", [
    dict(sparsity=0.8), dict(random_state=1), dict(pruning_epochs=2), dict(lr=0.01),
    dict(lr_milestones=(0.2,)),  # a learning-rate milestone inside the GMP epochs
])
def test_key_covers_what_gmp_depends_on(digits, digits_dense, change):
    X, y = digits
    base = FairPrunedClassifier(digits_dense, **SMALL)
    changed = FairPrunedClassifier(digits_dense, **{**SMALL, **change})
    assert gmp_key(base, X, y, {}) != gmp_key(changed, X, y, {})


def test_key_ignores_learning_rate_milestones_after_pruning(digits, digits_dense):
    """The key holds the GMP epochs' learning rates, not the schedule's parameters: a
    longer fine-tuning phase or another decay factor whose milestones all fall after
    pruning reuse the stored GMP phase; a milestone inside GMP does not."""
    X, y = digits
    params = dict(SMALL, pruning_epochs=2, max_epochs=8, lr_milestones=(0.6, 0.8, 0.9))
    base = gmp_key(FairPrunedClassifier(digits_dense, **params), X, y, {})
    later = FairPrunedClassifier(digits_dense, **{**params, "max_epochs": 20, "lr_gamma": 0.5})
    assert gmp_key(later, X, y, {}) == base
    inside = FairPrunedClassifier(digits_dense, **{**params, "lr_milestones": (0.1,)})
    assert gmp_key(inside, X, y, {}) != base


def test_key_ignores_what_acts_after_pruning_but_not_data_or_weights(digits, digits_dense):
    X, y = digits
    base = gmp_key(FairPrunedClassifier(digits_dense, **SMALL), X, y, {})
    after = FairPrunedClassifier(digits_dense, tolerance=0.3, method="nft", dual_lr=0.1,
                                 replay_buffer_size=0, **SMALL)
    assert gmp_key(after, X, y, {}) == base
    assert gmp_key(FairPrunedClassifier(digits_dense, **SMALL), X[:-1], y[:-1], {}) != base
    y_other = y.copy()
    y_other[0] = (y_other[0] + 1) % 10
    assert gmp_key(FairPrunedClassifier(digits_dense, **SMALL), X, y_other, {}) != base
    other = copy.deepcopy(digits_dense)
    with torch.no_grad():
        next(other.parameters())[0, 0] += 1e-3
    assert gmp_key(FairPrunedClassifier(other, **SMALL), X, y, {}) != base
    assert gmp_key(FairPrunedClassifier(copy.deepcopy(digits_dense), **SMALL), X, y, {}) == base


def test_grid_search_over_tolerance_runs_gmp_once_per_fold(digits, digits_dense, tmp_path):
    """The acceptance setting of issue 9: 4 tolerances x 3 folds, identical cv_results_."""
    X, y = digits
    grid = {"tolerance": [0.005, 0.01, 0.02, 0.05]}
    scoring = {"accuracy": "accuracy", "max_excess_accuracy_gap": neg_max_excess_accuracy_gap_scorer,
               "pairwise_disparity": neg_pairwise_disparity_scorer}
    cv = StratifiedKFold(3, shuffle=True, random_state=0)

    def search(memory):
        clf = FairPrunedClassifier(digits_dense, groups=by_target, memory=memory, **SMALL)
        return GridSearchCV(clf, grid, cv=cv, scoring=scoring, refit=False,
                            error_score="raise").fit(X, y)

    plain, cached = search(None), search(Memory(tmp_path, verbose=0))
    assert stored_phases(tmp_path) == 3
    for name in ("accuracy", "max_excess_accuracy_gap", "pairwise_disparity"):
        for stat in ("mean", "std"):
            key = f"{stat}_test_{name}"
            np.testing.assert_array_equal(cached.cv_results_[key], plain.cv_results_[key])
        for fold in range(3):
            key = f"split{fold}_test_{name}"
            np.testing.assert_array_equal(cached.cv_results_[key], plain.cv_results_[key])


# -- the cache never fails a fit and never loads a damaged entry ------------------------------
def _fit(dense, X, y, memory, **params):
    return FairPrunedClassifier(dense, tolerance=0.02, memory=memory, **{**SMALL, **params}).fit(
        X, y, groups=y)


@pytest.mark.parametrize("damage", ["truncate", "garbage", "flip_byte", "no_hash"])
def test_damaged_entries_are_recomputed_with_a_warning(digits, digits_dense, tmp_path, damage):
    X, y = digits
    plain = _fit(digits_dense, X, y, None)
    _fit(digits_dense, X, y, tmp_path)
    (entry,) = Path(tmp_path).rglob("*.gmp.pt")
    data = entry.read_bytes()
    if damage == "truncate":
        entry.write_bytes(data[: len(data) // 2])
    elif damage == "garbage":
        entry.write_bytes(b"not a checkpoint" * 10)
    elif damage == "flip_byte":
        entry.write_bytes(data[:-100] + bytes([data[-100] ^ 0xFF]) + data[-99:])
    else:
        entry.with_suffix(".sha256").unlink()
    with pytest.warns(GMPCacheWarning, match="running the GMP phase again"):
        again = _fit(digits_dense, X, y, tmp_path)
    np.testing.assert_array_equal(again.predict_proba(X), plain.predict_proba(X))
    with warnings.catch_warnings():
        warnings.simplefilter("error", GMPCacheWarning)  # repaired: loads cleanly now
        _fit(digits_dense, X, y, tmp_path)


def test_a_folder_that_cannot_be_written_degrades_to_no_cache(digits, digits_dense, tmp_path):
    X, y = digits
    blocker = tmp_path / "file"
    blocker.write_text("a file where the cache folder should go")
    with pytest.warns(GMPCacheWarning, match="continuing without caching"):
        clf = _fit(digits_dense, X, y, blocker)
    plain = _fit(digits_dense, X, y, None)
    np.testing.assert_array_equal(clf.predict_proba(X), plain.predict_proba(X))


def test_unhashable_parameters_bypass_the_cache_with_a_warning(digits, digits_dense, tmp_path):
    from skorch.callbacks import EpochScoring

    X, y = digits
    scoring = EpochScoring(lambda net, X, y: 0.0, name="zero", on_train=True)
    with pytest.warns(GMPCacheWarning, match="key could not be computed"):
        clf = _fit(digits_dense, X, y, tmp_path, callbacks=[("zero", scoring)])
    assert len(clf.history) == SMALL["pruning_epochs"] + SMALL["max_epochs"]
    assert stored_phases(tmp_path) == 0


# -- the key covers the module's code ----------------------------------------------------------
class _Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.body = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU(),
                                        torch.nn.Linear(32, 32), torch.nn.ReLU(),
                                        torch.nn.Linear(32, 10))

    def forward(self, x):
        return self.body(x)


def _doubled_input_forward(self, x):
    return self.body(2 * x)


def test_key_covers_the_modules_code(digits):
    """The same class and weights with another forward (set on the instance, as an edited
    notebook cell would leave it) compute something else: another key, no stale phase."""
    import types

    from fairprune.training.gmp_cache import gmp_key

    X, y = digits
    torch.manual_seed(0)
    module = _Net()
    edited = _Net()
    edited.load_state_dict(module.state_dict())
    edited.forward = types.MethodType(_doubled_input_forward, edited)
    keys = [gmp_key(FairPrunedClassifier(m, **SMALL), X, y, {}) for m in (module, edited)]
    assert keys[0] != keys[1]
    same = _Net()
    same.load_state_dict(module.state_dict())
    assert gmp_key(FairPrunedClassifier(same, **SMALL), X, y, {}) == keys[0]


def test_a_module_whose_code_cannot_be_read_is_not_cached(digits, tmp_path):
    X, y = digits
    namespace = {"torch": torch}
    exec("class Hidden(torch.nn.Module):\n"  # noqa: S102 - a class without source on purpose
         "    def __init__(self):\n"
         "        super().__init__()\n"
         "        self.a = torch.nn.Linear(64, 32)\n"
         "        self.b = torch.nn.Linear(32, 32)\n"
         "        self.c = torch.nn.Linear(32, 10)\n"
         "    def forward(self, x):\n"
         "        return self.c(torch.relu(self.b(torch.relu(self.a(x)))))\n", namespace)
    with pytest.warns(GMPCacheWarning, match="source of Hidden cannot be read"):
        FairPrunedClassifier(namespace["Hidden"](), memory=tmp_path, **SMALL).fit(
            X, y, groups=y)
    assert stored_phases(tmp_path) == 0
