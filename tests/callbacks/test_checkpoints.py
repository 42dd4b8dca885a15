"""FairCheckpoint: atomic saves, a manifest checked on resume, and a SIGKILL stress test."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import shutil
import signal
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from skorch.callbacks import LoadInitState
from support import InterruptAt

from fairprune import FairPrunedClassifier, FairnessToleranceWarning
from fairprune.callbacks import CheckpointError, fair_checkpoint
from fairprune.callbacks.checkpoint import current_generation

PARAMS = dict(sparsity=0.9, tolerance=0.01, dense_layers=(), pruning_epochs=2, max_epochs=3,
              lr=0.05, verbose=0, random_state=5)


def _fit(dense, X, y, directory, **extra):
    cp = fair_checkpoint(str(directory))
    clf = FairPrunedClassifier(dense, **PARAMS, **extra,
                               callbacks=[("cp", cp), ("load", LoadInitState(cp))])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FairnessToleranceWarning)
        return clf.fit(X, y, groups=y)


def test_a_save_writes_a_manifest_of_every_file(digits, digits_dense, tmp_path):
    X, y = digits
    _fit(digits_dense, X, y, tmp_path)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["epoch"] == 5
    assert set(manifest["files"]) == {"params.pt", "optimizer.pt", "history.json", "masks.pt",
                                      "fairness.pt", "dual_optimizer.pt"}
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".staging")]
    generations = [p for p in tmp_path.iterdir() if p.name.startswith("generation-")]
    assert generations == [current_generation(tmp_path)]  # older generations removed
    assert manifest["generation"] == generations[0].name
    assert set(manifest["fingerprint"]) == {"parameters", "dense_module", "data", "groups"}


def _damaged_checkpoint(digits, digits_dense, tmp_path, damage):
    X, y = digits
    early, late = tmp_path / "early", tmp_path / "late"
    cp = fair_checkpoint(str(early))
    FairPrunedClassifier(digits_dense, **PARAMS, callbacks=[("cp", cp), ("stop", InterruptAt(3))]
                         ).fit(X, y, groups=y)  # two epochs saved
    _fit(digits_dense, X, y, late)  # five epochs saved
    early, files = current_generation(early), current_generation(late)
    if damage == "mixed_epochs":
        shutil.copy(early / "params.pt", files / "params.pt")
    elif damage == "truncated":
        data = (files / "masks.pt").read_bytes()
        (files / "masks.pt").write_bytes(data[: len(data) // 2])
    elif damage == "garbage":
        (files / "fairness.pt").write_bytes(b"\x00garbage" * 50)
    elif damage == "missing_masks":
        (files / "masks.pt").unlink()
    elif damage == "no_manifest":
        (late / "manifest.json").unlink()
    elif damage == "bad_manifest":
        (late / "manifest.json").write_text("{not json")
    return late


@pytest.mark.parametrize("damage, culprit", [
    ("mixed_epochs", "params.pt"), ("truncated", "masks.pt"), ("garbage", "fairness.pt"),
    ("missing_masks", "masks.pt"), ("no_manifest", "manifest.json"),
    ("bad_manifest", "manifest.json"),
])
def test_resume_refuses_a_damaged_checkpoint_naming_the_file(digits, digits_dense, tmp_path,
                                                             damage, culprit):
    X, y = digits
    late = _damaged_checkpoint(digits, digits_dense, tmp_path, damage)
    with pytest.raises(CheckpointError, match=culprit):
        _fit(digits_dense, X, y, late)


def test_an_empty_folder_starts_afresh(digits, digits_dense, tmp_path):
    X, y = digits
    plain = FairPrunedClassifier(digits_dense, **PARAMS).fit(X, y, groups=y)
    resumed = _fit(digits_dense, X, y, tmp_path / "new")
    np.testing.assert_array_equal(resumed.predict_proba(X), plain.predict_proba(X))


# -- SIGKILL at random moments ------------------------------------------------------------------
def _child(directory: str, dense_path: str, threads: int) -> None:
    from sklearn.datasets import load_digits

    torch.set_num_threads(threads)
    X, y = load_digits(return_X_y=True)
    X = (X / 16).astype(np.float32)
    dense = torch.load(dense_path, weights_only=False)
    _fit(dense, X, y, directory)


def test_sigkill_at_random_moments_never_yields_a_silent_mix(digits, digits_dense, tmp_path):
    """A child process fits with checkpoints and is killed (SIGKILL) at 30 seeded random
    moments; every resume (re-running the same fit) matches the uninterrupted run or refuses
    with CheckpointError — also when the kill came after the last save."""
    X, y = digits
    dense_path = tmp_path / "dense.pt"
    torch.save(digits_dense, dense_path)
    reference = FairPrunedClassifier(digits_dense, **PARAMS).fit(X, y, groups=y)
    expected = reference.predict_proba(X)
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(["fairprune", "sklearn.datasets"])
    threads = torch.get_num_threads()

    for name in ("warm-up", "probe"):  # a complete child run (warm forkserver): the time scale
        start = time.perf_counter()
        probe = ctx.Process(target=_child, args=(str(tmp_path / name), str(dense_path), threads))
        probe.start()
        probe.join(300)
        assert probe.exitcode == 0
        duration = time.perf_counter() - start

    rng = np.random.default_rng(0)
    outcomes = {"killed": 0, "finished": 0, "resumed": 0, "refused": 0}
    for trial in range(30):
        directory = tmp_path / f"run{trial}"
        child = ctx.Process(target=_child, args=(str(directory), str(dense_path), threads))
        child.start()
        time.sleep(rng.uniform(0.0, 0.9) * duration)
        if child.is_alive():
            os.kill(child.pid, signal.SIGKILL)
        child.join(60)
        finished = child.exitcode == 0
        outcomes["finished" if finished else "killed"] += 1
        if finished:  # the machine got faster than the probe: aim earlier from now on
            duration *= 0.7
        try:
            resumed = _fit(digits_dense, X, y, directory)
        except CheckpointError:
            outcomes["refused"] += 1
            continue
        outcomes["resumed"] += 1
        np.testing.assert_array_equal(resumed.predict_proba(X), expected)
    print(outcomes)
    assert outcomes["killed"] >= 10 and outcomes["resumed"] >= 10, outcomes


def test_rerunning_a_finished_fit_gives_the_finished_model(digits, digits_dense, tmp_path):
    X, y = digits
    first = _fit(digits_dense, X, y, tmp_path)
    again = _fit(digits_dense, X, y, tmp_path)  # the script run twice: nothing left to train
    assert len(again.history) == len(first.history) == 5
    np.testing.assert_array_equal(again.predict_proba(X), first.predict_proba(X))
    more = FairPrunedClassifier(digits_dense, **PARAMS).fit(X, y, groups=y)
    more.partial_fit(X, y, groups=y)  # partial_fit continues: max_epochs more
    assert len(more.history) == 5 + PARAMS["max_epochs"]


# -- a checkpoint belongs to its run -------------------------------------------------------------
@pytest.mark.parametrize("change, words", [
    (dict(sparsity=0.8), "other parameters: sparsity"),
    (dict(data="shuffled"), "other data"),
    (dict(groups="parity"), "other groups"),
])
def test_a_folder_reused_by_another_run_is_refused_saying_what_differs(digits, digits_dense,
                                                                       tmp_path, change, words):
    X, y = digits
    first = _fit(digits_dense, X, y, tmp_path)
    groups = y
    if change.get("data"):
        order = np.random.default_rng(0).permutation(len(y))
        X, y, groups = X[order], y[order], y[order]
    if change.get("groups"):
        groups = y % 2
    params = {k: v for k, v in change.items() if k not in ("data", "groups")}
    cp = fair_checkpoint(str(tmp_path))
    clf = FairPrunedClassifier(digits_dense, **{**PARAMS, **params},
                               callbacks=[("cp", cp), ("load", LoadInitState(cp))])
    with pytest.raises(CheckpointError, match=words):
        clf.fit(X, y, groups=groups)
    # the first run's checkpoint is untouched, and resuming it still gives its model
    np.testing.assert_array_equal(_fit(digits_dense, *digits, tmp_path).predict_proba(X),
                                  first.predict_proba(X))


def test_on_mismatch_restart_trains_afresh_and_replaces_the_checkpoint(digits, digits_dense,
                                                                       tmp_path):
    X, y = digits
    _fit(digits_dense, X, y, tmp_path)
    cp = fair_checkpoint(str(tmp_path), on_mismatch="restart")
    params = {**PARAMS, "sparsity": 0.8}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FairnessToleranceWarning)
        restarted = FairPrunedClassifier(digits_dense, **params, callbacks=[
            ("cp", cp), ("load", LoadInitState(cp))]).fit(X, y, groups=y)
        plain = FairPrunedClassifier(digits_dense, **params).fit(X, y, groups=y)
    np.testing.assert_array_equal(restarted.predict_proba(X), plain.predict_proba(X))
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["fingerprint"] == restarted.run_fingerprint_
    with pytest.raises(ValueError, match="on_mismatch"):
        fair_checkpoint(str(tmp_path), on_mismatch="ignore")


def test_a_folder_in_use_by_another_fit_is_refused(digits, digits_dense, tmp_path):
    from fairprune.callbacks.checkpoint import checkpoint_lock

    X, y = digits
    with checkpoint_lock(tmp_path):  # another fit holds the folder
        with pytest.raises(CheckpointError, match="in use by another fit"):
            _fit(digits_dense, X, y, tmp_path)
    assert not (tmp_path / "manifest.json").exists()
    _fit(digits_dense, X, y, tmp_path)  # released: the next fit takes it


def test_a_dirname_that_is_a_file_fails_before_training(digits, digits_dense, tmp_path):
    X, y = digits
    blocker = tmp_path / "run"
    blocker.write_text("a file")
    cp = fair_checkpoint(str(blocker))
    clf = FairPrunedClassifier(digits_dense, **PARAMS, callbacks=[("cp", cp)])
    with pytest.raises(CheckpointError, match="is a file, not a folder"):
        clf.fit(X, y, groups=y)
    assert len(clf.history) == 0


# -- a full disk during a save ------------------------------------------------------------------
def _child_with_a_full_disk(directory: str, dense_path: str, limit: int, out: str) -> None:
    import resource

    from sklearn.datasets import load_digits

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail with EFBIG
    X, y = load_digits(return_X_y=True)
    X = (X / 16).astype(np.float32)
    dense = torch.load(dense_path, weights_only=False)
    hard = resource.getrlimit(resource.RLIMIT_FSIZE)[1]
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))  # the soft limit: raised later
    try:
        _fit(dense, X, y, directory)
        outcome = "no error"
    except OSError as exc:
        outcome = str(exc)
    except BaseException:  # noqa: BLE001 - reported to the parent (stderr is limited too)
        import traceback

        outcome = "unexpected: " + traceback.format_exc()
    resource.setrlimit(resource.RLIMIT_FSIZE, (hard, hard))
    Path(out).write_text(outcome)


@pytest.mark.parametrize("limit", [100, 20_000])
def test_a_full_disk_keeps_the_last_good_checkpoint(digits, digits_dense, tmp_path, limit):
    """The next save fails (a file-size limit in a child process: nothing can be written, or
    only the small files): the save raises, nothing of it is left, the epoch-2 checkpoint stays
    valid, and resuming it matches an uninterrupted run."""
    X, y = digits
    directory = tmp_path / "run"
    cp = fair_checkpoint(str(directory))
    FairPrunedClassifier(digits_dense, **PARAMS, callbacks=[("cp", cp), ("stop", InterruptAt(3))]
                         ).fit(X, y, groups=y)  # two epochs saved
    before = json.loads((directory / "manifest.json").read_text())
    dense_path = tmp_path / "dense.pt"
    torch.save(digits_dense, dense_path)
    out = tmp_path / "child.txt"
    ctx = mp.get_context("forkserver")
    child = ctx.Process(target=_child_with_a_full_disk,
                        args=(str(directory), str(dense_path), limit, str(out)))
    child.start()
    child.join(300)
    assert child.exitcode == 0, out.read_text() if out.exists() else "no report"
    assert "could not save epoch 3" in out.read_text(), out.read_text()
    assert "could not save epoch 3" in out.read_text() and "previous checkpoint is kept" in (
        out.read_text())
    assert json.loads((directory / "manifest.json").read_text()) == before
    assert sorted(p.name for p in directory.iterdir() if p.is_dir()) == [before["generation"]]
    reference = FairPrunedClassifier(digits_dense, **PARAMS).fit(X, y, groups=y)
    resumed = _fit(digits_dense, X, y, directory)
    np.testing.assert_array_equal(resumed.predict_proba(X), reference.predict_proba(X))
