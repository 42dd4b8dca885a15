"""The face-data pipeline and the paper's configuration: UTKFace loading and its cache,
training-only flips, NFT+ES, equalized loss forms, the multiplier projection, the automatic
dual step and the paper's hyperparameters. Synthetic folders: seconds, no real data needed."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from skorch.dataset import ValidSplit

from fairprune import FairPrunedClassifier, paper_defaults
from fairprune.constraints import project_capped_simplex
from fairprune.datasets.models import make_face_cnn, make_mlp
from fairprune.datasets.transforms import RandomHorizontalFlip
from fairprune.datasets import utkface
from support import make_utkface_folder


@pytest.fixture
def folder(tmp_path, monkeypatch):
    monkeypatch.setenv("FAIRPRUNE_DATA", str(tmp_path / "home"))
    (tmp_path / "faces").mkdir()
    return make_utkface_folder(tmp_path / "faces", n=60)


def count_decodes(monkeypatch):
    calls = []
    real = utkface._decode

    def spy(paths, size):
        calls.append(len(paths))
        return real(paths, size)

    monkeypatch.setattr(utkface, "_decode", spy)
    return calls


def test_second_load_reads_the_cache(folder, monkeypatch):
    calls = count_decodes(monkeypatch)
    X1, y1, g1 = utkface.load_utkface(folder, target="race", image_size=8)
    X2, y2, g2 = utkface.load_utkface(folder, target="race", image_size=8)
    assert calls == [60]  # decoded once
    np.testing.assert_array_equal(X1, X2)
    np.testing.assert_array_equal(y1, y2)
    assert g1.equals(g2)
    assert X1.shape == (60, 3, 8, 8) and X1.dtype == np.float32 and 0 <= X1.min() <= X1.max() <= 1
    utkface.load_utkface(folder, target="race", image_size=12)  # another size: another entry
    assert calls == [60, 60]


def test_cache_is_invalidated_when_files_change(folder, monkeypatch):
    calls = count_decodes(monkeypatch)
    utkface.load_utkface(folder, image_size=8)
    victim = sorted(folder.glob("*_*_*_*.jpg"))[0]  # a well-named image
    victim.write_bytes(victim.read_bytes() + b"\0")  # same name, new size
    utkface.load_utkface(folder, image_size=8)
    make_utkface_folder(folder, n=61, seed=5)  # files added
    X, _, _ = utkface.load_utkface(folder, image_size=8)
    assert calls == [60, 60, len(X)] and len(X) > 60


def test_corrupt_or_unwritable_cache_is_never_used(folder, monkeypatch, tmp_path):
    calls = count_decodes(monkeypatch)
    X, _, _ = utkface.load_utkface(folder, image_size=8)
    (entry,) = (tmp_path / "home" / "utkface").glob("*.npz")
    entry.write_bytes(entry.read_bytes()[:100])  # truncated
    with pytest.warns(RuntimeWarning, match="unreadable"):
        X2, _, _ = utkface.load_utkface(folder, image_size=8)
    np.testing.assert_array_equal(X, X2)
    assert calls == [60, 60]
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the cache folder should be")
    with pytest.warns(RuntimeWarning, match="could not write the cache"):
        X3, _, _ = utkface.load_utkface(folder, image_size=8, data_home=blocked)
    np.testing.assert_array_equal(X, X3)


def test_targets_and_groups(folder):
    X, y_age, groups = utkface.load_utkface(folder, target="age_bucket", image_size=8)
    expected = np.digitize(groups["age"], utkface.UTKFACE_AGE_BUCKETS)
    np.testing.assert_array_equal(y_age, expected)
    assert list(groups["age_bucket"].cat.categories)[0] == "<10"
    _, y_gender, _ = utkface.load_utkface(folder, target="gender", image_size=8)
    np.testing.assert_array_equal(y_gender, (groups["gender"] == "Female").to_numpy())
    with pytest.raises(ValueError, match="target must be one of"):
        utkface.load_utkface(folder, target="age")
    with pytest.raises(ValueError, match="max_images must be None or a positive int"):
        utkface.load_utkface(folder, max_images=0)


def test_max_images_is_a_seeded_stratified_subset(folder):
    _, _, every = utkface.load_utkface(folder, target="race", image_size=4)
    _, _, sub = utkface.load_utkface(folder, target="race", image_size=4, max_images=30)
    _, _, again = utkface.load_utkface(folder, target="race", image_size=4, max_images=30)
    _, _, other = utkface.load_utkface(folder, target="race", image_size=4, max_images=30,
                                       random_state=1)
    assert len(sub) == 30 and sub.equals(again) and not sub.equals(other)
    # the first files by name are sorted by age: the subset is not those
    assert not sub["age"].equals(every["age"].iloc[:30].reset_index(drop=True))
    share = sub["race"].value_counts(normalize=True)
    expected = every["race"].value_counts(normalize=True)
    assert np.abs(share - expected).max() < 0.05


def test_flip_acts_per_sample_in_training_only():
    x = torch.arange(2 * 3 * 2 * 4, dtype=torch.float32).view(2 * 1, 3, 2, 4).repeat(50, 1, 1, 1)
    flip = RandomHorizontalFlip(p=0.5).eval()
    assert torch.equal(flip(x), x)
    torch.manual_seed(0)
    out = flip.train()(x)
    flipped = (out == x.flip(-1)).flatten(1).all(1)
    kept = (out == x).flatten(1).all(1)
    assert torch.all(flipped | kept) and flipped.any() and kept.any()
    assert torch.equal(RandomHorizontalFlip(p=1.0).train()(x), x.flip(-1))
    with pytest.raises(ValueError, match="p must be in"):
        RandomHorizontalFlip(1.5)


def test_flip_layer_never_changes_predictions_or_the_reference(folder):
    X, y, groups = utkface.load_utkface(folder, target="race", image_size=8)
    torch.manual_seed(0)
    model = make_face_cnn(5, width=4).eval()
    clf = FairPrunedClassifier(model, sparsity=0.5, pruning_epochs=1, max_epochs=1, verbose=0)
    clf.fit(X, y, groups=groups["race"].to_numpy())
    with torch.no_grad():
        dense = model(torch.as_tensor(X)).argmax(1).numpy()
    np.testing.assert_array_equal(clf.predict_dense(X), dense)
    np.testing.assert_array_equal(clf.predict(X), clf.predict(X))  # deterministic in eval
    with torch.no_grad():
        exported = clf.export()(torch.as_tensor(X)).argmax(1).numpy()
    np.testing.assert_array_equal(clf.predict(X), exported)


# -- NFT+ES ---------------------------------------------------------------------------------
def test_epoch_selection_restores_the_best_held_out_epoch(digits, digits_dense):
    X, y = digits
    clf = FairPrunedClassifier(
        digits_dense, method="nft", epoch_selection="accuracy", sparsity=0.95, dense_layers=(),
        pruning_epochs=2, max_epochs=6, lr=0.3, verbose=0,
        train_split=ValidSplit(0.3, stratified=True, random_state=0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clf.fit(X, y, groups=y)
    scores = clf.history[:, "valid_acc"]
    candidates = scores[2:]  # GMP epochs are never chosen
    best = 2 + int(np.argmax(candidates)) + 1
    assert clf.selected_epoch_ == best
    assert clf.history[:, "selected"][:2] == [False, False]
    # the restored weights are the chosen epoch's: re-score the held-out rows
    _, valid = ValidSplit(0.3, stratified=True, random_state=0)(X, y)
    Xv, yv = X[valid.indices], y[valid.indices]
    assert float((clf.predict(Xv) == yv).mean()) == pytest.approx(scores[best - 1])
    assert clf.sparsity_ == pytest.approx(0.95, abs=1e-3)


def test_epoch_selection_needs_a_validation_split(digits, digits_dense):
    X, y = digits
    clf = FairPrunedClassifier(digits_dense, epoch_selection="accuracy", verbose=0)
    with pytest.raises(ValueError, match="'train_split' is None"):
        clf.fit(X, y, groups=y)
    with pytest.raises(ValueError, match="epoch_selection"):
        FairPrunedClassifier(digits_dense, epoch_selection="best", verbose=0,
                             train_split=ValidSplit(0.2)).fit(X, y, groups=y)


# -- equalized loss ---------------------------------------------------------------------------
@pytest.mark.parametrize("form", ["band", "equality"])
def test_equalized_loss_forms(digits, digits_dense, form):
    X, y = digits
    clf = FairPrunedClassifier(digits_dense, method="equalized_loss", loss_constraint=form,
                               sparsity=0.95, dense_layers=(), pruning_epochs=1, max_epochs=3,
                               lr=0.1, verbose=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clf.fit(X, y, groups=y)
    multipliers = clf.multipliers_.to_numpy()
    assert np.all(np.isfinite(multipliers)) and np.any(multipliers != 0)
    if form == "band":
        assert np.all(multipliers >= 0)
    else:  # signed: groups below the overall loss get negative multipliers
        assert np.any(multipliers < 0) and np.any(multipliers > 0)


# -- the projection -------------------------------------------------------------------------
def reference_projection(values: np.ndarray, cap: float) -> np.ndarray:
    """Bisection on the shift θ of ``max(v − θ, 0)``."""
    clipped = np.maximum(values, 0)
    if clipped.sum() <= cap:
        return clipped
    low, high = 0.0, float(values.max())
    for _ in range(200):
        mid = (low + high) / 2
        low, high = (mid, high) if np.maximum(values - mid, 0).sum() > cap else (low, mid)
    return np.maximum(values - high, 0)


@settings(max_examples=200, deadline=None, derandomize=True)
@given(st.lists(st.floats(-5, 5), min_size=1, max_size=30), st.floats(1e-3, 10))
def test_projection_matches_bisection(values, cap):
    v = np.array(values, dtype=np.float64)
    got = project_capped_simplex(torch.tensor(v), cap).numpy()
    np.testing.assert_allclose(got, reference_projection(v, cap), atol=1e-6)
    assert np.all(got >= 0) and got.sum() <= cap + 1e-9


# -- automatic dual step and the paper's configuration ---------------------------------------
def test_auto_dual_step_scales_with_the_fine_tuning_schedule(digits, digits_dense):
    X, y = digits
    steps = {}
    for epochs in (2, 8):
        clf = FairPrunedClassifier(digits_dense, sparsity=0.5, pruning_epochs=1,
                                   max_epochs=epochs, batch_size=128, verbose=0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            clf.fit(X, y, groups=y)
        steps[epochs] = clf.dual_lr_
    per_epoch = int(np.ceil(len(X) / 128))
    assert steps[2] == pytest.approx(4 * steps[8])
    from fairprune.training import AUTO_DUAL_STEP

    assert steps[8] == pytest.approx(AUTO_DUAL_STEP / (10 * per_epoch * 8))


def test_paper_defaults_configure_the_estimator(digits):
    X, y = digits
    params = FairPrunedClassifier.paper_defaults("utkface")
    assert params == paper_defaults("utkface")
    clf = FairPrunedClassifier(make_mlp(64, 10, (16, 16)), sparsity=0.5,
                               **{**params, "pruning_epochs": 1, "max_epochs": 1}, verbose=0)
    assert clf.get_params()["dual_lr"] == 1e-4 and clf.max_multiplier_sum is None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clf.fit(X, y, groups=y)
    assert clf.dual_lr_ == 1e-4
    assert clf.optimizer_.param_groups[0]["momentum"] == 0.9
    assert clf.optimizer_.param_groups[0]["weight_decay"] == 1e-4
    with pytest.raises(ValueError, match="dataset must be one of"):
        paper_defaults("mnist")


def test_fair_epoch_selection_keeps_the_most_accurate_feasible_epoch(digits, digits_dense):
    """epoch_selection="fair": among fine-tuning epochs whose held-out max ψ_g <= ε the most
    accurate, else the lowest held-out max ψ_g; the chosen epoch's weights and masks return."""
    X, y = digits
    split = ValidSplit(0.3, stratified=True, random_state=0)
    for tolerance in (0.0, 0.05, 1.0):  # none feasible, some, all
        clf = FairPrunedClassifier(
            digits_dense, method="nft", epoch_selection="fair", tolerance=tolerance,
            sparsity=0.95, dense_layers=(), pruning_epochs=2, max_epochs=6, lr=0.3, verbose=0,
            train_split=split)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            clf.fit(X, y, groups=y)
        acc = np.array(clf.history[:, "valid_acc"])[2:]
        eag = np.array(clf.history[:, "valid_max_excess_accuracy_gap"])[2:]
        feasible = eag <= tolerance
        if feasible.any():
            expected = int(np.flatnonzero(feasible)[np.argmax(acc[feasible])])
        else:
            expected = int(np.argmin(eag))
        assert clf.selected_epoch_ == 2 + expected + 1, tolerance
        _, valid = split(X, y)
        Xv, yv = X[valid.indices], y[valid.indices]
        assert float((clf.predict(Xv) == yv).mean()) == pytest.approx(acc[expected])
        assert clf.sparsity_ == pytest.approx(0.95, abs=1e-3)


def test_fair_epoch_selection_on_the_upper_bound(digits, digits_dense):
    """selection_bound="upper": feasibility and the fallback read the held-out max ψ_g's
    bootstrap upper bound, computed from the dense and sparse models' paired predictions on
    the validation rows (recomputed here from the restored epoch's predictions)."""
    from fairprune.intervals import max_excess_upper_bound

    X, y = digits
    split = ValidSplit(0.3, stratified=True, random_state=0)
    clf = FairPrunedClassifier(
        digits_dense, method="nft", epoch_selection="fair", selection_bound="upper",
        tolerance=0.05, sparsity=0.95, dense_layers=(), pruning_epochs=2, max_epochs=6,
        lr=0.3, verbose=0, train_split=split)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clf.fit(X, y, groups=y)
    point = np.array(clf.history[:, "valid_max_excess_accuracy_gap"])
    upper = np.array(clf.history[:, "valid_max_excess_accuracy_gap_upper"])
    assert np.all(upper >= point - 1e-12) and np.any(upper > point)
    acc = np.array(clf.history[:, "valid_acc"])[2:]
    feasible = upper[2:] <= clf.tolerance
    expected = (int(np.flatnonzero(feasible)[np.argmax(acc[feasible])]) if feasible.any()
                else int(np.argmin(upper[2:])))
    assert clf.selected_epoch_ == 2 + expected + 1
    _, valid = split(X, y)
    Xv, yv = X[valid.indices], y[valid.indices]
    codes = np.searchsorted(clf.groups_, yv)
    category = 2 * (clf.predict_dense(Xv) == yv) + (clf.predict(Xv) == yv)
    pairs = np.zeros((len(clf.groups_), 4))
    np.add.at(pairs, (codes, category), 1)
    seed = clf.random_state * 1_000_003 + clf.selected_epoch_
    assert max_excess_upper_bound(pairs, random_state=seed) == pytest.approx(
        upper[clf.selected_epoch_ - 1])


def test_upper_selection_bound_needs_fair_selection(digits, digits_dense):
    X, y = digits
    with pytest.raises(ValueError, match="selection_bound.*epoch_selection='fair'"):
        FairPrunedClassifier(digits_dense, epoch_selection="accuracy", selection_bound="upper",
                             train_split=ValidSplit(0.2), verbose=0).fit(X, y, groups=y)
