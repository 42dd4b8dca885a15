import numpy as np

from fairprune.datasets import load_adult, load_digits_groups


def test_digits_groups():
    X, y, groups = load_digits_groups()
    assert X.shape == (1797, 64) and X.dtype == np.float32 and X.max() <= 1
    assert (groups["digit"].to_numpy() == y).all()


def test_adult_counts_match_the_data_readme(adult_path):
    X, y, groups = load_adult(adult_path)
    assert len(y) == 32561 and y.sum() == 7841
    assert groups["race"].value_counts()["White"] == 27816
    assert groups["sex"].value_counts()["Female"] == 10771
    assert groups.groupby(["race", "sex"]).size().min() == 109
    assert groups["native-country"].nunique() == 42
    assert np.isfinite(X).all() and X.shape[0] == 32561


def make_utkface_folder(root, n=24, seed=0):
    from PIL import Image

    rng = np.random.default_rng(seed)
    for i in range(n):
        age, gender, race = int(rng.integers(1, 90)), i % 2, i % 5
        pixels = rng.integers(0, 255, (40, 30, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(root / f"{age}_{gender}_{race}_2017011{i:04d}.jpg")
    (root / "61_1_20170109142408075.jpg").write_bytes(b"")  # malformed name (missing race)
    (root / "notes.txt").write_text("not an image")
    return root


def test_utkface_folder(tmp_path):
    from fairprune.datasets import load_utkface
    import pytest

    folder = make_utkface_folder(tmp_path)
    with pytest.warns(UserWarning, match="skipped 1 .jpg file"):  # the malformed name
        load_utkface(folder, image_size=16, cache=False)
    X, y, groups = load_utkface(folder, image_size=16)
    assert X.shape == (24, 3, 16, 16) and X.dtype == np.float32 and 0 <= X.min() and X.max() <= 1
    assert set(y.tolist()) == {0, 1}
    assert set(groups["race"]) == {"White", "Black", "Asian", "Indian", "Others"}
    assert list(groups.columns) == ["race", "gender", "age", "age_bucket"]
    _, y_race, _ = load_utkface(folder, target="race", image_size=8, max_images=10)
    assert len(y_race) == 10 and y_race.max() <= 4
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="no file named"):
        load_utkface(empty)
    with pytest.raises(ValueError, match="target must be"):
        load_utkface(folder, target="age")
