"""load_utkface on folders as they come: files replaced in place, twin folders, odd names,
broken links and decompression bombs; and what its cache refuses to serve."""

import os
import warnings

import numpy as np
import pytest
from PIL import Image

from fairprune.datasets import load_utkface
from support import make_utkface_folder as _make_folder


def make_utkface_folder(path, **kwargs):
    path.mkdir(parents=True)
    return _make_folder(path, **kwargs)


def load(folder, home, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return load_utkface(folder, image_size=8, data_home=home, **kwargs)


def test_an_image_replaced_in_place_with_the_same_size_is_decoded_again(tmp_path):
    folder = make_utkface_folder(tmp_path / "faces", n=6)
    home = tmp_path / "home"
    X, _, _ = load(folder, home)
    first = sorted(p for p in folder.iterdir() if p.name.count("_") == 3)[0]
    size = first.stat().st_size
    # other pixels, the same byte count: a JPEG padded or cut to the old size still decodes
    other = np.full((40, 30, 3), 255, dtype=np.uint8)
    Image.fromarray(other).save(first, quality=95)
    data = first.read_bytes()
    first.write_bytes(data[:size] if len(data) >= size else data + b"\0" * (size - len(data)))
    os.utime(first, ns=(first.stat().st_atime_ns, first.stat().st_mtime_ns + 10**9))
    assert first.stat().st_size == size
    X_again, _, _ = load(folder, home)
    assert not np.array_equal(X_again, X)
    np.testing.assert_array_equal(X_again, load(folder, home, cache=False)[0])


def test_a_second_folder_with_the_same_listing_gets_its_own_images(tmp_path):
    home = tmp_path / "home"
    a = make_utkface_folder(tmp_path / "a", n=6, seed=0)
    b = tmp_path / "b"
    b.mkdir()
    for path in a.iterdir():  # same names and sizes, other pixels
        (b / path.name).write_bytes(path.read_bytes())
    victim = sorted(p for p in b.iterdir() if p.name.count("_") == 3)[0]
    size = victim.stat().st_size
    pixels = np.asarray(Image.open(victim)).copy()
    Image.fromarray(255 - pixels).save(victim)
    data = victim.read_bytes()  # back to the old byte count (a JPEG decodes either way)
    victim.write_bytes(data[:size] if len(data) >= size else data + b"\0" * (size - len(data)))
    assert sorted((p.name, p.stat().st_size) for p in a.iterdir()) == sorted(
        (p.name, p.stat().st_size) for p in b.iterdir())
    load(a, home)
    np.testing.assert_array_equal(load(b, home)[0], load(b, home, cache=False)[0])


def test_odd_names_broken_links_and_bombs_are_skipped_and_counted(tmp_path, monkeypatch):
    folder = make_utkface_folder(tmp_path / "faces", n=6)  # and one malformed name
    (folder / "\u00b2_0_0_20170101.jpg").write_bytes(b"")  # a superscript digit
    (folder / f"{'9' * 200}_0_0_20170101.jpg").write_bytes(b"")  # a 200-digit age: no int64
    (folder / "30_0_0_dangling.jpg").symlink_to(folder / "does-not-exist.jpg")
    (folder / "30_0_0_loop.jpg").symlink_to(folder / "30_0_0_loop.jpg")
    (folder / "parent").symlink_to(folder, target_is_directory=True)  # a folder loop
    bomb = folder / "40_1_2_bomb.jpg"
    Image.fromarray(np.zeros((400, 400, 3), dtype=np.uint8)).save(bomb)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 20_000)  # 400 x 400 > 2 x the limit
    with pytest.warns(UserWarning) as record:
        X, y, groups = load_utkface(folder, image_size=8, cache=False)
    messages = " ".join(str(w.message) for w in record)
    assert "skipped 5 .jpg file(s)" in messages  # 3 names, 2 links
    assert "1 file(s)" in messages and "did not decode" in messages  # the bomb
    assert len(X) == 6 and len(y) == 6 and len(groups) == 6


def test_a_cache_entry_renamed_under_another_key_is_not_served(tmp_path):
    """A planted entry at the path of another folder's key (self-consistent, valid npz) is
    refused: every entry records the full key it was written for."""
    home = tmp_path / "home"
    a = make_utkface_folder(tmp_path / "a", n=6, seed=0)
    b = make_utkface_folder(tmp_path / "b", n=6, seed=1)
    load(a, home)
    (entry_a,) = (home / "utkface").iterdir()
    load(b, home, cache=False)
    expected_b = load(b, home, cache=False)[0]
    load(b, home)
    entry_b = next(p for p in (home / "utkface").iterdir() if p != entry_a)
    entry_b.write_bytes(entry_a.read_bytes())  # a's images planted under b's key
    with pytest.warns(RuntimeWarning, match="does not match the folder"):
        X_b, _, _ = load_utkface(b, image_size=8, data_home=home)
    np.testing.assert_array_equal(X_b, expected_b)
