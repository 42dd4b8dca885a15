"""Options users expect from skorch and PyTorch: mixed precision, torch.compile, DataLoader
workers, shuffling, CUDA without host syncs. CPU runs everything but the CUDA checks."""

import pickle
import warnings

import numpy as np
import pytest
import torch

from fairprune import FairPrunedClassifier

FAST = dict(sparsity=0.8, tolerance=0.05, dense_layers=(), pruning_epochs=1, max_epochs=2,
            lr=0.05, verbose=0)


def fit(dense, X, y, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return FairPrunedClassifier(dense, **{**FAST, **kw}).fit(X, y, groups=y)


@pytest.fixture(scope="module")
def reference(digits, digits_dense):
    X, y = digits
    return fit(digits_dense, X, y)


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_keeps_fairness_state_in_float32(digits, digits_dense, reference,
                                                          precision):
    X, y = digits
    clf = fit(digits_dense, X, y, mixed_precision=precision)
    state = clf.fairness_
    assert state.buffer.storage.dtype == torch.float32
    assert state.multiplier.weight.dtype == torch.float32
    assert state.reference.group_accuracy.dtype == torch.float32
    assert all(p.dtype == torch.float32 for p in clf.module_.parameters())
    assert isinstance(clf.grad_scaler_, torch.amp.GradScaler) == (precision == "fp16")
    assert np.isfinite(clf.history[:, "train_loss"]).all()
    assert clf.score(X, y) >= reference.score(X, y) - 0.05
    assert not np.array_equal(clf.predict_proba(X), reference.predict_proba(X))  # it did act


def test_mixed_precision_reaches_the_forward_pass(digits, digits_dense):
    X, y = digits
    seen = []
    dense = __import__("copy").deepcopy(digits_dense)
    dense[0].register_forward_hook(lambda module, args, out: seen.append(out.dtype))
    fit(dense, X, y, mixed_precision="bf16", max_epochs=1)
    assert torch.bfloat16 in seen  # training forward passes
    assert torch.float32 in seen  # dense reference and predictions stay in float32


def test_compile_trains_the_same_model_and_pickles(digits, digits_dense, reference):
    X, y = digits
    clf = fit(digits_dense, X, y, compile=True, compile__backend="eager")
    assert clf.__dict__.get("_compiled_module") is not None  # the compiled forward was used
    assert not hasattr(clf.module_, "_orig_mod")  # module_ stays a plain module
    np.testing.assert_allclose(clf.predict_proba(X), reference.predict_proba(X), atol=1e-6)
    clone = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(clone.predict_proba(X), clf.predict_proba(X))


def test_compile_with_aot_autograd_backend(digits, digits_dense, reference):
    X, y = digits
    clf = fit(digits_dense, X, y, compile=True, compile__backend="aot_eager")
    np.testing.assert_allclose(clf.predict_proba(X), reference.predict_proba(X), atol=1e-4)


def test_dataloader_workers_give_the_same_model(digits, digits_dense, reference):
    X, y = digits
    clf = fit(digits_dense, X, y, iterator_train__num_workers=2)
    np.testing.assert_array_equal(clf.predict_proba(X), reference.predict_proba(X))
    # persistent workers skip a seed draw of the DataLoader after the first epoch: other
    # shuffles, but still reproducible
    runs = [fit(digits_dense, X, y, iterator_train__num_workers=2,
                iterator_train__persistent_workers=True) for _ in range(2)]
    np.testing.assert_array_equal(runs[0].predict_proba(X), runs[1].predict_proba(X))


def test_batches_are_shuffled_by_default_and_seeded(digits, digits_dense, reference):
    X, y = digits
    fixed = fit(digits_dense, X, y, iterator_train__shuffle=False)
    again = fit(digits_dense, X, y)
    assert not np.array_equal(fixed.predict_proba(X), reference.predict_proba(X))
    np.testing.assert_array_equal(again.predict_proba(X), reference.predict_proba(X))
    sampler = torch.utils.data.SequentialSampler(range(len(y)))
    own = fit(digits_dense, X, y, iterator_train__sampler=sampler)  # no shuffle/sampler clash
    np.testing.assert_array_equal(own.predict_proba(X), fixed.predict_proba(X))


cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA is not available")


@cuda
@pytest.mark.parametrize("precision", [None, "bf16"])
def test_cuda_training_step_has_no_host_sync(digits, digits_dense, precision):
    """The estimator's training step on CUDA under torch's sync debug mode ("error")."""
    X, y = digits
    clf = fit(digits_dense, X, y, device="cuda", mixed_precision=precision, max_epochs=1)
    batch_X = {"__fairprune_X__": torch.as_tensor(X[:128]).cuda(),
               "__fairprune_groups__": torch.as_tensor(y[:128]).cuda()}
    batch = (batch_X, torch.as_tensor(y[:128]).cuda())
    clf.train_step(batch)  # warm-up (lazy CUDA initialisation may sync)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(3):
            clf.train_step(batch)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert clf.module_[0].weight.is_cuda


def test_batch_fetching_matches_skorchs_per_sample_loading(digits, digits_dense, reference):
    """A custom collate_fn switches back to skorch's sample-by-sample loading: same model."""
    from torch.utils.data import default_collate

    X, y = digits
    clf = fit(digits_dense, X, y, iterator_train__collate_fn=default_collate,
              iterator_valid__collate_fn=default_collate)
    np.testing.assert_array_equal(clf.predict_proba(X), reference.predict_proba(X))
    assert clf.history[:, "train_loss"] == reference.history[:, "train_loss"]
    assert not hasattr(clf.get_iterator(clf.get_dataset(X[:10])).dataset, "__getitems__")
    assert hasattr(reference.get_iterator(reference.get_dataset(X[:10])).dataset, "__getitems__")


@pytest.mark.parametrize("precision", [None, "bf16"])
def test_estimator_training_step_has_no_host_sync(digits, digits_dense, precision, monkeypatch):
    """The estimator's whole step (not only the engine) under the sync-detecting stub: every
    tensor-to-host conversion raises. The group-id range check reads values on CPU only (it
    is skipped for device tensors), so it is switched off to see the step as on a GPU."""
    from support import forbid_host_sync

    from fairprune.groups import pack_groups

    X, y = digits
    clf = fit(digits_dense, X, y, mixed_precision=precision, max_epochs=1)
    monkeypatch.setattr("fairprune.training.engine.check_group_ids", lambda ids, n: None)
    packed = pack_groups(X, clf.group_encoder_.transform(y))
    batch = next(iter(clf.get_iterator(clf.get_dataset(packed, y), training=True)))
    before = [p.detach().clone() for p in clf.module_.parameters()]
    with forbid_host_sync():
        for _ in range(3):
            step = clf.train_step(batch)
    assert step["loss"].dtype == torch.float32
    assert any(not torch.equal(a, b) for a, b in zip(before, clf.module_.parameters()))


def test_skorch_accelerate_mixin_single_process(digits, digits_dense, reference):
    """skorch's AccelerateMixin on CPU, one process: same model as without it. (Several
    processes through AccelerateMixin are not supported yet: see docs/scale.md.)"""
    accelerate = pytest.importorskip("accelerate")
    from skorch.hf import AccelerateMixin

    class AcceleratedFairPruned(AccelerateMixin, FairPrunedClassifier):
        pass

    X, y = digits
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clf = AcceleratedFairPruned(digits_dense, accelerator=accelerate.Accelerator(cpu=True),
                                    **FAST).fit(X, y, groups=y)
    np.testing.assert_array_equal(clf.predict_proba(X), reference.predict_proba(X))
    assert clf.sparsity_ == pytest.approx(reference.sparsity_)
    assert clf.disparity_report(X, y, groups=y).attrs == reference.disparity_report(
        X, y, groups=y).attrs
