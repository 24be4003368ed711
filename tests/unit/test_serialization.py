"""disttrain.serialization: safetensors save/load round trips, interop, atomicity and errors."""

import io
import json
import os
import pickle
import re

import numpy
import pytest
from safetensors import safe_open
from safetensors.numpy import save_file

from disttrain.serialization import load, save


class FakeTensor:
    """Duck-types a disttrain Tensor: serialization only looks at `.array`."""

    def __init__(self, array):
        self.array = array


def assert_same(got, expected):
    """Exact structural equality: container types, key types, dtypes, shapes and values."""
    if isinstance(expected, FakeTensor):
        expected = expected.array
    if isinstance(expected, dict):
        assert type(got) is dict and list(got) == list(expected)
        for (k_got, v_got), (k_exp, v_exp) in zip(got.items(), expected.items(), strict=True):
            assert type(k_got) is type(k_exp)
            assert_same(v_got, v_exp)
    elif isinstance(expected, (list, tuple)):
        assert type(got) is type(expected) and len(got) == len(expected)
        for g, e in zip(got, expected, strict=True):
            assert_same(g, e)
    elif isinstance(expected, (numpy.ndarray, numpy.generic)):
        assert type(got) is type(expected), (type(got), type(expected))
        # NOTE: files are little-endian; a big-endian input loads in native byte order.
        assert got.dtype == expected.dtype.newbyteorder("=") and got.shape == expected.shape
        numpy.testing.assert_array_equal(got, expected)
    else:
        assert type(got) is type(expected) and got == expected


def model_state(rng):
    return {
        "conv.weight": rng.standard_normal((4, 3, 3, 3)).astype(numpy.float32),
        "fc.weight": rng.standard_normal((5, 4)).T,  # non-contiguous float64 view
        "fc.bias": numpy.arange(5, dtype=numpy.float16),
        "bn.num_batches_tracked": numpy.array(7, dtype=numpy.int64),  # 0-d
        "mask": numpy.array([True, False, True]),
        "pixels": numpy.arange(6, dtype=numpy.uint8).reshape(2, 3)[:, ::2],
        "empty": numpy.zeros((0, 3), dtype=numpy.float32),
        "big_endian": numpy.arange(3, dtype=">f4"),
    }


def optimizer_state(rng):
    return {
        "state": {
            0: {"step": 3.0, "exp_avg": rng.standard_normal(4), "exp_avg_sq": rng.random(4)},
            1: {"step": numpy.float32(3.0), "momentum_buffer": None},
        },
        "param_groups": [
            {"lr": 0.1, "betas": (0.9, 0.999), "eps": 1e-8, "amsgrad": False, "params": [0, 1]},
        ],
    }


@pytest.fixture
def rng():
    return numpy.random.default_rng(0)


def test_model_state_dict_round_trip_keeps_names(tmp_path, rng):
    state = model_state(rng)
    save(state, tmp_path / "model.safetensors")
    assert_same(load(tmp_path / "model.safetensors"), state)
    with safe_open(tmp_path / "model.safetensors", framework="np") as f:
        assert sorted(f.keys()) == sorted(state)
        metadata = f.metadata()
    assert metadata["format"] == "disttrain" and metadata["format_version"] == "1"
    json.loads(metadata["disttrain.structure"])


def test_optimizer_state_dict_round_trip(tmp_path, rng):
    state = optimizer_state(rng)
    save(state, tmp_path / "opt.safetensors")
    loaded = load(tmp_path / "opt.safetensors")
    assert_same(loaded, state)
    assert list(loaded["state"]) == [0, 1] and loaded["param_groups"][0]["betas"] == (0.9, 0.999)


def test_nested_checkpoint_round_trip(tmp_path, rng):
    checkpoint = {
        "model": {"fc.weight": FakeTensor(rng.standard_normal((2, 2)).astype(numpy.float32))},
        "optimizer": optimizer_state(rng),
        "step": 10,
        "rng": {"bit_generator": "PCG64", "state": {"state": 2**100 + 1, "inc": 3}},
        "misc": [None, True, "text", 1.5, float("inf"), numpy.int64(-4), numpy.bool_(True), ()],
        "odd keys": {
            "a/b": numpy.ones(1),
            "a~1b": numpy.zeros(1),
            "0": numpy.ones(2),
            0: numpy.zeros(3),
        },
        "": {"": numpy.full(2, 9.0)},
        "complex": numpy.array([1 + 2j], dtype=numpy.complex64),
    }
    save(checkpoint, tmp_path / "ckpt.safetensors")
    loaded = load(tmp_path / "ckpt.safetensors")
    assert_same(loaded, checkpoint)
    with safe_open(tmp_path / "ckpt.safetensors", framework="np") as f:
        names = set(f.keys())
    assert {"model/fc.weight", "optimizer/state/0/exp_avg", "misc/5"} <= names
    assert {"odd keys/a~1b", "odd keys/a~01b", "odd keys/~s0", "odd keys/0", "/"} <= names


def test_pytorch_reads_a_saved_state_dict(tmp_path, rng):
    torch = pytest.importorskip("torch")
    from safetensors.torch import load_file

    state = model_state(rng)
    del state["big_endian"]
    save(state, tmp_path / "model.safetensors")
    loaded = load_file(tmp_path / "model.safetensors")
    assert set(loaded) == set(state)
    for name, array in state.items():
        expected = torch.from_numpy(array.copy())
        assert loaded[name].dtype == expected.dtype and torch.equal(loaded[name], expected)


def test_load_plain_safetensors_file_from_other_tools(tmp_path):
    tensors = {"a.weight": numpy.ones((2, 2), numpy.float32), "b": numpy.arange(3)}
    save_file(tensors, tmp_path / "plain.safetensors", metadata={"format": "pt"})
    assert_same(load(tmp_path / "plain.safetensors"), tensors)


def test_write_is_atomic_and_leaves_no_temp_files(tmp_path):
    path = tmp_path / "model.safetensors"
    save({"w": numpy.zeros(3)}, path)
    save({"w": numpy.ones(3)}, str(path))  # overwrite in place
    assert os.listdir(tmp_path) == ["model.safetensors"]
    numpy.testing.assert_array_equal(load(path)["w"], numpy.ones(3))
    with pytest.raises(TypeError):
        save({"w": numpy.ones(3), "bad": object()}, path)
    assert os.listdir(tmp_path) == ["model.safetensors"]  # failed save leaves the old file
    numpy.testing.assert_array_equal(load(path)["w"], numpy.ones(3))


@pytest.mark.parametrize(
    "obj, match",
    [
        ({"a": {"b": [1, object()]}}, r"obj\['a'\]\['b'\]\[1\] of type object"),
        ({"a": {1.5: 2}}, r"key 1\.5 in obj\['a'\] has type float"),
        ({"a": {True: 2}}, r"key True in obj\['a'\] has type bool"),
        ({"a": numpy.array(["s"])}, r"obj\['a'\] has dtype <U1"),
        ({"a": numpy.array([1 + 1j])}, r"obj\['a'\] has dtype complex128"),
        ({"a": FakeTensor([1, 2])}, r"obj\['a'\] of type FakeTensor"),
        ([numpy.ones(2), object()], r"obj\[1\] of type object"),
    ],
)
def test_save_rejects_unsupported_values(tmp_path, obj, match):
    with pytest.raises(TypeError, match=match):
        save(obj, tmp_path / "x.safetensors")
    assert os.listdir(tmp_path) == []


def test_save_into_missing_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing"):
        save({"a": numpy.ones(1)}, tmp_path / "missing" / "x.safetensors")


def test_load_missing_file_or_directory_names_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.safetensors"):
        load(tmp_path / "nope.safetensors")
    (tmp_path / "adir").mkdir()
    with pytest.raises(IsADirectoryError, match="adir"):
        load(tmp_path / "adir")


def test_flat_state_dict_keeps_keys_with_separators_verbatim(tmp_path):
    state = {"a/b": numpy.ones(1), "x~y": numpy.zeros(2), "0": numpy.arange(3)}
    save(state, tmp_path / "flat.safetensors")
    with safe_open(tmp_path / "flat.safetensors", framework="np") as f:
        assert sorted(f.keys()) == sorted(state)
    assert_same(load(tmp_path / "flat.safetensors"), state)


@pytest.fixture
def saved(tmp_path, rng):
    path = tmp_path / "good.safetensors"
    save({"model": model_state(rng), "optimizer": optimizer_state(rng), "step": 3}, path)
    return path, path.read_bytes()


def _invalid(path):
    return re.escape(f"{path}: not a valid safetensors file")


def test_truncated_file_names_it(saved, tmp_path):
    path, data = saved
    header_end = 8 + int.from_bytes(data[:8], "little")
    bad = tmp_path / "truncated.safetensors"
    for size in [0, 3, 8, 9, header_end // 2, header_end, header_end + 5, len(data) - 1]:
        bad.write_bytes(data[:size])
        with pytest.raises(ValueError, match=_invalid(bad)):
            load(bad)


def test_garbage_and_flipped_header_bytes_name_the_file(saved, tmp_path):
    path, data = saved
    bad = tmp_path / "corrupt.safetensors"
    bad.write_bytes(os.urandom(1000))
    with pytest.raises(ValueError, match=_invalid(bad)):
        load(bad)
    header_end = 8 + int.from_bytes(data[:8], "little")
    for i in range(header_end):  # 0xFF flips make invalid UTF-8 or sizes: always rejected
        bad.write_bytes(data[:i] + bytes([data[i] ^ 0xFF]) + data[i + 1 :])
        with pytest.raises(ValueError, match=re.escape(str(bad))):
            load(bad)
    for i in range(header_end):  # 1-bit flips: either rejected naming the file, or a dict
        bad.write_bytes(data[:i] + bytes([data[i] ^ 0x01]) + data[i + 1 :])
        try:
            assert isinstance(load(bad), dict)
        except ValueError as e:
            assert str(bad) in str(e)


def test_broken_metadata_json_names_the_file(tmp_path):
    path = tmp_path / "meta.safetensors"
    for structure in ['{"dict": [["a", {"tensor": "a"}]', '{"dict": [["a", {"tensor": "zz"}]]}',
                      '{"bogus": 1}', '[1]']:  # fmt: skip
        metadata = {"format": "disttrain", "format_version": "1", "disttrain.structure": structure}
        save_file({"a": numpy.ones(1)}, path, metadata=metadata)
        with pytest.raises(ValueError, match=re.escape(f"{path}: disttrain metadata is corrupt")):
            load(path)
    save_file({"a": numpy.ones(1)}, path, metadata={"format": "disttrain", "format_version": "9"})
    with pytest.raises(ValueError, match=r"format_version '9' is not supported"):
        load(path)


class _Planted:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.parametrize("protocol", [0, 2, pickle.HIGHEST_PROTOCOL])
def test_pickle_payload_is_never_executed(tmp_path, protocol):
    marker = tmp_path / "pwned"
    path = tmp_path / "model.safetensors"
    payload = pickle.dumps({"w": _Planted(str(marker))}, protocol=protocol)
    pickle.loads(payload)["w"].close()  # control: unpickling really would run the payload
    assert marker.exists()
    marker.unlink()
    path.write_bytes(payload)
    with pytest.raises(ValueError, match=_invalid(path)):
        load(path)
    assert not marker.exists()


def test_torch_save_file_is_rejected_with_a_hint(tmp_path):
    torch = pytest.importorskip("torch")
    path = tmp_path / "model.pt"
    torch.save({"w": torch.ones(2)}, path)
    with pytest.raises(ValueError, match=_invalid(path) + ".*never unpickles"):
        load(path)


# ---------------------------------------------------------------- torch.save/load's surface
def test_file_objects_round_trip(tmp_path, rng):
    checkpoint = {"model": model_state(rng), "optimizer": optimizer_state(rng), "epoch": 3}
    buffer = io.BytesIO()
    save(checkpoint, buffer)
    buffer.seek(0)
    assert_same(load(buffer), checkpoint)
    with open(tmp_path / "ckpt.pt", "wb") as f:
        save(checkpoint, f)
    with open(tmp_path / "ckpt.pt", "rb") as f:
        assert_same(load(f), checkpoint)


@pytest.mark.parametrize("obj", [numpy.arange(6.0).reshape(2, 3), [numpy.ones(2), 3, "a"],
                                 (1, 2.5, None)])
def test_non_dict_objects_round_trip(tmp_path, obj):
    save(obj, tmp_path / "x.pt")
    assert_same(load(tmp_path / "x.pt"), obj)


def test_saving_a_module_or_optimizer_says_to_save_its_state_dict(tmp_path):
    import disttrain.nn as nn
    import disttrain.optim as optim

    model = nn.Linear(3, 2)
    with pytest.raises(TypeError, match=r"save: obj is a Linear object; disttrain never pickles "
                                        r"objects .* dt.save\(model.state_dict\(\), f\)"):
        save(model, tmp_path / "model.pt")
    with pytest.raises(TypeError, match=r"save: obj is a SGD object"):
        save(optim.SGD(model.parameters(), lr=0.1), io.BytesIO())
    with pytest.raises(TypeError, match=r"save: obj\['model'\] is a Linear object"):
        save({"model": model, "epoch": 1}, tmp_path / "ckpt.pt")
    assert os.listdir(tmp_path) == []


def test_save_and_load_reject_other_targets():
    with pytest.raises(TypeError, match="save: f should be a path .* got int"):
        save({"a": numpy.ones(1)}, 3)
    with pytest.raises(TypeError, match="load: f should be a path .* got int"):
        load(3)


def test_map_location_weights_only_and_pickle_module(tmp_path, rng):
    import disttrain as dt

    path = tmp_path / "model.pt"
    state = model_state(rng)
    save(state, path)
    for map_location in (None, "cpu", dt.device("cpu"), {"cuda:0": "cpu"}, {"cpu": "cpu"}):
        assert_same(load(path, map_location=map_location), state)
    for weights_only in (None, True, False):
        assert_same(load(path, weights_only=weights_only), state)
    calls = []

    def to_float64(array, location):
        calls.append(location)
        return array.astype(numpy.float64) if array.dtype == numpy.float32 else None

    moved = load(path, map_location=to_float64)
    assert moved["conv.weight"].dtype == numpy.float64 and moved["fc.bias"].dtype == numpy.float16
    assert calls == ["cpu"] * len(state)
    with pytest.raises(TypeError, match="load: map_location should be None, a device string"):
        load(path, map_location=3)
    with pytest.raises(TypeError, match="map_location dict should map location strings to"):
        load(path, map_location={"cpu": 0})
    with pytest.raises(TypeError, match="load: weights_only should be a bool or None, got 'yes'"):
        load(path, weights_only="yes")
    with pytest.raises(TypeError, match="load: pickle_module must be None"):
        load(path, None, pickle)


def test_map_location_cuda_without_a_gpu_is_a_clear_error(tmp_path):
    import disttrain as dt

    if dt.cuda.is_available():
        pytest.skip("a GPU is present: map_location='cuda' is valid here")
    save({"w": numpy.ones(2)}, tmp_path / "w.pt")
    with pytest.raises(Exception, match="cupy|CuPy"):
        load(tmp_path / "w.pt", map_location="cuda")


def test_mmap_gives_read_only_views_of_the_file(tmp_path, rng):
    checkpoint = {"model": model_state(rng), "optimizer": optimizer_state(rng), "epoch": 3}
    path = tmp_path / "ckpt.safetensors"
    save(checkpoint, path)
    mapped = load(path, mmap=True)
    expected = load(path)
    assert mapped["epoch"] == 3
    for name, array in expected["model"].items():
        got = mapped["model"][name]
        assert got.dtype == array.dtype and got.shape == array.shape and not got.flags.writeable
        numpy.testing.assert_array_equal(got, array)
    assert_same(mapped["optimizer"], expected["optimizer"])
    with pytest.raises(ValueError, match="load: mmap=True needs a file path, got a BytesIO"):
        load(io.BytesIO(path.read_bytes()), mmap=True)
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"garbage!" * 4)
    with pytest.raises(ValueError, match=_invalid(bad)):
        load(bad, mmap=True)


def test_invalid_file_objects_are_named(tmp_path):
    buffer = io.BytesIO(b"garbage!" * 4)
    with pytest.raises(ValueError, match=r"<BytesIO file object>: not a valid safetensors file"):
        load(buffer)
    torch = pytest.importorskip("torch")
    torch_bytes = io.BytesIO()
    torch.save({"w": torch.ones(2)}, torch_bytes)
    torch_bytes.seek(0)
    with pytest.raises(ValueError, match="never unpickles"):
        load(torch_bytes)


def test_pytorch_loads_a_saved_model_state_dict(tmp_path):
    """dt.save(model.state_dict(), path), read by PyTorch with safetensors.torch.load_file."""
    torch = pytest.importorskip("torch")
    from safetensors.torch import load_file

    import disttrain.nn as nn

    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 10))
    path = tmp_path / "model.safetensors"
    save(model.state_dict(), path)
    tensors = load_file(path)
    assert set(tensors) == set(model.state_dict())
    for name, array in model.state_dict().items():
        assert isinstance(tensors[name], torch.Tensor)
        numpy.testing.assert_array_equal(tensors[name].numpy(), numpy.asarray(array))
    reference = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU(),
                                    torch.nn.Flatten(), torch.nn.Linear(4 * 6 * 6, 10))
    reference.load_state_dict(tensors)  # strict: every name and shape is torch's
    x = numpy.random.default_rng(0).standard_normal((2, 1, 8, 8)).astype(numpy.float32)
    import disttrain as dt

    numpy.testing.assert_allclose(model(dt.tensor(x)).detach().numpy(),
                                  reference(torch.from_numpy(x)).detach().numpy(), atol=1e-5)
