import copy
import io
import pickle
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sklearn
import torch
from skorch.callbacks import ProgressBar
from skorch.dataset import ValidSplit
from skorch.helper import SliceDict
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV, KFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer

from fairprune import FairPrunedClassifier, FairnessToleranceWarning
from fairprune.groups import by_target
from fairprune.scorers import make_disparity_scorer, neg_max_excess_accuracy_gap_scorer
from fairprune.metrics import max_excess_accuracy_gap

FAST = dict(pruning_epochs=2, max_epochs=2, verbose=0, lr=0.05)


def small(dense, **kw):
    params = dict(sparsity=0.8, tolerance=0.05, **FAST)
    params.update(kw)
    return FairPrunedClassifier(dense, **params)


def test_fit_predict_report_and_history(digits, digits_dense):
    X, y = digits
    before = copy.deepcopy(digits_dense.state_dict())
    clf = small(digits_dense).fit(X, y, groups=y)
    for key, value in before.items():  # the user's module is untouched
        assert torch.equal(value, digits_dense.state_dict()[key])
    assert clf.module_ is not digits_dense and clf.dense_module_ is not digits_dense
    assert clf.sparsity_ == pytest.approx(0.8, abs=1e-3)
    assert clf.predict(X).shape == (len(X),) and clf.predict_proba(X).shape == (len(X), 10)
    assert np.array_equal(clf.predict_dense(X), digits_dense(torch.tensor(X)).argmax(1).numpy())
    assert 0.5 < clf.score(X, y) <= 1.0
    report = clf.disparity_report(X, y, groups=y)
    assert len(report) == 10 and report["seen_in_fit"].all()
    assert report.attrs["tolerance"] == 0.05
    hist = clf.history
    assert len(hist) == 4
    assert hist[:, "phase"] == ["gmp", "gmp", "ceag", "ceag"]
    assert hist[:, "sparsity"][0] == 0.0 and hist[:, "sparsity"][-1] == pytest.approx(0.8)
    for key in ("train_max_excess_accuracy_gap", "train_pairwise_disparity", "max_multiplier", "n_violated", "train_acc", "lr"):
        assert all(np.isfinite(hist[:, key]))
    assert len(hist[-1, "multipliers"]) == 10
    assert clf.groups_.tolist() == list(range(10))
    assert clf.multipliers_.index.tolist() == list(range(10))
    assert (clf.multipliers_ >= 0).all()
    assert clf.dense_group_accuracy_.between(0, 1).all()
    exported = clf.export()
    assert isinstance(exported, torch.nn.Sequential)
    assert np.array_equal(exported(torch.tensor(X)).argmax(1).numpy(), clf.predict(X))


def test_unseen_group_at_report_time_is_flagged(digits, digits_dense):
    X, y = digits
    clf = small(digits_dense, method="nft").fit(X, y, groups=y % 5)
    report = clf.disparity_report(X, y, groups=y)  # labels 5..9 never seen in fit
    assert report.loc[report["group"] >= 5, "seen_in_fit"].eq(False).all()
    assert report.loc[report["group"] < 5, "seen_in_fit"].all()


def _frame(X, y):
    frame = pd.DataFrame(X, columns=[f"p{i}" for i in range(X.shape[1])])
    frame["digit_group"] = np.where(y < 5, "low", "high")
    return frame


def test_three_group_pathways_give_identical_models(digits, digits_dense):
    X, y = digits
    labels = np.where(y < 5, "low", "high")
    direct = small(digits_dense).fit(X, y, groups=labels)
    frame = small(digits_dense, groups="digit_group").fit(_frame(X, y), y)
    slice_dict = small(KwargsMLP(digits_dense), groups="g").fit(SliceDict(X=X, g=labels), y)
    with sklearn.config_context(enable_metadata_routing=True):
        routed = small(digits_dense).set_fit_request(groups=True).fit(X, y, groups=labels)
    reference = direct.module_.state_dict()
    for other in (frame, routed):
        for key, value in other.module_.state_dict().items():
            assert torch.equal(value, reference[key]), key
    # a dict X reaches the module as keyword arguments: same model as the plain array
    assert slice_dict.groups_.tolist() == direct.groups_.tolist()
    for key, value in slice_dict.module_.inner.state_dict().items():
        assert torch.equal(value, reference[key]), key
    assert np.array_equal(frame.predict(_frame(X, y)), direct.predict(X))


class KwargsMLP(torch.nn.Module):
    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, X):
        return self.inner(X)


def test_same_seed_same_predictions_and_global_rng_untouched(digits, digits_dense):
    X, y = digits
    state = torch.random.get_rng_state()
    a = small(digits_dense, random_state=3).fit(X, y, groups=y)
    assert torch.equal(state, torch.random.get_rng_state())
    b = small(digits_dense, random_state=3).fit(X, y, groups=y)
    assert np.array_equal(a.predict_proba(X), b.predict_proba(X))


def test_clone_pickle_pipeline(digits, digits_dense):
    X, y = digits
    clf = small(digits_dense, groups=by_target, optimizer__nesterov=True)
    cloned = clone(clf)
    assert cloned.get_params()["sparsity"] == 0.8
    assert cloned.get_params()["optimizer__nesterov"] is True
    assert cloned.dense_module is not clf.dense_module
    clf.fit(X, y)
    restored = pickle.loads(pickle.dumps(clf))
    assert np.array_equal(restored.predict(X), clf.predict(X))
    assert restored.multipliers_.equals(clf.multipliers_)
    pipe = make_pipeline(FunctionTransformer(lambda a: a.astype(np.float32)), small(digits_dense, groups=by_target))
    pipe.fit(X.astype(np.float64), y)
    assert neg_max_excess_accuracy_gap_scorer(pipe, X, y) <= 0
    assert pipe.score(X, y) > 0.5


def test_gridsearch_routing_and_locator_give_identical_results(digits, digits_dense):
    X, y = digits
    labels = np.where(y < 5, "low", "high")
    grid = {"tolerance": [0.0, 0.1]}
    cv = KFold(2, shuffle=True, random_state=0)
    with sklearn.config_context(enable_metadata_routing=True):
        scorer = make_disparity_scorer(max_excess_accuracy_gap).set_score_request(groups=True)
        est = small(digits_dense).set_fit_request(groups=True)
        routed = GridSearchCV(est, grid, cv=cv, scoring={"accuracy": "accuracy", "max_excess_accuracy_gap": scorer},
                              refit=False, error_score="raise").fit(X, y, groups=labels)
    located = GridSearchCV(
        small(digits_dense, groups="digit_group"), grid, cv=cv, refit=False, error_score="raise",
        scoring={"accuracy": "accuracy", "max_excess_accuracy_gap": neg_max_excess_accuracy_gap_scorer},
    ).fit(_frame(X, y), y)
    for key in ("mean_test_accuracy", "mean_test_max_excess_accuracy_gap", "split0_test_max_excess_accuracy_gap"):
        assert np.allclose(routed.cv_results_[key], located.cv_results_[key]), key
    assert np.all(np.isfinite(routed.cv_results_["mean_test_max_excess_accuracy_gap"]))


def test_gridsearch_without_routing_or_locator_fails_clearly(digits, digits_dense):
    X, y = digits
    search = GridSearchCV(small(digits_dense), {"tolerance": [0.1]}, cv=2,
                          scoring=neg_max_excess_accuracy_gap_scorer, error_score="raise")
    with pytest.raises(ValueError, match="needs group labels"):
        search.fit(X, y, groups=y)


def test_infeasible_tolerance_warns_with_value_and_groups(digits, digits_dense):
    X, y = digits
    with pytest.warns(FairnessToleranceWarning, match=r"max excess accuracy gap \d\.\d+ > tolerance 0"):
        small(digits_dense, sparsity=0.9, dense_layers=(), tolerance=0.0).fit(X, y, groups=y)


def test_methods_channel_pruning_valid_split_and_progress_bar(digits, digits_dense):
    X, y = digits
    for method, buffers in (("equalized_loss", 0), ("equalized_loss", 40), ("nft", 40)):
        clf = small(digits_dense, method=method, replay_buffer_size=buffers).fit(X, y, groups=y)
        if method == "nft":
            assert (clf.multipliers_ == 0).all()
    clf = small(digits_dense, pruning="channel", sparsity=0.5, dual_optimizer="nupi",
                train_split=ValidSplit(0.2, stratified=True, random_state=0),
                callbacks=[ProgressBar()]).fit(X, y, groups=y)
    assert "valid_acc" in clf.history[-1]
    small_model = clf.export()
    assert small_model[0].out_features == 128  # the first layer stays dense
    assert small_model[2].out_features == 64  # half of the second layer's units removed
    assert small_model[4].in_features == 64
    assert np.array_equal(small_model(torch.tensor(X)).argmax(1).numpy(), clf.predict(X))


def test_partial_fit_continues_training(digits, digits_dense):
    X, y = digits
    clf = small(digits_dense).fit(X, y, groups=y)
    clf.partial_fit(X, y, groups=y)
    assert len(clf.history) == 6 and clf.history[-1, "phase"] == "ceag"


BAD_FIT = [
    (dict(sparsity=1.0), {}, ValueError, "The 'sparsity' parameter of FairPrunedClassifier must be a float in the range \\[0.0, 1.0\\). Got 1.0"),
    (dict(sparsity="high"), {}, TypeError, "'sparsity' parameter"),
    (dict(tolerance=-0.1), {}, ValueError, "'tolerance' parameter of FairPrunedClassifier"),
    (dict(tolerance=float("nan")), {}, ValueError, "'tolerance' parameter"),
    (dict(method="ceg"), {}, ValueError, "Did you mean 'ceag'"),
    (dict(pruning="structured"), {}, ValueError, "'pruning' parameter"),
    (dict(pruning_scope="local"), {}, ValueError, "'pruning_scope' parameter"),
    (dict(replay_buffer_size=-1), {}, ValueError, "'replay_buffer_size' parameter .* int in the range \\[0, inf\\)"),
    (dict(dual_lr=0), {}, ValueError, "'dual_lr' parameter .* or a str among \\{'auto'\\}"),
    (dict(dual_optimizer="adam"), {}, ValueError, "'dual_optimizer' parameter"),
    (dict(dense_layers="first"), {}, TypeError, "'dense_layers' parameter"),
    (dict(dense_layers=("fc1",)), {}, ValueError, "'dense_layers' parameter names 'fc1'"),
    (dict(pruning_epochs=0), {}, ValueError, "'pruning_epochs' parameter .* int in the range \\[1, inf\\)"),
    (dict(batch_size=0), {}, ValueError, "'batch_size' parameter"),
    (dict(lr_milestones=(0.5, 2.0)), {}, ValueError, "'lr_milestones' parameter"),
    (dict(groups=5), {}, TypeError, "The 'groups' parameter must be"),
    (dict(groups="race"), {}, ValueError, "groups='race' names a column"),
    (dict(device="cuda:7") if not torch.cuda.is_available() else dict(sparsity=2), {}, ValueError, "device|sparsity"),
    ({}, dict(groups=None), ValueError, "needs group labels"),
    ({}, dict(groups=[0] * 10), ValueError, "'groups' has 10 labels but X has"),
    ({}, dict(y=None), ValueError, "requires y to be passed"),
    ({}, dict(y="strings"), ValueError, "'y' must hold class indices"),
    ({}, dict(y="too_big"), ValueError, "outside 0 .. 9"),
    ({}, dict(X="wrong_shape"), ValueError, "X of shape \\(1797, 10\\) does not fit dense_module"),
    ({}, dict(groups="with_none"), ValueError, "missing label"),
    (dict(loss_tolerance=-1.0), {}, ValueError, "'loss_tolerance' parameter"),
    (dict(lr_gamma=0), {}, ValueError, "'lr_gamma' parameter"),
    (dict(random_state=-1), {}, ValueError, "'random_state' parameter .* int in the range \\[0, 4294967295\\]"),
    (dict(memory=3), {}, TypeError, "'memory' parameter .* object implementing 'cache'"),
    (dict(mixed_precision="bf15"), {}, ValueError, "'mixed_precision' parameter .* Did you mean 'bf16'"),
    (dict(mixed_precision=True), {}, ValueError, "'mixed_precision' parameter .*'fp16'"),
    (dict(pruning_frequency=0), {}, ValueError, "'pruning_frequency' parameter"),
    (dict(max_epochs=-1), {}, ValueError, "'max_epochs' parameter"),
    (dict(lr=0.0), {}, ValueError, "'lr' parameter"),
    (dict(dense_module="resnet"), {}, TypeError, "'dense_module' parameter .* 'torch.nn.modules.module.Module'"),
    (dict(module__hidden=3), {}, ValueError, "module__\\* parameters are not supported"),
    ({}, dict(X="nan"), ValueError, "Input X contains NaN"),
    ({}, dict(X="sparse"), TypeError, "Sparse input is not supported"),
    ({}, dict(X="complex"), ValueError, "Complex data not supported"),
    ({}, dict(X="1d"), ValueError, "Expected 2D array, got 1D array"),
    ({}, dict(X="text_frame"), ValueError, "non-numeric columns \\['label'\\]"),
    ({}, dict(y="nan"), ValueError, "Input y contains NaN"),
    ({}, dict(y="continuous"), ValueError, "Unknown label type: continuous"),
    ({}, dict(y="2d"), ValueError, "'y' must be 1-dimensional"),
]


@pytest.mark.parametrize("params, data, error, match", BAD_FIT)
def test_bad_input_raises_before_training(digits, digits_dense, params, data, error, match):
    X, y = digits
    fit_kw = {"groups": y}
    X_in, y_in = X, y
    if "y" in data:
        y_in = {None: None, "strings": np.array(["a"] * len(y)), "too_big": y + 5,
                "nan": np.where(y == 3, np.nan, y), "continuous": y + 0.5,
                "2d": y[:, None]}[data["y"]]
    if "X" in data:
        import scipy.sparse

        X_in = {
            "wrong_shape": lambda: X[:, :10],
            "nan": lambda: np.where(X > 0.9, np.nan, X),
            "sparse": lambda: scipy.sparse.csr_matrix(X),
            "complex": lambda: X + 1j,
            "1d": lambda: X[:, 0],
            "text_frame": lambda: pd.DataFrame(X).assign(label="x").rename(columns=str),
        }[data["X"]]()
    if "groups" in data:
        fit_kw["groups"] = [None] + list(y[1:]) if data["groups"] == "with_none" else data["groups"]
    params = dict(params)
    clf = small(params.pop("dense_module", digits_dense), **params)
    clf.notify = lambda *a, **k: pytest.fail("training started")  # noqa: ARG005
    with pytest.raises(error, match=match):
        clf.fit(X_in, y_in, **fit_kw)


def test_groups_both_ways_must_agree(digits, digits_dense):
    X, y = digits
    frame = _frame(X, y)
    clf = small(digits_dense, groups="digit_group")
    with pytest.raises(ValueError, match="both to fit and through the locator"):
        clf.fit(frame, y, groups=y)
    clf.fit(frame, y, groups=frame["digit_group"])  # same values: fine


def test_dataframe_columns_are_checked_at_predict_and_report(digits, digits_dense):
    X, y = digits
    frame = pd.DataFrame(X).rename(columns=lambda c: f"px{c}")
    clf = small(digits_dense).fit(frame, y, groups=y)
    assert clf.n_features_in_ == 64 and list(clf.feature_names_in_) == list(frame.columns)
    reordered = frame[list(reversed(frame.columns))]
    renamed = frame.rename(columns={"px0": "other"})
    for bad in (reordered, renamed):
        with pytest.raises(ValueError, match="feature names"):
            clf.predict(bad)
        with pytest.raises(ValueError, match="feature names"):
            clf.disparity_report(bad, y, groups=y)
    with pytest.raises(ValueError, match="X has 10 features"):
        clf.predict(X[:, :10])


def test_user_facing_conventions(digits, digits_dense, tmp_path):
    """A readable repr, public params only, plot_history, and clear refusals of
    sample_weight and of classes that are not the module's."""
    import matplotlib.pyplot as plt

    from fairprune import plot_history

    X, y = digits
    clf = small(digits_dense, sparsity=0.7)
    assert repr(clf).startswith("FairPrunedClassifier(dense_module=Sequential, sparsity=0.7")
    assert not [name for name in clf.get_params() if name.startswith("_")]
    with pytest.raises(TypeError, match="does not support sample_weight"):
        clf.fit(X, y, groups=y, sample_weight=np.ones(len(y)))
    with pytest.raises(ValueError, match="'classes' must be the dense module's classes"):
        small(digits_dense).partial_fit(X, y, classes=[0, 1], groups=y)
    clf.fit(X, y, groups=y)
    assert "fitted:" in repr(clf) and "groups" in repr(clf)
    small(digits_dense).partial_fit(X, y, classes=np.arange(10), groups=y)
    axes = plot_history(clf)
    assert len(axes) == 3 and len(axes[0].lines) == 10 + 1  # ten groups and the ε line
    axes[0].figure.savefig(tmp_path / "history.png")
    plt.close(axes[0].figure)


def test_printed_table_names_the_phase_without_colour_codes_in_logs(digits, digits_dense,
                                                                   capsys, tmp_path):
    X, y = digits
    params = dict(sparsity=0.5, dense_layers=(), pruning_epochs=2, max_epochs=3, verbose=1,
                  memory=tmp_path)
    FairPrunedClassifier(digits_dense, **params).fit(X, y, groups=y)
    out = capsys.readouterr().out  # captured: not a terminal
    for stage in ("gmp 1/2", "gmp 2/2", "ceag 1/3", "ceag 3/3"):
        assert stage in out
    assert "\x1b[" not in out
    FairPrunedClassifier(digits_dense, **params).fit(X, y, groups=y)
    assert "GMP phase (2 epochs) loaded from the cache" in capsys.readouterr().out
    FairPrunedClassifier(digits_dense, **{**params, "verbose": 0}).fit(X, y, groups=y)
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""  # verbose=0 prints nothing
    assert "it/s" not in captured.err  # and no progress bar in logs


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_progress_bar_in_a_terminal_names_the_phase(digits, digits_dense, monkeypatch, capsys):
    X, y = digits
    params = dict(sparsity=0.5, dense_layers=(), pruning_epochs=2, max_epochs=2, batch_size=256)
    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    FairPrunedClassifier(digits_dense, **params).fit(X, y, groups=y)
    bar = terminal.getvalue()
    for stage in ("gmp 1/2", "gmp 2/2", "ceag 1/2", "ceag 2/2"):
        assert f"{stage}:" in bar  # tqdm's description, then the batches of the epoch
    assert f"/{int(np.ceil(len(y) / 256))} [" in bar  # the epoch's number of batches
    quiet = Terminal()
    monkeypatch.setattr(sys, "stderr", quiet)
    FairPrunedClassifier(digits_dense, **params, verbose=0).fit(X, y, groups=y)
    assert quiet.getvalue() == ""


def test_tolerance_warning_points_at_the_callers_line(digits, digits_dense):
    X, y = digits
    clf = small(digits_dense, sparsity=0.95, tolerance=0.0)
    with pytest.warns(FairnessToleranceWarning) as record:
        clf.fit(X, y, groups=y)
    assert {Path(w.filename).name for w in record if w.category is FairnessToleranceWarning} == {
        Path(__file__).name}
