"""disttrain.data.datasets: the IDX reader, MNIST from IDX files, and the embedded Digits."""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest

from disttrain.data import DataLoader, Subset, datasets, transforms
from disttrain.data.datasets import MNIST, Digits, read_idx, write_idx
from disttrain.tensor import Tensor


def idx_bytes(array: np.ndarray, code: int = 0x08) -> bytes:
    """An IDX file by hand (independent of write_idx)."""
    dtype = {0x08: ">u1", 0x0C: ">i4", 0x0D: ">f4"}[code]
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(dtype).tobytes()


def write_mnist(root, n: int, prefix: str = "train", gz: bool = False, seed: int = 0):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, n, dtype=np.uint8)
    suffix = ".gz" if gz else ""
    for name, array in ((f"{prefix}-images-idx3-ubyte", images),
                        (f"{prefix}-labels-idx1-ubyte", labels)):
        raw = idx_bytes(array)
        (root / (name + suffix)).write_bytes(gzip.compress(raw) if gz else raw)
    return images, labels


# ---------------------------------------------------------------- IDX
@pytest.mark.parametrize("code,dtype", [(0x08, np.uint8), (0x0C, np.int32), (0x0D, np.float32)])
@pytest.mark.parametrize("gz", [False, True])
def test_read_idx(tmp_path, code, dtype, gz):
    array = np.arange(24).reshape(2, 3, 4).astype(dtype)
    raw = idx_bytes(array, code)
    path = tmp_path / "a-idx3"
    path.write_bytes(gzip.compress(raw) if gz else raw)
    out = read_idx(path)
    assert out.dtype == dtype and out.dtype.isnative and out.flags.writeable
    np.testing.assert_array_equal(out, array)


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64])
def test_write_idx_round_trip(tmp_path, dtype):
    array = np.arange(-3, 9).reshape(3, 4).astype(dtype) if dtype != np.uint8 else \
        np.arange(12, dtype=np.uint8).reshape(3, 4)
    write_idx(tmp_path / "x.gz", array)
    assert (tmp_path / "x.gz").read_bytes()[:2] == b"\x1f\x8b"
    np.testing.assert_array_equal(read_idx(tmp_path / "x.gz"), array)
    with pytest.raises(ValueError, match="write_idx: array must have ndim >= 1"):
        write_idx(tmp_path / "y", np.zeros(2, np.int64))


def test_read_idx_errors(tmp_path):
    bad_magic = tmp_path / "bad-magic"
    bad_magic.write_bytes(b"\x00\x01\x08\x01" + b"\x00" * 8)
    with pytest.raises(ValueError, match=r"bad-magic: bad magic number 0x00010801"):
        read_idx(bad_magic)
    truncated = tmp_path / "truncated"
    truncated.write_bytes(idx_bytes(np.zeros((4, 28, 28), np.uint8))[:-10])
    with pytest.raises(ValueError, match=r"truncated: truncated: the header says shape "
                                         r"\(4, 28, 28\) of uint8 \(3136 data bytes\) but the "
                                         r"file holds 3126 data bytes"):
        read_idx(truncated)
    extra = tmp_path / "extra"
    extra.write_bytes(idx_bytes(np.zeros(3, np.uint8)) + b"\x00")
    with pytest.raises(ValueError, match="has trailing bytes"):
        read_idx(extra)
    short_header = tmp_path / "short"
    short_header.write_bytes(b"\x00\x00\x08\x03\x00\x00")
    with pytest.raises(ValueError, match="truncated header: 3 dimensions need 16 header bytes"):
        read_idx(short_header)
    bad_gz = tmp_path / "bad.gz"
    bad_gz.write_bytes(gzip.compress(idx_bytes(np.zeros(100, np.uint8)))[:-12])
    with pytest.raises(ValueError, match="bad.gz: corrupt or truncated gzip data"):
        read_idx(bad_gz)


# ---------------------------------------------------------------- MNIST
@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("train,prefix", [(True, "train"), (False, "t10k")])
def test_mnist_reads_flat_layout(tmp_path, gz, train, prefix):
    images, labels = write_mnist(tmp_path, 5, prefix, gz)
    ds = MNIST(tmp_path, train=train)
    assert len(ds) == 5 and ds.data.dtype == np.uint8 and ds.data.shape == (5, 28, 28)
    assert ds.targets.dtype == np.int64
    np.testing.assert_array_equal(ds.data, images)
    x, y = ds[3]
    assert x.shape == (1, 28, 28) and x.dtype == np.float32 and 0 <= x.min() <= x.max() <= 1
    np.testing.assert_allclose(x[0] * 255, images[3], atol=1e-4)
    assert isinstance(y, int) and y == labels[3]


def test_mnist_reads_torchvision_layout(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    images, labels = write_mnist(raw, 3, "t10k", gz=True)
    ds = MNIST(tmp_path, train=False)
    np.testing.assert_array_equal(ds.targets, labels)


def test_mnist_transforms_and_fast_path(tmp_path):
    images, labels = write_mnist(tmp_path, 10, seed=4)
    plain = MNIST(tmp_path)
    xs, ys = plain.arrays()
    assert xs.shape == (10, 1, 28, 28) and xs.dtype == np.float32 and ys.dtype == np.int64
    (bx, by), = DataLoader(plain, batch_size=10)
    np.testing.assert_array_equal(bx.array, np.stack([plain[i][0] for i in range(10)]))
    np.testing.assert_array_equal(by.array, labels)
    tf = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.1307,), (0.3081,))])
    ds = MNIST(tmp_path, transform=tf, target_transform=lambda y: y + 100)
    assert ds.arrays() is None
    x, y = ds[0]
    assert isinstance(x, Tensor) and x.shape == (1, 28, 28) and y == labels[0] + 100
    (bx, by), = DataLoader(ds, batch_size=10)
    assert bx.shape == (10, 1, 28, 28) and by.array.tolist() == (labels + 100).tolist()


def test_mnist_missing_files(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"MNIST: train-images-idx3-ubyte not found; "
                                                r"looked for .*MNIST/raw/train-images-idx3-ubyte"
                                                r"\.gz.* --data-dir \(root\) expects the IDX files "
                                                r"train-images-idx3-ubyte\[\.gz\]"):
        MNIST(tmp_path)
    write_mnist(tmp_path, 2, "train")
    (tmp_path / "train-labels-idx1-ubyte").unlink()
    with pytest.raises(FileNotFoundError, match="train-labels-idx1-ubyte not found"):
        MNIST(tmp_path)
    with pytest.raises(FileNotFoundError, match="t10k-images-idx3-ubyte not found.*never "
                                                "downloads"):
        MNIST(tmp_path, train=False, download=True)


def test_mnist_corrupt_files(tmp_path):
    write_mnist(tmp_path, 4)
    images = tmp_path / "train-images-idx3-ubyte"
    good = images.read_bytes()
    images.write_bytes(good[:-1])
    with pytest.raises(ValueError, match="train-images-idx3-ubyte: truncated"):
        MNIST(tmp_path)
    images.write_bytes(b"\x08\x03" + good[2:])
    with pytest.raises(ValueError, match="train-images-idx3-ubyte: bad magic number"):
        MNIST(tmp_path)
    images.write_bytes(idx_bytes(np.zeros((3, 28, 28), np.uint8)))
    with pytest.raises(ValueError, match=r"images file .*train-images-idx3-ubyte has 3 images "
                                         r"but labels file .*train-labels-idx1-ubyte has 4 labels"):
        MNIST(tmp_path)
    images.write_bytes(idx_bytes(np.zeros((4, 784), np.uint8)))
    with pytest.raises(ValueError, match=r"should hold uint8 \(N, H, W\) images, got dtype uint8 "
                                         r"shape \(4, 784\)"):
        MNIST(tmp_path)


# ---------------------------------------------------------------- Digits
def test_digits_shapes_values_and_splits():
    train, val, everything = Digits("train"), Digits("val"), Digits("all")
    assert (len(train), len(val), len(everything)) == (1438, 359, 1797)
    for ds in (train, val, everything):
        assert ds.data.shape == (len(ds), 28, 28) and ds.data.dtype == np.uint8  # as MNIST
        assert ds.targets.dtype == np.int64 and set(ds.targets.tolist()) == set(range(10))
        assert ds.data.min() == 0 and ds.data.max() == 255
    assert not everything.data[:, :2].any() and not everything.data[:, :, -2:].any()
    assert np.bincount(everything.targets).tolist() == [178, 182, 177, 183, 181, 182, 181, 179,
                                                        174, 180]
    x, y = train[0]
    assert x.shape == (1, 28, 28) and x.dtype == np.float32 and isinstance(y, int)
    np.testing.assert_array_equal(x, train.data[0][None] / np.float32(255))
    np.testing.assert_array_equal(train.arrays()[0][:5], np.stack([train[i][0] for i in range(5)]))


def test_digits_split_is_deterministic_and_disjoint():
    train, val, everything = Digits("train"), Digits("val"), Digits("all")
    assert set(train.indices).isdisjoint(val.indices)
    assert sorted([*train.indices, *val.indices]) == list(range(1797))
    np.testing.assert_array_equal(train.data, everything.data[train.indices])
    np.testing.assert_array_equal(val.targets, everything.targets[val.indices])
    np.testing.assert_array_equal(Digits("val").targets, Digits(train=False).targets)
    np.testing.assert_array_equal(Digits("train").data, Digits(train=True).data)
    other = Digits("val", seed=1)
    assert not np.array_equal(other.targets, Digits("val").targets)
    assert len(Digits("val", val_fraction=0.5)) == 898


def test_digits_sizes_transforms_and_errors():
    raw = Digits("all", size=8)
    assert raw.data.shape == (1797, 8, 8)
    from disttrain.data.datasets import digits

    shipped = read_idx(digits._DIR / "digits-images-idx3-ubyte.gz")
    np.testing.assert_array_equal(raw.data, np.rint(shipped * np.float32(255 / 16)))
    assert Digits("val", size=32).data.shape == (359, 32, 32)
    nearest, bilinear = Digits("all").data, Digits("all", interpolation="bilinear").data
    np.testing.assert_array_equal(nearest[:, 2:26, 2:26],
                                  np.repeat(np.repeat(raw.data, 3, axis=1), 3, axis=2))
    assert not np.array_equal(nearest, bilinear) and bilinear.dtype == np.uint8
    flipped = Digits("val", transform=lambda x: x[:, ::-1])
    assert flipped.arrays() is None and flipped[0][0].shape == (28, 28)
    np.testing.assert_array_equal(flipped[0][0], flipped.data[0][:, ::-1])
    with pytest.raises(ValueError, match="split should be 'train', 'val' or 'all', got 'test'"):
        Digits("test")
    with pytest.raises(ValueError, match="pass split or train, not both"):
        Digits("train", train=True)
    with pytest.raises(ValueError, match=r"val_fraction should be in \(0, 1\), got 1.5"):
        Digits(val_fraction=1.5)
    with pytest.raises(ValueError, match="size should be 8 or an int >= 12, got 10"):
        Digits(size=10)
    with pytest.raises(ValueError, match="interpolation should be 'nearest' or 'bilinear', got "
                                         "'cubic'"):
        Digits(interpolation="cubic")


def test_digits_loader_fast_path():
    ds = Digits("train")
    loader = DataLoader(Subset(ds, list(range(100))), batch_size=64, shuffle=True, seed=0)
    x, y = next(iter(loader))
    assert x.shape == (64, 1, 28, 28) and x.dtype == np.float32 and y.dtype == np.int64
    assert datasets.Digits is Digits and len(loader) == 2


def test_embedded_digits_files_are_reproducible(tmp_path):
    from disttrain.data.datasets import digits

    for name in ("digits-images-idx3-ubyte.gz", "digits-labels-idx1-ubyte.gz"):
        shipped = digits._DIR / name
        write_idx(tmp_path / name, read_idx(shipped))
        assert (tmp_path / name).read_bytes() == shipped.read_bytes(), name


@pytest.mark.parametrize("make", ["digits", "mnist"])
def test_digits_and_mnist_hand_transforms_the_same_sample(make, tmp_path):
    """A uint8 (28, 28) image to the transform, as torchvision's MNIST; ToTensor + Normalize
    give (1, 28, 28)."""
    seen = []
    tf = transforms.Compose([transforms.Lambda(lambda img: seen.append(img) or img),
                             transforms.ToTensor(), transforms.Normalize((0.1307,), (0.3081,))])
    if make == "mnist":
        write_mnist(tmp_path, 4, seed=2)
        ds = MNIST(tmp_path, transform=tf)
    else:
        ds = Digits("train", transform=tf)
    x, _ = ds[1]
    assert seen[0].shape == (28, 28) and seen[0].dtype == np.uint8
    assert isinstance(x, Tensor) and x.shape == (1, 28, 28) and x.dtype == np.float32
    expected = (ds.data[1][None].astype(np.float32) / np.float32(255) - np.float32(0.1307))
    np.testing.assert_allclose(x.array, expected / np.float32(0.3081), rtol=1e-6, atol=1e-6)
    (batch, _), = DataLoader(Subset(ds, [0, 1, 2]), batch_size=3)
    assert batch.shape == (3, 1, 28, 28)
