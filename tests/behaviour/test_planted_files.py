"""Files planted in folders fairprune reads: none runs code, none is written through.

Each test plants a real payload — a pickle whose loading would create a marker file, with a
hash record or manifest that matches it (whoever writes a shared folder can write those too)
— or a symbolic link to a victim file, and checks that nothing ran and the victim is intact.
"""

import json
import os
import pickle
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from skorch.callbacks import LoadInitState

from fairprune import FairPrunedClassifier, GMPCacheWarning
from fairprune._files import sha256_bytes, sha256_file
from fairprune.callbacks import CheckpointError, fair_checkpoint
from fairprune.callbacks.checkpoint import current_generation

QUICK = dict(sparsity=0.8, pruning_epochs=1, max_epochs=1, verbose=0, tolerance=0.05)


class Payload:
    """Unpickling this creates ``marker`` (and returns None)."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def payload_bytes(marker: Path) -> bytes:
    return pickle.dumps({"module": Payload(marker)})


def torch_payload_bytes(marker: Path, tmp_path: Path) -> bytes:
    """A ``torch.save`` file (zip format) whose pickle creates ``marker`` when loaded with
    ``weights_only=False``."""
    target = tmp_path / "payload.pt"
    torch.save({"module": Payload(marker)}, target)
    return target.read_bytes()


def fit(dense, X, y, **params):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return FairPrunedClassifier(dense, **{**QUICK, **params}).fit(X, y, groups=y)


@pytest.mark.parametrize("form", ["torch.save", "plain pickle"])
def test_a_planted_gmp_cache_entry_runs_nothing(digits, digits_dense, tmp_path, form):
    X, y = digits
    memory = tmp_path / "memory"
    plain = fit(digits_dense, X, y)
    fit(digits_dense, X, y, memory=memory)
    (entry,) = memory.rglob("*.gmp.pt")
    marker = tmp_path / "ran"
    data = (torch_payload_bytes(marker, tmp_path) if form == "torch.save"
            else payload_bytes(marker))
    entry.write_bytes(data)
    entry.with_suffix(".sha256").write_text(sha256_bytes(data))  # a matching record
    with pytest.warns(GMPCacheWarning, match="not a GMP cache entry fairprune can load safely"):
        again = FairPrunedClassifier(digits_dense, memory=memory, **QUICK).fit(X, y, groups=y)
    assert not marker.exists()
    np.testing.assert_array_equal(again.predict_proba(X), plain.predict_proba(X))


def test_a_planted_checkpoint_file_runs_nothing(digits, digits_dense, tmp_path):
    X, y = digits
    folder = tmp_path / "run"
    cp = fair_checkpoint(str(folder))
    fit(digits_dense, X, y, callbacks=[cp, LoadInitState(cp)])
    marker = tmp_path / "ran"
    manifest = json.loads((folder / "manifest.json").read_text())
    files = current_generation(folder)
    for name in ("fairness.pt", "params.pt"):
        (files / name).write_bytes(torch_payload_bytes(marker, tmp_path))
        manifest["files"][name] = sha256_file(files / name)  # a self-consistent manifest
    (folder / "manifest.json").write_text(json.dumps(manifest))
    cp = fair_checkpoint(str(folder))
    clf = FairPrunedClassifier(digits_dense, callbacks=[cp, LoadInitState(cp)], **QUICK)
    with pytest.raises(CheckpointError, match="objects other than tensors"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            clf.fit(X, y, groups=y)
    assert not marker.exists()


def test_a_planted_face_cache_entry_runs_nothing(tmp_path):
    from fairprune.datasets import load_utkface
    from support import make_utkface_folder

    folder = tmp_path / "faces"
    folder.mkdir()
    make_utkface_folder(folder, n=6)
    home = tmp_path / "home"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        expected, _, _ = load_utkface(folder, image_size=8, data_home=home)
    (entry,) = (home / "utkface").iterdir()
    marker = tmp_path / "ran"
    np.savez(entry.with_suffix(""), images=np.array([Payload(marker)], dtype=object),
             kept=np.ones(6, dtype=bool))  # an object array: a pickle inside the npz
    with pytest.warns(RuntimeWarning, match="unreadable"):
        X, _, _ = load_utkface(folder, image_size=8, data_home=home)
    assert not marker.exists()
    np.testing.assert_array_equal(X, expected)


def test_fetch_adult_never_writes_through_a_planted_link(tmp_path, monkeypatch):
    """Links planted at the download's old predictable temporary name and at names like it
    point to a victim: the download replaces none of them and the victim keeps its bytes."""
    from fairprune.datasets import fetch
    from fairprune.datasets.adult import fetch_adult

    sys_path = Path(__file__).resolve().parents[1] / "datasets"
    monkeypatch.syspath_prepend(str(sys_path))
    from test_datasets import TEST_FORMAT, FakeUrlopen

    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    folder = tmp_path / "home" / "adult"
    folder.mkdir(parents=True)
    for name in (f".adult.test.{os.getpid()}.part", ".adult.test.part", "adult.test.tmp"):
        (folder / name).symlink_to(victim)
    monkeypatch.setattr(fetch.urllib.request, "urlopen", FakeUrlopen(TEST_FORMAT.encode()))
    _, y, _ = fetch_adult("test", data_home=tmp_path / "home")
    assert y.tolist() == [0, 1, 1]
    assert victim.read_text() == "precious"
    assert (folder / "adult.test").is_file() and not (folder / "adult.test").is_symlink()


def test_planted_weights_for_a_face_model_run_nothing(tmp_path):
    from fairprune.datasets.models import make_mobilenet_v2

    marker = tmp_path / "ran"
    weights = tmp_path / "imagenet.pt"
    weights.write_bytes(torch_payload_bytes(marker, tmp_path))
    with pytest.raises(pickle.UnpicklingError, match="Weights only load failed"):
        make_mobilenet_v2(2, weights=weights)
    assert not marker.exists()
