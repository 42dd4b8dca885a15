import copy
import io
import pickle

import numpy as np
import pytest
import torch
import torchvision
from torch import nn

from fairprune.pruning import (
    MaskSet,
    channel_masks,
    count_flops,
    cubic_sparsity,
    export_module,
    magnitude_masks,
    prunable_layers,
    sparsity_table,
)


def mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, 10))


MODELS = {
    "mlp": mlp,
    "resnet18": lambda: torchvision.models.resnet18(weights=None, num_classes=10),
    "mobilenet_v2": lambda: torchvision.models.mobilenet_v2(weights=None, num_classes=10),
}


def test_cubic_schedule_matches_formula_every_epoch():
    T, sf = 9, 0.9
    for t in range(15):
        expected = sf + (0 - sf) * (1 - min(t, T) / T) ** 3
        assert cubic_sparsity(t, sf, end_step=T) == pytest.approx(expected)
    # frequency: the schedule only moves every 3 steps; start step and initial sparsity
    assert cubic_sparsity(4, 0.8, end_step=9, frequency=3) == cubic_sparsity(3, 0.8, end_step=9)
    assert cubic_sparsity(1, 0.8, end_step=6, start_step=2, initial_sparsity=0.1) == 0.1
    assert cubic_sparsity(0, 0.5, end_step=0) == 0.5  # one-shot


@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize("sparsity", [0.5, 0.9, 0.99])
@pytest.mark.parametrize("scope", ["layerwise", "global"])
def test_exact_sparsity(name, sparsity, scope):
    model = MODELS[name]()
    layers = prunable_layers(model)
    masks = MaskSet(magnitude_masks(model, layers, sparsity, scope))
    masks.apply_(model)
    table = sparsity_table(model, layers)
    prunable = table[table["prunable"]]
    if scope == "layerwise":
        for row in prunable.itertuples():
            assert abs(row.n_zero - round(sparsity * row.n_weights)) <= 1, row.layer
    else:
        assert prunable["n_zero"].sum() == round(sparsity * prunable["n_weights"].sum())
    dense_rows = table[~table["prunable"]]
    assert len(dense_rows) == 2 and (dense_rows["n_zero"] == 0).all()  # first and last stay dense


def test_ties_are_broken_deterministically():
    layer = nn.Linear(10, 10)
    with torch.no_grad():
        layer.weight.fill_(1.0)
    model = nn.Sequential(layer)
    masks = magnitude_masks(model, ["0"], 0.37)
    assert int((masks["0.weight"] == 0).sum()) == 37
    assert torch.equal(masks["0.weight"], magnitude_masks(model, ["0"], 0.37)["0.weight"])


@pytest.mark.parametrize(
    "optimizer",
    [
        lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, weight_decay=1e-4),
        lambda p: torch.optim.Adam(p, lr=1e-2, weight_decay=1e-4),
    ],
)
def test_zeros_stay_zero_through_100_steps(optimizer):
    model = mlp()
    layers = prunable_layers(model, ())
    masks = MaskSet(magnitude_masks(model, layers, 0.9))
    masks.apply_(model)
    zero_before = [p == 0 for p in (model[0].weight, model[2].weight, model[4].weight)]
    opt = optimizer(model.parameters())
    x, y = torch.randn(32, 64), torch.randint(0, 10, (32,))
    for _ in range(100):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
        masks.apply_(model)
    for before, weight in zip(zero_before, (model[0].weight, model[2].weight, model[4].weight)):
        assert torch.all(weight[before] == 0)
        assert (weight != 0).sum() == (~before).sum()  # kept weights moved, none regrew


def test_masks_deepcopy_pickle_and_move_with_module():
    model = mlp()
    masks = MaskSet(magnitude_masks(model, prunable_layers(model), 0.5))
    clone = copy.deepcopy(masks)
    assert clone.param_names == masks.param_names
    restored = pickle.loads(pickle.dumps(masks))
    restored.apply_(model)
    assert sparsity_table(model, prunable_layers(model)).attrs["prunable_sparsity"] == pytest.approx(0.5)
    copied_model = copy.deepcopy(model)  # no forward hooks: plain deepcopy works
    assert isinstance(copied_model, nn.Sequential)


def test_unstructured_export_keeps_class_and_keys():
    model = mlp()
    masks = MaskSet(magnitude_masks(model, prunable_layers(model, ()), 0.8))
    exported = export_module(model, masks)
    assert type(exported) is type(model)
    assert exported.state_dict().keys() == model.state_dict().keys()
    assert float((exported[2].weight == 0).float().mean()) == pytest.approx(0.8, abs=1e-3)
    buf = io.BytesIO()
    torch.save(exported, buf)
    buf.seek(0)
    loaded = torch.load(buf, weights_only=False)
    x = torch.randn(4, 64)
    assert torch.equal(loaded(x), exported(x))


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v2"])
def test_channel_export_matches_masked_model(name):
    torch.manual_seed(0)
    model = MODELS[name]().eval()
    example = torch.randn(2, 3, 32, 32)
    masks, plan = channel_masks(model, prunable_layers(model), 0.5, example)
    mask_set = MaskSet(masks, plan, (3, 32, 32))
    mask_set.apply_(model)
    exported = export_module(model, mask_set).eval()
    with torch.no_grad():
        assert torch.allclose(model(example), exported(example), atol=1e-4)
    n_dense = sum(p.numel() for p in model.parameters())
    n_small = sum(p.numel() for p in exported.parameters())
    assert n_small < 0.35 * n_dense  # halving channels roughly quarters conv weights
    pickle.loads(pickle.dumps(exported))
    flops_dense, flops_small = count_flops(model, example)["dense"], count_flops(exported, example)["dense"]
    assert flops_small < 0.5 * flops_dense


def test_flops_sparse_count_scales_with_density():
    model = mlp()
    MaskSet(magnitude_masks(model, ["2"], 0.75)).apply_(model)
    flops = count_flops(model, torch.randn(1, 64))
    assert flops["dense"] == 64 * 128 + 128 * 128 + 128 * 10
    assert flops["sparse"] == pytest.approx(64 * 128 + 0.25 * 128 * 128 + 128 * 10)


def test_bad_inputs_name_the_argument():
    with pytest.raises(ValueError, match="no prunable layer"):
        prunable_layers(nn.Sequential(nn.ReLU()))
    with pytest.raises(ValueError, match="'dense_layers' parameter names 'fc9'"):
        prunable_layers(mlp(), ("fc9",))
    with pytest.raises(ValueError, match="nothing is left to prune"):
        prunable_layers(nn.Sequential(nn.Linear(2, 2)), ("first",))
    with pytest.raises(ValueError, match="'pruning_scope' must be"):
        magnitude_masks(mlp(), ["2"], 0.5, scope="local")
    with pytest.raises(ValueError, match="final_sparsity"):
        cubic_sparsity(0, 1.0, end_step=3)
    masks = MaskSet(magnitude_masks(mlp(), ["2"], 0.5))
    with pytest.raises(ValueError, match="do not match the module"):
        masks.check_compatible(nn.Sequential(nn.Linear(3, 3)))


@pytest.mark.parametrize("value, error", [(1.0, ValueError), (-0.1, ValueError), ("0.5", TypeError)])
def test_sparsity_out_of_range_names_the_argument(value, error):
    with pytest.raises(error, match="'sparsity' must be a float in \\[0, 1\\)"):
        magnitude_masks(mlp(), ["2"], value)


def test_channel_pruning_never_removes_classes_and_says_what_it_reached(digits, digits_dense):
    """dense_layers=() lists the output layer, whose channels are the classes: they stay, and
    the export still gives one logit per class. A fraction that rounds to every channel of a
    layer leaves one, and the sparsity reached below the target is said."""
    import warnings

    from fairprune import FairPrunedClassifier

    X, y = digits
    params = dict(pruning="channel", pruning_epochs=1, max_epochs=1, verbose=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clf = FairPrunedClassifier(digits_dense, dense_layers=(), sparsity=0.5, **params).fit(
            X, y, groups=y)
    exported = clf.export()
    assert exported(torch.as_tensor(X[:3])).shape == (3, 10)
    np.testing.assert_array_equal(exported(torch.as_tensor(X)).argmax(1).numpy(), clf.predict(X))
    with pytest.warns(UserWarning, match=r"reached sparsity_=0\.\d+ of the pruned layers, not "
                                         r"sparsity=0\.999"):
        clf = FairPrunedClassifier(digits_dense, sparsity=0.999, **params).fit(X, y, groups=y)
    assert 0.9 < clf.sparsity_ < 0.999  # one channel per pruned layer kept, not none pruned
