"""Which layers each pipeline stage holds (pure), and the per-layer profiler behind
balance="time" (with a fake clock)."""

import pytest

import disttrain as dt
import disttrain.nn as nn
from disttrain.distributed.pipeline.partition import balanced_cuts, partition, profile_layers


@pytest.mark.parametrize("costs, stages, expected", [
    ([1, 1, 1, 3], 2, [(0, 3), (3, 4)]),
    ([5, 1, 1, 1, 1, 1], 2, [(0, 1), (1, 6)]),
    ([1, 2, 3, 4, 5], 3, [(0, 3), (3, 4), (4, 5)]),
    ([1, 1, 1, 1], 4, [(0, 1), (1, 2), (2, 3), (3, 4)]),
    ([7], 1, [(0, 1)]),
    ([0, 0, 10, 0], 2, [(0, 3), (3, 4)]),  # ties go to the later cut
])
def test_balanced_cuts_minimise_the_slowest_stage(costs, stages, expected):
    assert balanced_cuts(costs, stages) == expected


def test_balanced_cuts_is_optimal_on_random_costs():
    import itertools
    import random
    rng = random.Random(0)
    for _ in range(30):
        costs = [rng.randint(0, 9) for _ in range(rng.randint(3, 8))]
        stages = rng.randint(1, len(costs))
        best = min(max(sum(costs[a:b]) for a, b in zip((0,) + cut, cut + (len(costs),)))
                   for cut in itertools.combinations(range(1, len(costs)), stages - 1))
        got = balanced_cuts(costs, stages)
        assert max(sum(costs[a:b]) for a, b in got) == best
        assert all(a < b for a, b in got)


def _mlp():
    return nn.Sequential(nn.Linear(4, 100), nn.ReLU(), nn.Linear(100, 100), nn.ReLU(),
                         nn.Linear(100, 2))


def test_partition_modes():
    model = _mlp()
    assert partition(model, 2) == [(0, 3), (3, 5)]
    assert partition(model, 2, [1, 4]) == [(0, 1), (1, 5)]
    # params: 500, 0, 10100, 0, 202 -> the big Linear alone is the slowest stage either way
    assert partition(model, 2, "params") == [(0, 2), (2, 5)]
    assert partition(model, 3, "time", costs=[1, 1, 1, 1, 4]) == [(0, 2), (2, 4), (4, 5)]


@pytest.mark.parametrize("balance, message", [
    ([2, 2], r"balance=\[2, 2\] must give 2 positive layer counts summing to len\(module\)=5"),
    ([5, 0], r"must give 2 positive layer counts"),
    ("bogus", r"balance must be None, a list of layer counts, 'params' or 'time'"),
    ("time", r"balance='time' needs one measured cost per layer"),
])
def test_partition_errors(balance, message):
    with pytest.raises(ValueError, match=message):
        partition(_mlp(), 2, balance)


def test_more_stages_than_layers():
    with pytest.raises(ValueError, match=r"the model has 5 layers, fewer than the 6 stages"):
        partition(_mlp(), 6)


def _fake_clock(readings):
    readings = iter(readings)
    return lambda: next(readings)


def test_profile_layers_times_each_layer_with_the_given_clock():
    model = _mlp()
    # NOTE: two readings per layer (before and after its 3 runs): costs are the differences / 3
    clock = _fake_clock([0, 3, 3, 9, 10, 40, 40, 43, 50, 53])
    costs = profile_layers(model, dt.randn(2, 4), clock=clock)
    assert costs == [1, 2, 10, 1, 1]
    assert all(p.grad is None for p in model.parameters())
    assert partition(model, 2, "time", costs=costs) == [(0, 2), (2, 5)]


def test_profile_layers_runs_forward_and_backward_on_each_layers_input():
    seen = []

    class Record(nn.Module):
        def forward(self, x):
            seen.append((tuple(x.shape), x.requires_grad))
            return x * 2.0

    model = nn.Sequential(nn.Embedding(10, 3), Record(), nn.Linear(3, 2), Record())
    costs = profile_layers(model, dt.tensor([[1, 2], [3, 4]]), repeats=2)
    assert len(costs) == 4 and all(c >= 0 for c in costs)
    assert seen == [((2, 2, 3), True)] * 2 + [((2, 2, 2), True)] * 2
    assert all(p.grad is None for p in model.parameters())


def test_profile_layers_needs_a_repeat():
    with pytest.raises(ValueError, match=r"profile_layers: repeats must be >= 1, got 0"):
        profile_layers(_mlp(), dt.randn(2, 4), repeats=0)
