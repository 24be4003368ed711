"""dt.Generator: torch.Generator's API on a numpy Generator, accepted wherever generator= is."""

from __future__ import annotations

import copy

import numpy as np
import pytest

import disttrain as dt
import disttrain.nn as nn
from disttrain.data import DataLoader, RandomSampler, TensorDataset, random_split
from disttrain.devices import device
from disttrain.random import DEFAULT_SEED


def test_generator_api_as_torch():
    torch = pytest.importorskip("torch")
    g = dt.Generator()
    assert isinstance(g, np.random.Generator) and g.device == "cpu"
    assert isinstance(g.device, device) and g.device.type == "cpu"
    assert g.initial_seed() == DEFAULT_SEED == torch.Generator().initial_seed()
    assert g.manual_seed(7) is g and g.initial_seed() == 7
    # torch wraps negative seeds modulo 2**64
    assert g.manual_seed(-1).initial_seed() == torch.Generator().manual_seed(-1).initial_seed()
    seed = g.seed()
    assert g.initial_seed() == seed and 0 <= seed < 2**64


def test_manual_seed_restarts_the_stream():
    g = dt.Generator().manual_seed(3)
    first = g.random(5)
    assert not np.array_equal(first, g.random(5))
    np.testing.assert_array_equal(g.manual_seed(3).random(5), first)
    np.testing.assert_array_equal(dt.Generator().manual_seed(3).random(5), first)
    assert not np.array_equal(dt.Generator().manual_seed(4).random(5), first)


def test_get_state_set_state_round_trip_and_save(tmp_path):
    g = dt.Generator().manual_seed(11)
    g.random(3)
    state = g.get_state()
    assert isinstance(state, dt.Tensor) and state.dtype == np.uint8 and state.ndim == 1
    expected = g.random(4)
    other = dt.Generator().set_state(state)
    assert other.initial_seed() == 11
    np.testing.assert_array_equal(other.random(4), expected)
    dt.save({"rng": state}, tmp_path / "rng.safetensors")  # a checkpoint can hold it
    loaded = dt.load(tmp_path / "rng.safetensors")["rng"]
    np.testing.assert_array_equal(dt.Generator().set_state(loaded).random(4), expected)


def test_set_state_errors():
    g = dt.Generator()
    with pytest.raises(TypeError, match=r"set_state: expected the 1-d uint8 Tensor .* got list"):
        g.set_state([1, 2])
    with pytest.raises(TypeError, match="got Tensor of dtype float32 and shape"):
        g.set_state(dt.zeros(3))
    with pytest.raises(ValueError, match="set_state: not a disttrain Generator state"):
        g.set_state(np.frombuffer(b"garbage", np.uint8))


def test_seed_errors():
    with pytest.raises(TypeError, match="Generator.manual_seed: seed must be an int, got float"):
        dt.Generator().manual_seed(1.5)
    with pytest.raises(ValueError, match=r"manual_seed: seed must be in \[-2\*\*63, 2\*\*64\)"):
        dt.manual_seed(2**64)
    with pytest.raises(RuntimeError, match="device: unknown device type 'xyz'"):  # as torch
        dt.Generator(device="xyz")


def test_default_generator_reseeded_in_place():
    saved = dt.get_rng_state()
    try:
        default = dt.manual_seed(5)
        assert isinstance(default, dt.Generator) and dt.manual_seed(6) is default
        assert dt.initial_seed() == 6
        a = dt.randn(3).array
        dt.manual_seed(6)
        np.testing.assert_array_equal(dt.randn(3).array, a)
    finally:
        dt.set_rng_state(saved)


def test_deepcopy_keeps_the_class_and_the_stream():
    g = dt.Generator().manual_seed(2)
    g.random(2)
    clone = copy.deepcopy(g)
    assert type(clone) is dt.Generator and clone.initial_seed() == 2
    np.testing.assert_array_equal(clone.random(3), g.random(3))


def test_accepted_wherever_generator_is_taken():
    """torch-style uses: randperm, random_split, RandomSampler, DataLoader, init, layers."""
    def run():
        g = dt.Generator().manual_seed(42)
        ds = TensorDataset(np.arange(10))
        a, b = random_split(ds, [0.8, 0.2], generator=g)
        sampled = list(RandomSampler(ds, generator=g))
        loaded = [int(i) for (x,) in DataLoader(ds, batch_size=4, shuffle=True, generator=g)
                  for i in x.array]
        layer = nn.Linear(3, 2, generator=g)
        nn.init.normal_(layer.weight, generator=g)
        return (list(a.indices), list(b.indices), sampled, loaded, dt.randperm(5, generator=g),
                dt.randn(2, generator=g), layer.weight.array)

    first, second = run(), run()
    assert sorted(first[0] + first[1]) == list(range(10))
    assert sorted(first[2]) == list(range(10)) and sorted(first[3]) == list(range(10))
    for x, y in zip(first, second, strict=True):
        np.testing.assert_array_equal(getattr(x, "array", x), getattr(y, "array", y))


def test_default_generator_starts_at_torchs_default_seed():
    """As torch: an unseeded process draws the same numbers on every run (and every rank)."""
    import subprocess
    import sys

    code = "import disttrain as dt; print(dt.initial_seed(), dt.rand(3).tolist())"
    runs = [subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           check=True).stdout for _ in range(2)]
    assert runs[0] == runs[1] and runs[0].startswith(f"{DEFAULT_SEED} ")
