"""Pruning criteria: FairGRAPE's importance and greedy choice, learned (bi-level) masks, the
geometric schedule and marginal groups."""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.datasets import load_digits

from fairprune import FairPrunedClassifier
from fairprune.datasets.models import make_mlp, train_classifier
from fairprune.pruning import (BiLevel, FairGRAPE, MaskSet, PruningContext, fairgrape_defaults,
                               geometric_sparsity, magnitude_masks)
from fairprune.pruning.fairgrape import greedy_keep_mask, group_importance


@pytest.fixture(scope="module")
def digits_model():
    X, y = load_digits(return_X_y=True)
    X = (X / 16).astype("float32")
    dense = make_mlp(64, 10, (32, 32))
    train_classifier(dense, X, y, epochs=15, seed=0)
    return X, y, dense


def _loss(logits, y):
    return torch.nn.functional.cross_entropy(logits, y, reduction="none")


def _batches(X, y, codes, batch_size=64):
    for start in range(0, len(X), batch_size):
        stop = start + batch_size
        yield (torch.as_tensor(X[start:stop]), torch.as_tensor(y[start:stop]),
               torch.as_tensor(codes[start:stop]))


def _importance(module, layers, X, y, codes, n_groups):
    return group_importance(module, [f"{n}.weight" for n in layers], _batches(X, y, codes),
                            n_groups, _loss, lambda m, x: m(x))


def _reference_greedy(importance: np.ndarray, n_keep: int) -> np.ndarray:
    """FairGRAPE's greedy, one weight per step, written plainly."""
    n_groups, n = importance.shape
    totals = importance.sum(axis=1)
    target = totals / totals.sum()
    orders = [sorted(range(n), key=lambda i, k=k: (-importance[k, i], i)) for k in range(n_groups)]
    pointers = [0] * n_groups
    kept = np.zeros(n, dtype=bool)
    sums = np.zeros(n_groups)
    while kept.sum() < n_keep:
        share = sums / sums.sum() if sums.sum() > 0 else np.full(n_groups, 1 / n_groups)
        k = int(np.argmin(share - target))
        while kept[orders[k][pointers[k]]]:
            pointers[k] += 1
        i = orders[k][pointers[k]]
        kept[i] = True
        sums += importance[:, i]
    return kept


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 4), st.integers(2, 40), st.data())
def test_vectorised_greedy_equals_one_weight_per_step(n_groups, n, data):
    values = data.draw(st.lists(st.floats(0.0, 10.0, allow_nan=False), min_size=n_groups * n,
                                max_size=n_groups * n))
    importance = np.asarray(values, dtype=np.float64).reshape(n_groups, n)
    importance[:, 0] += 1e-3  # a layer with some importance
    n_keep = data.draw(st.integers(0, n))
    mask = greedy_keep_mask(torch.as_tensor(importance), torch.ones(n, dtype=torch.bool), n_keep)
    expected = _reference_greedy(importance, n_keep)
    assert mask.bool().numpy().tolist() == expected.tolist()


def test_greedy_blocks_keep_the_count_and_only_candidates():
    torch.manual_seed(0)
    importance = torch.rand(3, 50, 40)
    candidates = torch.rand(50, 40) > 0.3
    mask = greedy_keep_mask(importance, candidates, 700, max_rounds=10)
    assert int(mask.sum()) == 700
    assert not bool((mask.bool() & ~candidates).any())


def test_one_group_one_shot_keeps_the_top_k_of_the_importance(digits_model):
    X, y, dense = digits_model
    clf = FairPrunedClassifier(dense, sparsity=0.8, dense_layers=(), method="nft",
                               pruning_criterion="fairgrape", pruning_epochs=1, max_epochs=0,
                               verbose=0).fit(X, y, groups=np.zeros(len(y), dtype=int))
    layers = clf.prunable_layers_
    importance = _importance(copy.deepcopy(dense), layers, X, y, np.zeros(len(y), dtype=int), 1)
    for name, mask in clf.masks_.items():
        scores = importance[name][0].flatten()
        n_keep = scores.numel() - round(0.8 * scores.numel())
        top = torch.zeros_like(scores, dtype=torch.bool)
        top[torch.argsort(scores, descending=True, stable=True)[:n_keep]] = True
        assert torch.equal(mask.flatten().bool(), top), name


def test_exact_per_layer_sparsity(digits_model):
    X, y, dense = digits_model
    clf = FairPrunedClassifier(dense, sparsity=0.73, dense_layers=(), method="nft",
                               pruning_criterion=FairGRAPE(max_batches=5), pruning_epochs=2,
                               max_epochs=0, verbose=0).fit(X, y, groups=y % 3)
    table = clf.sparsity_table()
    for _, row in table.iterrows():
        assert row["n_zero"] == round(0.73 * row["n_weights"]), row["layer"]


def _shares(importance: dict, masks: dict | None) -> dict:
    """Per layer, each group's share of the (kept) importance."""
    shares = {}
    for name, scores in importance.items():
        kept = scores if masks is None else scores * masks[name]
        totals = kept.reshape(len(scores), -1).sum(dim=1)
        shares[name] = (totals / totals.sum()).numpy()
    return shares


@pytest.mark.parametrize("sparsity", [0.8, 0.9])
def test_fairgrape_keeps_group_shares_closer_to_the_dense_shares(sparsity):
    # a group of 8% of the rows whose signal lives in features the other group never uses:
    # its weights get fewer updates and stay small, so magnitude pruning takes them first
    rng = np.random.default_rng(0)
    n = 3000
    codes = (rng.random(n) < 0.08).astype(int)
    X = rng.normal(size=(n, 20)).astype("float32")
    X[codes == 0, 10:] = 0
    X[codes == 1, :10] = 0
    y = (X @ rng.normal(size=20) > 0).astype(int)
    torch.manual_seed(0)
    module = make_mlp(20, 2, (32,))
    train_classifier(module, X, y, epochs=10, seed=0)
    layers = ["0"]  # the input layer: 640 weights, where the two groups' features meet
    importance = _importance(module, layers, X, y, codes, 2)
    context = PruningContext(module=module, layer_names=layers, masks=MaskSet(), n_groups=2,
                             batches=lambda size: _batches(X, y, codes, size), loss_fn=_loss,
                             forward=lambda m, x: m(x))
    fair = FairGRAPE().masks(context, sparsity)
    magnitude = magnitude_masks(module, layers, sparsity)
    dense_share = _shares(importance, None)
    fair_share, magnitude_share = _shares(importance, fair), _shares(importance, magnitude)
    for name in importance:
        fair_error = np.abs(fair_share[name] - dense_share[name]).sum()
        magnitude_error = np.abs(magnitude_share[name] - dense_share[name]).sum()
        assert fair_error < magnitude_error, (name, fair_error, magnitude_error)


def test_importance_pass_leaves_the_model_as_it_was():
    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.BatchNorm1d(8),
                                 torch.nn.ReLU(), torch.nn.Linear(8, 3)).eval()
    before = copy.deepcopy(module.state_dict())
    X = np.random.default_rng(0).normal(size=(50, 4)).astype("float32")
    y = np.arange(50) % 3
    _importance(module, ["0", "3"], X, y, np.arange(50) % 2, 2)
    after = module.state_dict()
    assert not module.training
    for key, value in before.items():
        assert torch.equal(value, after[key]), key


def test_bilevel_reaches_the_exact_sparsity_and_learns_other_masks(digits_model):
    X, y, dense = digits_model
    common = dict(sparsity=0.85, dense_layers=(), pruning_epochs=3, max_epochs=1, verbose=0,
                  tolerance=0.02)
    learned = FairPrunedClassifier(dense, pruning_criterion=BiLevel(score_lr=1e-2),
                                   **common).fit(X, y, groups=y % 2)
    magnitude = FairPrunedClassifier(dense, **common).fit(X, y, groups=y % 2)
    for _, row in learned.sparsity_table().iterrows():
        assert row["n_zero"] == round(0.85 * row["n_weights"]), row["layer"]
    differing = sum(int((a.bool() != b.bool()).sum()) for (_, a), (_, b)
                    in zip(learned.masks_.items(), magnitude.masks_.items()))
    assert differing > 0
    assert learned.__dict__.get("pruning_state_") is None  # scores dropped after pruning


def test_bilevel_penalty_needs_two_groups_and_lagrangian_needs_ceag(digits_model):
    X, y, dense = digits_model
    with pytest.raises(ValueError, match="two-group"):
        FairPrunedClassifier(dense, pruning_criterion=BiLevel(fairness="penalty"), method="nft",
                             pruning_epochs=1, max_epochs=0, verbose=0).fit(X, y, groups=y % 3)
    with pytest.raises(ValueError, match="pruning_criterion"):
        FairPrunedClassifier(dense, pruning_criterion="bilevel", method="nft",
                             verbose=0).fit(X, y, groups=y % 2)


def test_penalty_form_runs_on_two_groups(digits_model):
    X, y, dense = digits_model
    clf = FairPrunedClassifier(dense, pruning_criterion=BiLevel(fairness="penalty"),
                               method="nft", sparsity=0.8, dense_layers=(), pruning_epochs=2,
                               max_epochs=0, verbose=0).fit(X, y, groups=y % 2)
    assert abs(clf.sparsity_ - 0.8) < 0.005


@pytest.mark.parametrize("name, value", [("pruning_criterion", "snip"),
                                          ("group_mode", "pairs"),
                                          ("pruning_schedule", "linear")])
def test_unknown_values_name_the_parameter(digits_model, name, value):
    X, y, dense = digits_model
    with pytest.raises(ValueError, match=name):
        FairPrunedClassifier(dense, verbose=0, **{name: value}).fit(X, y, groups=y % 2)


def test_fairgrape_is_not_defined_for_channels_or_a_global_scope(digits_model):
    X, y, dense = digits_model
    for extra in ({"pruning": "channel"}, {"pruning_scope": "global"}):
        with pytest.raises(ValueError, match="pruning_criterion"):
            FairPrunedClassifier(dense, pruning_criterion="fairgrape", verbose=0,
                                 **extra).fit(X, y, groups=y % 2)


def test_geometric_schedule_and_fairgrape_defaults(digits_model):
    assert [round(geometric_sparsity(t, 0.875, n_updates=3), 4) for t in range(4)] == [
        0.5, 0.75, 0.875, 0.875]
    params = fairgrape_defaults(0.9, keep_per_iteration=0.975)
    assert params["pruning_epochs"] == 3 * 91 and params["pruning_frequency"] == 3
    X, y, dense = digits_model
    clf = FairPrunedClassifier(dense, **{**params, "pruning_epochs": 6, "max_epochs": 2,
                                         "lr_milestones": None}, verbose=0,
                               ).fit(X, y, groups=y % 2)
    sparsity = clf.history[:, "sparsity"]
    assert sparsity[:6] == pytest.approx([1 - 0.1 ** 0.5] * 3 + [0.9] * 3)
    assert clf.history[:, "lr"] == pytest.approx([1e-5] * 6 + [1e-4] * 2)


def test_marginal_groups_have_one_constraint_per_attribute_value(digits_model):
    X, y, dense = digits_model
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"parity": np.where(y % 2, "odd", "even"),
                          "band": rng.choice(["a", "b", "c"], len(y))})
    clf = FairPrunedClassifier(dense, sparsity=0.8, tolerance=0.02, dense_layers=(),
                               group_mode="marginal", pruning_epochs=1, max_epochs=2,
                               verbose=0).fit(X, y, sensitive_features=frame)
    assert clf.fairness_.num_groups == 5 and len(clf.multipliers_) == 5
    assert list(clf.groups_) == [("parity", "even"), ("parity", "odd"), ("band", "a"),
                                 ("band", "b"), ("band", "c")]
    report = clf.disparity_report(X, y, sensitive_features=frame)
    assert len(report) == 5 and set(report["attribute"]) == {"parity", "band"}
    # every row counted once per attribute
    assert report.groupby("attribute")["n"].sum().tolist() == [len(y), len(y)]
    intersectional = FairPrunedClassifier(dense, sparsity=0.8, dense_layers=(),
                                          pruning_epochs=1, max_epochs=0,
                                          verbose=0).fit(X, y, sensitive_features=frame)
    assert len(intersectional.multipliers_) == 6  # 2 x 3 combinations


def test_marginal_report_is_the_report_of_each_attribute():
    rng = np.random.default_rng(1)
    n = 600
    y = rng.integers(0, 3, n)
    dense = np.where(rng.random(n) < 0.9, y, (y + 1) % 3)
    sparse = np.where(rng.random(n) < 0.8, y, (y + 2) % 3)
    frame = pd.DataFrame({"r": rng.choice(["a", "b", "c"], n), "s": rng.choice(["f", "m"], n)})
    from fairprune import disparity_report
    from fairprune.metrics import excess_accuracy_gaps

    marginal = disparity_report(y, dense, sparse, frame, group_mode="marginal", n_boot=50,
                                random_state=0)
    for attribute in ("r", "s"):
        single = disparity_report(y, dense, sparse, frame[attribute])
        rows = marginal[marginal["attribute"] == attribute]
        np.testing.assert_allclose(rows["excess_accuracy_gap"], single["excess_accuracy_gap"])
        np.testing.assert_allclose(rows["accuracy_gap"], single["accuracy_gap"])
    psi = excess_accuracy_gaps(y, dense, sparse, frame, group_mode="marginal")
    np.testing.assert_allclose(psi.to_numpy(), marginal["excess_accuracy_gap"].to_numpy())
    assert (marginal["excess_accuracy_gap_ci_low"] <= marginal["excess_accuracy_gap"]).all()


def test_marginal_primal_objective_has_the_lagrangian_gradient():
    from fairprune.constraints.problems import CEAGProblem, FairnessState
    from fairprune.constraints.statistics import batch_group_stats

    torch.manual_seed(0)
    state = FairnessState(5, 0, True)
    with torch.no_grad():
        state.multiplier.weight.copy_(torch.rand(5))
    problem = CEAGProblem(state, 0.0)
    theta = torch.randn(12, requires_grad=True)
    ids = torch.stack([torch.arange(12) % 2, 2 + torch.arange(12) % 3], dim=1)
    losses = theta.square()
    stats = batch_group_stats(losses.detach(), torch.ones(12), ids, 5)
    objective = problem.primal_objective(losses, stats)
    (grad,) = torch.autograd.grad(objective, theta, retain_graph=True)
    # L + Σ_c λ_c (L_c − L), every sample in one cell per attribute
    lam = state.multiplier.weight.detach().flatten()
    cells = [(ids == c).any(dim=1) for c in range(5)]
    lagrangian = losses.mean() + sum(lam[c] * (losses[cells[c]].mean() - losses.mean())
                                     for c in range(5))
    (expected,) = torch.autograd.grad(lagrangian, theta)
    torch.testing.assert_close(grad, expected)
