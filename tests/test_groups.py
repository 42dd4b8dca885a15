import pickle

import numpy as np
import pandas as pd
import pytest
from skorch.helper import SliceDict

from fairprune.groups import GroupEncoder, by_target, drop_group_columns, locate_groups


def test_encoder_sorts_comparable_labels_and_roundtrips():
    enc = GroupEncoder().fit(["b", "a", "c", "a"])
    assert enc.classes_.tolist() == ["a", "b", "c"]
    assert enc.transform(["c", "a"]).tolist() == [2, 0]
    assert enc.transform(["z"], unseen="ignore").tolist() == [-1]
    with pytest.raises(ValueError, match="not seen in fit"):
        enc.transform(["z"])


def test_encoder_mixed_types_tuples_and_categoricals():
    enc = GroupEncoder().fit([1, "a", (1, "x"), 1])
    assert set(enc.classes_.tolist()) == {1, "a", (1, "x")}
    cat = pd.Series(pd.Categorical(["lo", "hi", "lo"], categories=["lo", "mid", "hi"]))
    assert GroupEncoder().fit(cat).classes_.tolist() == ["lo", "hi"]
    with pytest.raises(ValueError, match="missing"):
        GroupEncoder().fit(["a", None])


def test_locators_column_intersection_callable_and_dict():
    X = pd.DataFrame({"f": [0.1, 0.2, 0.3], "race": ["w", "b", "w"], "sex": ["f", "m", "m"]})
    assert locate_groups("race", X).tolist() == ["w", "b", "w"]
    assert locate_groups(["race", "sex"], X).tolist() == [("w", "f"), ("b", "m"), ("w", "m")]
    assert locate_groups(by_target, X, [3, 1, 3]).tolist() == [3, 1, 3]
    assert locate_groups(None, X) is None
    sd = SliceDict(f=np.zeros((3, 2)), race=np.array(["w", "b", "w"]))
    assert locate_groups("race", sd).tolist() == ["w", "b", "w"]
    assert list(drop_group_columns("race", X).columns) == ["f", "sex"]
    stripped = drop_group_columns("race", sd)
    assert isinstance(stripped, SliceDict) and list(stripped.keys()) == ["f"]
    assert pickle.loads(pickle.dumps(by_target)) is by_target


@pytest.mark.parametrize(
    "locator, X, error, match",
    [
        ("race", np.zeros((3, 2)), ValueError, "must be a pandas DataFrame"),
        ("age", pd.DataFrame({"race": ["a"]}), ValueError, "X has no column/key 'age'"),
        (3, pd.DataFrame({"race": ["a"]}), TypeError, "The 'groups' parameter must be"),
        ([], pd.DataFrame({"race": ["a"]}), TypeError, "The 'groups' parameter must be"),
    ],
)
def test_locator_errors(locator, X, error, match):
    with pytest.raises(error, match=match):
        locate_groups(locator, X)


def test_by_target_needs_y():
    with pytest.raises(ValueError, match="needs the targets"):
        by_target(np.zeros(2), None)
