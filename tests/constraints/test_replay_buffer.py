import collections

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from fairprune.constraints import ReplayBuffer


@st.composite
def scenario(draw):
    groups = draw(st.integers(1, 6))
    size = draw(st.integers(1, 8))
    batches = draw(
        st.lists(
            st.lists(st.tuples(st.integers(0, groups - 1), st.integers(0, 9)), min_size=1, max_size=30),
            min_size=1,
            max_size=12,
        )
    )
    precounted = draw(st.booleans())  # the caller passes the batch's group counts (as floats)
    return groups, size, batches, precounted


@settings(max_examples=300, deadline=None)
@given(scenario())
def test_matches_a_deque_per_group(case):
    groups, size, batches, precounted = case
    buffer = ReplayBuffer(groups, size)
    reference = [collections.deque(maxlen=size) for _ in range(groups)]
    for batch in batches:
        ids = torch.tensor([g for g, _ in batch])
        values = torch.tensor([float(v) for _, v in batch])
        counts = torch.zeros(groups).index_add_(0, ids, torch.ones(len(ids))) if precounted else None
        buffer.update(ids, values, counts)
        for g, v in batch:
            reference[g].append(float(v))
        for g in range(groups):
            assert buffer.ordered(g).tolist() == list(reference[g])
            expected_mean = sum(reference[g]) / len(reference[g]) if reference[g] else 0.0
            assert abs(float(buffer.means()[g]) - expected_mean) < 1e-5
            assert bool(buffer.ready()[g]) == (len(reference[g]) == size)


def test_min_count_and_state_dict_roundtrip():
    buffer = ReplayBuffer(3, 4, min_count=2)
    buffer.update(torch.tensor([0, 0, 1]), torch.tensor([1.0, 0.0, 1.0]))
    assert buffer.ready().tolist() == [True, False, False]
    other = ReplayBuffer(3, 4, min_count=2)
    other.load_state_dict(buffer.state_dict())
    assert torch.equal(other.means(), buffer.means())
    assert torch.equal(other.counts, buffer.counts)
