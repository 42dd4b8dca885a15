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
