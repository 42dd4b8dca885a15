import io

import numpy as np
from support import make_utkface_folder
import pandas as pd
import pytest

import fairprune.datasets.fetch as fetch_module
from fairprune.datasets import (ADULT_CATEGORIES, ADULT_URL, adult_preprocessor, fetch_adult,
                                load_adult, load_digits_groups)


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
    assert groups["native-country"].nunique() == 42  # 41 countries and "Unknown"
    assert (groups["native-country"] == "Unknown").sum() == 583
    assert X["workclass"].isna().sum() == 1836  # "MissingValue" is missing, not a category
    encoded = adult_preprocessor().fit_transform(X)
    assert encoded.shape == (32561, 56) and encoded.dtype == np.float32
    assert np.isfinite(encoded).all()


TEST_FORMAT = """|1x3 Cross validator
25, Private, 226802, 11th, 7, Never-married, Machine-op-inspct, Own-child, Black, Male, 0, 0, 40, United-States, <=50K.
38, ?, 89814, HS-grad, 9, Married-civ-spouse, Farming-fishing, Husband, White, Male, 0, 0, 50, ?, >50K.
28, Local-gov, 336951, Assoc-acdm, 12, Married-civ-spouse, Protective-serv, Husband, White, Male, 0, 0, 40, United-States, >50K.
"""


def test_adult_test_format_and_documented_categories(tmp_path):
    path = tmp_path / "adult.test"
    path.write_text(TEST_FORMAT)
    X, y, groups = load_adult(path)
    assert len(y) == 3 and y.tolist() == [0, 1, 1]
    assert X["workclass"].isna().tolist() == [False, True, False]
    assert groups["native-country"].tolist() == ["United-States", "Unknown", "United-States"]
    for column, categories in ADULT_CATEGORIES.items():
        if column in X:
            assert list(X[column].cat.categories) == categories
    # three rows encode to the same columns as the whole training file
    assert adult_preprocessor().fit(X).transform(X).shape == (3, 56)


def test_adult_features_learn_nothing_from_the_rows_read(tmp_path, adult_path):
    """A file of 3 rows gives the same raw features for them as the full file: no statistic
    of the rows read enters X (standardisation happens in adult_preprocessor, fitted on
    training rows)."""
    lines = open(adult_path).read().splitlines()
    small = tmp_path / "adult.data"
    small.write_text("\n".join(lines[:3]) + "\n")
    full, _, _ = load_adult(adult_path)
    few, _, _ = load_adult(small)
    pd.testing.assert_frame_equal(few, full.iloc[:3])


def test_adult_refuses_unknown_labels_and_categories(tmp_path):
    bad = tmp_path / "adult.data"
    bad.write_text(TEST_FORMAT.replace(">50K.", "rich").split("\n", 1)[1])
    with pytest.raises(ValueError, match="income values"):
        load_adult(bad)
    bad.write_text(TEST_FORMAT.replace("Private", "Pirate").split("\n", 1)[1])
    with pytest.raises(ValueError, match="outside the documented categories"):
        load_adult(bad)


def test_adult_names_the_file_and_the_column_of_bad_content(tmp_path):
    import gzip

    rows = TEST_FORMAT.split("\n", 1)[1]
    packed = tmp_path / "adult.data.gz"
    packed.write_bytes(gzip.compress(rows.encode()))
    with pytest.raises(ValueError, match=r"adult\.data\.gz.*compressed archive.*gunzip"):
        load_adult(packed)
    bad = tmp_path / "adult.data"
    first = rows.split(",", 1)
    bad.write_text("thirty-nine," + first[1])  # a word in the age column of row 1
    with pytest.raises(ValueError, match=r"numeric column 'age': \['thirty-nine'\].*row 1"):
        load_adult(bad)
    bad.write_bytes(b"\xff\xfe" + rows.encode("utf-16-le"))
    with pytest.raises(ValueError, match="not a comma-separated UCI Adult text file"):
        load_adult(bad)


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


class FakeUrlopen:
    """``urllib.request.urlopen`` serving fixed bytes (or failing), counting its calls."""

    def __init__(self, payload: bytes | None = None, error: Exception | None = None):
        self.payload, self.error, self.urls = payload, error, []

    def __call__(self, url, timeout=None):
        self.urls.append(url)
        if self.error is not None:
            raise self.error
        return io.BytesIO(self.payload)


def test_fetch_adult_downloads_once_into_the_data_home(tmp_path, monkeypatch):
    fake = FakeUrlopen(TEST_FORMAT.encode())
    monkeypatch.setattr(fetch_module.urllib.request, "urlopen", fake)
    X, y, groups = fetch_adult("test", data_home=tmp_path)
    assert fake.urls == [ADULT_URL + "adult.test"] and y.tolist() == [0, 1, 1]
    assert sorted(p.name for p in (tmp_path / "adult").iterdir()) == ["adult.test"]
    X2, y2, _ = fetch_adult("test", data_home=tmp_path)  # cached: no second download
    assert len(fake.urls) == 1 and y2.tolist() == y.tolist()
    monkeypatch.setenv("FAIRPRUNE_DATA", str(tmp_path))  # the data home from the environment
    assert fetch_adult("test", download_if_missing=False)[1].tolist() == [0, 1, 1]


def test_fetch_adult_offline_says_where_to_put_the_file(tmp_path, monkeypatch):
    import urllib.error

    fake = FakeUrlopen(error=urllib.error.URLError("Temporary failure in name resolution"))
    monkeypatch.setattr(fetch_module.urllib.request, "urlopen", fake)
    with pytest.raises(OSError, match=r"could not download .*adult\.data.*put it at .*adult"):
        fetch_adult(data_home=tmp_path)
    assert not any((tmp_path / "adult").iterdir())  # nothing half-written is left
    with pytest.raises(OSError, match="download_if_missing=False"):
        fetch_adult(data_home=tmp_path, download_if_missing=False)
    assert len(fake.urls) == 1


def test_fetch_adult_refuses_a_download_that_is_not_adult(tmp_path, monkeypatch):
    fake = FakeUrlopen(b"<html><body>Service unavailable</body></html>\n")
    monkeypatch.setattr(fetch_module.urllib.request, "urlopen", fake)
    with pytest.raises(ValueError, match="not what was expected.*nothing was cached"):
        fetch_adult(data_home=tmp_path)
    assert not any((tmp_path / "adult").iterdir())
    with pytest.raises(ValueError, match="subset must be 'train' or 'test'"):
        fetch_adult("validation", data_home=tmp_path)


def test_fetch_adult_into_a_data_home_that_cannot_be_written_says_where_to_put_the_file(
        tmp_path, monkeypatch):
    fake = FakeUrlopen(TEST_FORMAT.encode())
    monkeypatch.setattr(fetch_module.urllib.request, "urlopen", fake)
    blocker = tmp_path / "file"
    blocker.write_text("a file where the data home's folder should go")
    with pytest.raises(OSError, match=r"cannot write to .*put it at .*adult\.test"):
        fetch_adult("test", data_home=blocker)
    assert fake.urls == []  # refused before downloading
