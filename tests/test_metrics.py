import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fairprune.metrics import (
    accuracy_gaps,
    excess_accuracy_gaps,
    group_accuracy,
    max_excess_accuracy_gap,
    pairwise_disparity,
)

Y = [0, 1, 1, 0, 1, 0]
DENSE = [0, 1, 1, 0, 1, 1]  # group a: 3/3, group b: 2/3
SPARSE = [0, 0, 1, 0, 0, 1]  # group a: 2/3, group b: 1/3
G = ["a", "a", "a", "b", "b", "b"]


def test_hand_computed_case():
    assert group_accuracy(Y, DENSE, G).to_dict() == pytest.approx({"a": 1.0, "b": 2 / 3})
    gaps = accuracy_gaps(Y, DENSE, SPARSE, G)
    assert gaps.to_dict() == pytest.approx({"a": 1 / 3, "b": 1 / 3})
    assert excess_accuracy_gaps(Y, DENSE, SPARSE, G).to_dict() == pytest.approx({"a": 0, "b": 0})
    assert pairwise_disparity(Y, DENSE, SPARSE, G) == pytest.approx(0.0)


def test_unequal_groups_hand_computed():
    y = [1, 1, 1, 1, 1]
    dense = [1, 1, 1, 1, 1]
    sparse = [0, 1, 1, 1, 0]
    groups = ["x", "x", "x", "x", "y"]
    # Δ_x = 1/4, Δ_y = 1, Δ = 2/5
    assert excess_accuracy_gaps(y, dense, sparse, groups).to_dict() == pytest.approx(
        {"x": 0.25 - 0.4, "y": 0.6}
    )
    assert pairwise_disparity(y, dense, sparse, groups) == pytest.approx(0.75)
    assert max_excess_accuracy_gap(y, dense, sparse, groups) == pytest.approx(0.6)


def test_returns_series_indexed_by_group_and_fractions():
    result = accuracy_gaps(Y, DENSE, SPARSE, pd.Series(G))
    assert isinstance(result, pd.Series)
    assert list(result.index) == ["a", "b"]
    assert result.index.name == "group"


def test_tuple_labels_for_intersections():
    groups = [("w", "f"), ("w", "m"), ("w", "f"), ("b", "f"), ("b", "f"), ("w", "m")]
    result = group_accuracy(Y, DENSE, groups)
    assert ("b", "f") in result.index and len(result) == 3


labels_strategy = st.lists(st.sampled_from(["a", "b", "c", 7, ("t", 1)]), min_size=1, max_size=60)


@st.composite
def predictions(draw):
    n = draw(st.integers(1, 60))
    classes = st.integers(0, 3)
    y = draw(st.lists(classes, min_size=n, max_size=n))
    dense = draw(st.lists(classes, min_size=n, max_size=n))
    sparse = draw(st.lists(classes, min_size=n, max_size=n))
    groups = draw(st.lists(st.sampled_from(["a", "b", "c", "d"]), min_size=n, max_size=n))
    return np.array(y), np.array(dense), np.array(sparse), np.array(groups, dtype=object)


@settings(max_examples=200, deadline=None)
@given(predictions())
def test_disparity_properties(data):
    y, dense, sparse, groups = data
    psi_pw = pairwise_disparity(y, dense, sparse, groups)
    max_psi = max_excess_accuracy_gap(y, dense, sparse, groups)
    psi = excess_accuracy_gaps(y, dense, sparse, groups)
    sizes = pd.Series(groups).value_counts()
    assert psi_pw >= 0
    assert max_psi >= -1e-12
    assert max_psi <= psi_pw + 1e-12
    weighted = sum(psi[g] * sizes[g] for g in psi.index)
    assert abs(weighted) < 1e-9


@settings(max_examples=100, deadline=None)
@given(predictions())
def test_no_disparity_when_models_agree(data):
    y, dense, _, groups = data
    assert pairwise_disparity(y, dense, dense, groups) == 0.0
    assert max_excess_accuracy_gap(y, dense, dense, groups) == 0.0


@settings(max_examples=100, deadline=None)
@given(predictions(), st.randoms(use_true_random=False))
def test_relabelling_and_reordering_change_only_the_index(data, rnd):
    y, dense, sparse, groups = data
    mapping = {"a": "zeta", "b": 3, "c": ("t", 0), "d": "alpha"}
    relabelled = np.empty(len(groups), dtype=object)
    relabelled[:] = [mapping[g] for g in groups]
    order = list(range(len(y)))
    rnd.shuffle(order)
    base = excess_accuracy_gaps(y, dense, sparse, groups)
    other = excess_accuracy_gaps(y[order], dense[order], sparse[order], relabelled[order])
    for g, value in base.items():
        assert other[mapping[g]] == pytest.approx(value, abs=1e-12)
    assert pairwise_disparity(y[order], dense[order], sparse[order], relabelled[order]) == (
        pytest.approx(pairwise_disparity(y, dense, sparse, groups), abs=1e-12)
    )


@pytest.mark.parametrize(
    "args, error, match",
    [
        ((Y, DENSE, SPARSE, G[:-1]), ValueError, "same number of samples"),
        (([], [], [], []), ValueError, "'y_true' is empty"),
        ((Y, DENSE, SPARSE, ["a", None, "a", "b", "b", "b"]), ValueError, "'groups' has 1 missing"),
        ((Y, DENSE, SPARSE, ["a", math.nan, "a", "b", "b", "b"]), ValueError, "missing label"),
        ((np.array(Y)[:, None], DENSE, SPARSE, G), ValueError, "'y_true' must be 1-dimensional"),
        ((Y, np.zeros((6, 2)), SPARSE, G), ValueError, "'y_pred_dense' must be 1-dimensional"),
        ((None, DENSE, SPARSE, G), ValueError, "'y_true' is required"),
    ],
)
def test_bad_input(args, error, match):
    with pytest.raises(error, match=match):
        pairwise_disparity(*args)
