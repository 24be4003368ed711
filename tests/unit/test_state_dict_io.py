"""state_dict -> dt.save -> dt.load -> load_state_dict round trips, PyTorch interop through
safetensors files, and the optimizer state_dict round trip."""

import numpy
import pytest

import disttrain as dt
import disttrain.nn as nn


def seed_cnn(m):
    """The examples' default CNN (28x28 inputs), from disttrain.nn or torch.nn."""
    return m.Sequential(m.Conv2d(1, 32, 3, 1), m.ReLU(), m.MaxPool2d(2), m.Flatten(),
                        m.Linear(5408, 128), m.ReLU(), m.Linear(128, 10))


def bn_cnn(m):
    """A small CNN with BatchNorm (so buffers, including an int64 counter, travel too)."""
    return m.Sequential(m.Conv2d(1, 4, 3), m.BatchNorm2d(4), m.ReLU(), m.MaxPool2d(2),
                        m.Flatten(), m.Linear(36, 10), m.LayerNorm(10))


def trained(model, x):
    """One training-mode forward (updates BatchNorm statistics), then eval mode."""
    model.train()
    model(x)
    return model.eval()


def test_round_trip_gives_identical_outputs(tmp_path):
    dt.manual_seed(0)
    x = dt.randn(4, 1, 28, 28)
    model = seed_cnn(nn).eval()
    path = tmp_path / "cnn.safetensors"
    dt.save(model.state_dict(), path)
    loaded = dt.load(path)
    assert list(loaded) == list(model.state_dict())
    dt.manual_seed(1)  # a fresh model with different initial weights
    fresh = seed_cnn(nn).eval()
    assert not numpy.array_equal(fresh(x).detach().numpy(), model(x).detach().numpy())
    fresh.load_state_dict(loaded)
    numpy.testing.assert_array_equal(fresh(x).detach().numpy(), model(x).detach().numpy())


def test_round_trip_keeps_buffers_and_dtypes(tmp_path):
    dt.manual_seed(0)
    x = dt.randn(8, 1, 8, 8)
    model = trained(bn_cnn(nn), x)
    path = tmp_path / "bn.safetensors"
    dt.save(model.state_dict(), path)
    loaded = dt.load(path)
    for key, value in model.state_dict().items():
        assert loaded[key].dtype == value.dtype and loaded[key].shape == value.shape, key
        numpy.testing.assert_array_equal(loaded[key], value)
    assert loaded["1.num_batches_tracked"].dtype == numpy.int64
    assert loaded["1.num_batches_tracked"] == 1
    fresh = bn_cnn(nn).eval()
    fresh.load_state_dict(loaded)
    numpy.testing.assert_array_equal(fresh(x).detach().numpy(), model(x).detach().numpy())


def test_round_trip_float64_model(tmp_path):
    model = nn.Linear(3, 2).double()
    dt.save(model.state_dict(), tmp_path / "f64.safetensors")
    loaded = dt.load(tmp_path / "f64.safetensors")
    assert loaded["weight"].dtype == numpy.float64
    fresh = nn.Linear(3, 2).double()
    fresh.load_state_dict(loaded)
    numpy.testing.assert_array_equal(fresh.weight.detach().numpy(), model.weight.detach().numpy())


@pytest.mark.parametrize("build, shape", [(seed_cnn, (2, 1, 28, 28)), (bn_cnn, (8, 1, 8, 8))],
                         ids=["seed_cnn", "bn_cnn"])
def test_file_loads_into_the_equivalent_torch_model(tmp_path, build, shape):
    torch = pytest.importorskip("torch")
    safetensors_torch = pytest.importorskip("safetensors.torch")
    dt.manual_seed(0)
    x = dt.randn(*shape)
    model = trained(build(nn), x)
    path = tmp_path / "model.safetensors"
    dt.save(model.state_dict(), path)

    tensors = safetensors_torch.load_file(str(path))
    reference = build(torch.nn).eval()
    assert set(tensors) == set(reference.state_dict())
    result = reference.load_state_dict(tensors, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    with torch.no_grad():
        expected = reference(torch.from_numpy(x.numpy())).numpy()
    # NOTE: float32 forward vs torch, STYLE.md C9 tolerances
    numpy.testing.assert_allclose(model(x).detach().numpy(), expected, atol=1e-5, rtol=1e-3)


def test_torch_written_file_loads_into_disttrain(tmp_path):
    torch = pytest.importorskip("torch")
    safetensors_torch = pytest.importorskip("safetensors.torch")
    torch.manual_seed(0)
    reference = bn_cnn(torch.nn)
    reference(torch.randn(8, 1, 8, 8))  # training mode: running stats move
    reference.eval()
    path = tmp_path / "from_torch.safetensors"
    safetensors_torch.save_file(reference.state_dict(), str(path))
    model = bn_cnn(nn).eval()
    model.load_state_dict(dt.load(path))
    x = numpy.random.default_rng(0).standard_normal((3, 1, 8, 8)).astype(numpy.float32)
    with torch.no_grad():
        expected = reference(torch.from_numpy(x)).numpy()
    numpy.testing.assert_allclose(model(dt.tensor(x)).detach().numpy(), expected, atol=1e-5,
                                  rtol=1e-3)


def _adam_steps(model, optimizer, batches):
    for x, y in batches:
        optimizer.zero_grad()
        ((model(x) - y) ** 2).mean().backward()
        optimizer.step()


def test_optimizer_state_dict_round_trip(tmp_path):
    import disttrain.optim as optim

    dt.manual_seed(0)
    batches = [(dt.randn(4, 3), dt.randn(4, 2)) for _ in range(6)]
    model = nn.Sequential(nn.Linear(3, 5), nn.ReLU(), nn.Linear(5, 2))
    opt = optim.Adam(model.parameters(), lr=0.01, betas=(0.8, 0.99))
    _adam_steps(model, opt, batches[:3])

    dt.save(model.state_dict(), tmp_path / "model.safetensors")
    dt.save(opt.state_dict(), tmp_path / "optim.safetensors")
    loaded = dt.load(tmp_path / "optim.safetensors")
    original = opt.state_dict()
    assert loaded["param_groups"] == original["param_groups"]
    assert list(loaded["state"]) == list(original["state"]) == [0, 1, 2, 3]
    for index, state in original["state"].items():
        for name, value in state.items():
            numpy.testing.assert_array_equal(loaded["state"][index][name], value)

    resumed = nn.Sequential(nn.Linear(3, 5), nn.ReLU(), nn.Linear(5, 2))
    resumed.load_state_dict(dt.load(tmp_path / "model.safetensors"))
    resumed_opt = optim.Adam(resumed.parameters(), lr=0.5)
    resumed_opt.load_state_dict(loaded)
    assert resumed_opt.param_groups[0]["lr"] == 0.01
    assert resumed_opt.param_groups[0]["betas"] == (0.8, 0.99)

    _adam_steps(model, opt, batches[3:])
    _adam_steps(resumed, resumed_opt, batches[3:])
    pairs = zip(model.state_dict().items(), resumed.state_dict().items(), strict=True)
    for (name, a), (_, b) in pairs:
        numpy.testing.assert_array_equal(a, b, err_msg=name)
