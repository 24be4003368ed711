"""disttrain.data: datasets, samplers, DataLoader, collate and transforms."""

from __future__ import annotations

import ast
import collections
from pathlib import Path

import numpy as np
import pytest

from disttrain.data import (
    BatchSampler,
    ConcatDataset,
    DataLoader,
    Dataset,
    DistributedSampler,
    RandomSampler,
    SequentialSampler,
    Subset,
    SubsetRandomSampler,
    TensorDataset,
    default_collate,
    random_split,
    transforms,
)
from disttrain.tensor import Tensor


class ListDataset(Dataset):
    """A dataset without arrays(), so DataLoader takes the per-sample path."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int):
        return np.full((2,), i, np.float32), i


def make_tensor_dataset(n: int = 10) -> TensorDataset:
    x = np.arange(n * 3, dtype=np.float32).reshape(n, 3)
    return TensorDataset(x, np.arange(n))


def order(loader: DataLoader) -> list[int]:
    return [int(i) for batch in loader for i in batch[-1].array]


# ---------------------------------------------------------------- datasets
def test_tensor_dataset_items_and_len():
    ds = make_tensor_dataset(4)
    x, y = ds[2]
    assert isinstance(x, Tensor) and x.shape == (3,) and x.array.tolist() == [6, 7, 8]
    assert int(y.item()) == 2 and len(ds) == 4


def test_tensor_dataset_errors():
    with pytest.raises(ValueError, match=r"tensors\[0\] has first dimension 4 but tensors\[1\] "
                                         r"has 5"):
        TensorDataset(np.zeros((4, 2)), np.zeros(5))
    with pytest.raises(TypeError, match=r"tensors\[0\] must be a Tensor or a numpy array, got "
                                        r"list"):
        TensorDataset([1, 2])
    with pytest.raises(ValueError, match="at least one tensor"):
        TensorDataset()


def test_subset_and_concat():
    ds = make_tensor_dataset(6)
    sub = Subset(ds, [4, 1])
    assert len(sub) == 2 and int(sub[0][1].item()) == 4
    both = ConcatDataset([ds, sub])
    assert len(both) == 8 and int(both[6][1].item()) == 4 and int(both[-1][1].item()) == 1
    with pytest.raises(IndexError, match="index 8 out of range for length 8"):
        both[8]


def test_random_split_lengths_and_fractions():
    ds = make_tensor_dataset(10)
    a, b = random_split(ds, [3, 7], generator=np.random.default_rng(0))
    assert (len(a), len(b)) == (3, 7)
    assert sorted(list(a.indices) + list(b.indices)) == list(range(10))
    parts = random_split(ds, [0.3, 0.3, 0.4], generator=np.random.default_rng(0))
    assert [len(p) for p in parts] == [3, 3, 4]
    parts = random_split(make_tensor_dataset(11), [0.5, 0.5], generator=np.random.default_rng(1))
    assert [len(p) for p in parts] == [6, 5]  # remainder round-robin, as torch
    again = random_split(ds, [3, 7], generator=np.random.default_rng(0))
    assert again[0].indices == a.indices


def test_random_split_errors():
    ds = make_tensor_dataset(10)
    with pytest.raises(ValueError, match=r"sum of lengths \[3, 3\] is 6, which does not equal "
                                         r"the length of the dataset \(10\)"):
        random_split(ds, [3, 3])
    with pytest.raises(UserWarning, match="length of split at index 1 is 0"):
        random_split(make_tensor_dataset(2), [0.9, 0.1], generator=np.random.default_rng(0))
    with pytest.raises(TypeError, match="generator should be a dt.Generator or a numpy.random"):
        random_split(ds, [5, 5], generator=0)


# ---------------------------------------------------------------- samplers
def test_sequential_random_subset_samplers():
    assert list(SequentialSampler(range(4))) == [0, 1, 2, 3]
    perm = list(RandomSampler(range(20), generator=np.random.default_rng(0)))
    assert sorted(perm) == list(range(20)) and perm != list(range(20))
    drawn = list(RandomSampler(range(3), replacement=True, num_samples=50,
                               generator=np.random.default_rng(0)))
    assert len(drawn) == 50 and set(drawn) <= {0, 1, 2}
    repeated = list(RandomSampler(range(3), num_samples=7, generator=np.random.default_rng(0)))
    assert len(repeated) == 7 and sorted(repeated[:3]) == [0, 1, 2]
    assert sorted(SubsetRandomSampler([9, 4, 7], generator=np.random.default_rng(0))) == [4, 7, 9]
    assert all(isinstance(i, int) for i in RandomSampler(range(5)))


def test_random_sampler_uses_default_generator():
    import disttrain.random as dt_random

    saved = dt_random.get_rng_state()
    try:
        dt_random.manual_seed(123)
        first = list(RandomSampler(range(50)))
        dt_random.manual_seed(123)
        assert list(RandomSampler(range(50))) == first
    finally:
        dt_random.set_rng_state(saved)


def test_batch_sampler():
    assert list(BatchSampler(range(7), 3, drop_last=False)) == [[0, 1, 2], [3, 4, 5], [6]]
    assert list(BatchSampler(range(7), 3, drop_last=True)) == [[0, 1, 2], [3, 4, 5]]
    assert len(BatchSampler(range(7), 3, False)) == 3 and len(BatchSampler(range(7), 3, True)) == 2
    with pytest.raises(ValueError, match="batch_size should be a positive integer value, but got "
                                         "batch_size=0"):
        BatchSampler(range(7), 0, False)
    with pytest.raises(ValueError, match="drop_last should be a boolean value, but got "
                                         "drop_last=1"):
        BatchSampler(range(7), 2, 1)


@pytest.mark.parametrize("n", [0, 1, 7, 10, 12, 13])
@pytest.mark.parametrize("num_replicas", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("drop_last", [False, True])
def test_distributed_sampler_partitions(n, num_replicas, drop_last):
    shards = [list(DistributedSampler(range(n), num_replicas, rank, seed=3, drop_last=drop_last))
              for rank in range(num_replicas)]
    lengths = {len(s) for s in shards}
    assert len(lengths) == 1, "every rank gets the same number of indices"
    assert lengths == {len(DistributedSampler(range(n), num_replicas, 0, drop_last=drop_last))}
    everything = [i for s in shards for i in s]
    counts = collections.Counter(everything)
    if drop_last:
        assert len(everything) == n - n % num_replicas and max(counts.values(), default=1) == 1
    else:
        assert set(counts) == set(range(n)), "every index is seen"
        assert len(everything) == -(-n // num_replicas) * num_replicas
        assert max(counts.values(), default=1) - 1 <= -(-num_replicas // max(n, 1))


@pytest.mark.parametrize("n,num_replicas", [(10, 3), (10, 4), (2, 5), (9, 3), (1, 4)])
@pytest.mark.parametrize("drop_last", [False, True])
def test_distributed_sampler_matches_torch_without_shuffle(n, num_replicas, drop_last):
    torch_data = pytest.importorskip("torch.utils.data")
    for rank in range(num_replicas):
        ours = DistributedSampler(range(n), num_replicas, rank, shuffle=False, drop_last=drop_last)
        theirs = torch_data.DistributedSampler(range(n), num_replicas, rank, shuffle=False,
                                               drop_last=drop_last)
        assert list(ours) == list(theirs) and len(ours) == len(theirs)


@pytest.mark.parametrize("n,num_replicas", [(10, 3), (2, 5), (16, 4)])
def test_distributed_sampler_shuffled_counts_match_torch(n, num_replicas):
    torch_data = pytest.importorskip("torch.utils.data")
    ours, theirs = collections.Counter(), collections.Counter()
    for rank in range(num_replicas):
        ours.update(DistributedSampler(range(n), num_replicas, rank, seed=5))
        theirs.update(torch_data.DistributedSampler(range(n), num_replicas, rank, seed=5))
    assert sorted(ours.values()) == sorted(theirs.values())


def test_distributed_sampler_epochs_and_seed():
    sampler = DistributedSampler(range(100), num_replicas=2, rank=0, seed=0)
    epoch0 = list(sampler)
    assert list(sampler) == epoch0, "same epoch, same order"
    sampler.set_epoch(1)
    epoch1 = list(sampler)
    assert epoch1 != epoch0
    expected = np.random.default_rng(0 + 1).permutation(100)[0::2].tolist()
    assert epoch1 == expected
    other = DistributedSampler(range(100), num_replicas=2, rank=1, seed=0)
    other.set_epoch(1)
    assert set(epoch1).isdisjoint(other) and len(set(epoch1) | set(other)) == 100
    restored = DistributedSampler(range(100), num_replicas=2, rank=0, seed=9)
    restored.load_state_dict(sampler.state_dict())
    assert list(restored) == epoch1


def test_distributed_sampler_errors():
    with pytest.raises(ValueError, match=r"num_replicas and rank are required .*"
                                         r"num_replicas=dist.get_world_size\(\), "
                                         r"rank=dist.get_rank\(\)"):
        DistributedSampler(range(4))
    with pytest.raises(ValueError, match=r"invalid rank 2, rank should be in the interval "
                                         r"\[0, 1\] for num_replicas=2"):
        DistributedSampler(range(4), num_replicas=2, rank=2)
    with pytest.raises(ValueError, match="DistributedSampler: rank must be >= 0, got -1"):
        DistributedSampler(range(4), num_replicas=2, rank=-1)
    with pytest.raises(ValueError, match="DistributedSampler: num_replicas must be >= 1, got 0"):
        DistributedSampler(range(4), num_replicas=0, rank=0)
    with pytest.raises(TypeError, match="DistributedSampler: rank must be an int, got float 1.0"):
        DistributedSampler(range(4), num_replicas=2, rank=1.0)


# ---------------------------------------------------------------- DataLoader
@pytest.mark.parametrize("dataset", [make_tensor_dataset(10), ListDataset(10)],
                         ids=["fast-path", "per-sample"])
def test_loader_batches_and_shapes(dataset):
    loader = DataLoader(dataset, batch_size=4)
    batches = list(loader)
    assert len(loader) == 3 and len(batches) == 3
    x, y = batches[0]
    assert isinstance(x, Tensor) and isinstance(y, Tensor)
    assert x.dtype == np.float32 and y.dtype == np.int64
    assert [b[0].shape[0] for b in batches] == [4, 4, 2]
    assert order(loader) == list(range(10))


def test_loader_fast_path_equals_per_sample_path():
    ds = make_tensor_dataset(9)
    fast = list(DataLoader(ds, batch_size=4, shuffle=True, seed=1))
    slow = list(DataLoader(ds, batch_size=4, shuffle=True, seed=1,
                           collate_fn=lambda b: default_collate(b)))  # slow path
    for (fx, fy), (sx, sy) in zip(fast, slow, strict=True):
        np.testing.assert_array_equal(fx.array, sx.array)
        np.testing.assert_array_equal(fy.array, sy.array)
        assert fx.dtype == sx.dtype and fy.dtype == sy.dtype


def test_loader_fast_path_keeps_dtypes_of_1d_arrays():
    ds = TensorDataset(np.arange(5, dtype=np.float64), np.arange(5, dtype=np.int32))
    assert ds[0][0].dtype == np.float64 and ds[0][1].dtype == np.int32
    fast, = DataLoader(ds, batch_size=5)
    slow, = DataLoader(ds, batch_size=5, collate_fn=lambda b: default_collate(b))
    assert [t.dtype for t in fast] == [t.dtype for t in slow] == [np.float64, np.int32]


def test_loader_fast_path_through_subsets():
    ds = make_tensor_dataset(10)
    sub = Subset(Subset(ds, [9, 8, 7, 6, 5]), [4, 0, 2])
    (x, y), = DataLoader(sub, batch_size=3)
    assert y.array.tolist() == [5, 9, 7] and x.array[:, 0].tolist() == [15, 27, 21]


def test_loader_drop_last():
    loader = DataLoader(make_tensor_dataset(10), batch_size=4, drop_last=True)
    assert len(loader) == 2 and [b[0].shape[0] for b in loader] == [4, 4]


def test_loader_seeded_shuffle_reproducible_and_changes_per_epoch():
    ds = make_tensor_dataset(50)
    a, b = DataLoader(ds, batch_size=8, shuffle=True, seed=7), DataLoader(
        ds, batch_size=8, shuffle=True, seed=7)
    a0, a1 = order(a), order(a)
    assert a0 == order(b) and a1 == order(b), "same seed, same order per epoch"
    assert a0 != a1 and sorted(a0) == sorted(a1) == list(range(50))
    assert a0 == np.random.default_rng(7).permutation(50).tolist()
    assert order(DataLoader(ds, batch_size=8, shuffle=True, seed=8)) != a0


def test_loader_generator_seeds_the_shuffle():
    ds = make_tensor_dataset(30)
    first = order(DataLoader(ds, batch_size=4, shuffle=True, generator=np.random.default_rng(3)))
    again = order(DataLoader(ds, batch_size=4, shuffle=True, generator=np.random.default_rng(3)))
    assert first == again and sorted(first) == list(range(30))


def test_loader_with_sampler():
    ds = make_tensor_dataset(10)
    sampler = DistributedSampler(ds, num_replicas=2, rank=1, shuffle=False)
    loader = DataLoader(ds, batch_size=2, sampler=sampler)
    assert order(loader) == [1, 3, 5, 7, 9] and len(loader) == 3
    batch_sampler = BatchSampler(SequentialSampler(ds), 5, drop_last=False)
    assert order(DataLoader(ds, batch_sampler=batch_sampler)) == list(range(10))


def test_loader_argument_errors():
    ds = make_tensor_dataset(4)
    with pytest.raises(ValueError, match="sampler option is mutually exclusive with shuffle"):
        DataLoader(ds, shuffle=True, sampler=SequentialSampler(ds))
    with pytest.raises(ValueError, match="batch_sampler option is mutually exclusive with "
                                         "batch_size, shuffle, sampler, and drop_last"):
        DataLoader(ds, batch_size=2, batch_sampler=BatchSampler(range(4), 2, False))
    with pytest.raises(ValueError, match="pass either seed or generator, not both"):
        DataLoader(ds, seed=0, generator=np.random.default_rng(0))
    with pytest.raises(ValueError, match="batch_size should be a positive integer value, but got "
                                         "batch_size=-1"):
        DataLoader(ds, batch_size=-1)
    with pytest.raises(TypeError, match="DataLoader: generator should be a dt.Generator or a "
                                        "numpy.random.Generator"):
        DataLoader(ds, generator=42)


@pytest.mark.parametrize("dataset", [make_tensor_dataset(23), ListDataset(23)],
                         ids=["fast-path", "per-sample"])
@pytest.mark.parametrize("taken", [0, 1, 3, 5])
def test_loader_state_dict_resumes_mid_epoch(dataset, taken):
    reference = DataLoader(dataset, batch_size=4, shuffle=True, seed=11)
    epochs = [order(reference) for _ in range(3)]
    loader = DataLoader(dataset, batch_size=4, shuffle=True, seed=11)
    order(loader)  # epoch 0 complete
    batches = iter(loader)  # epoch 1: take `taken` of its 6 batches, then checkpoint
    seen = [i for _ in range(taken) for i in next(batches)[-1].array.tolist()]
    state = loader.state_dict()
    assert state == {"epoch": 1, "batches_yielded": taken, "seed": 11}
    resumed = DataLoader(dataset, batch_size=4, shuffle=True, seed=999)
    resumed.load_state_dict(state)
    assert seen + order(resumed) == epochs[1]
    assert order(resumed) == epochs[2], "after the resumed epoch comes the next one"


def test_loader_state_dict_between_epochs():
    loader = DataLoader(make_tensor_dataset(8), batch_size=3, shuffle=True, seed=2)
    assert loader.state_dict() == {"epoch": 0, "batches_yielded": 0, "seed": 2}
    order(loader)
    assert loader.state_dict() == {"epoch": 1, "batches_yielded": 0, "seed": 2}


def test_loader_state_dict_includes_sampler_state():
    ds = make_tensor_dataset(12)
    sampler = DistributedSampler(ds, num_replicas=3, rank=0, seed=4)
    sampler.set_epoch(5)
    loader = DataLoader(ds, batch_size=2, sampler=sampler)
    expected = order(loader)
    state = loader.state_dict()
    assert state["sampler"] == {"epoch": 5, "seed": 4}
    fresh_sampler = DistributedSampler(ds, num_replicas=3, rank=0, seed=4)
    fresh = DataLoader(ds, batch_size=2, sampler=fresh_sampler)
    fresh.load_state_dict(state)
    assert fresh_sampler.epoch == 5 and order(fresh) == expected


# ---------------------------------------------------------------- collate
def test_default_collate_structures():
    Point = collections.namedtuple("Point", ["x", "y"])
    batch = default_collate([{"a": 1.5, "b": (np.zeros(2, np.int32), 3)},
                             {"a": 2.5, "b": (np.ones(2, np.int32), 4)}])
    assert batch["a"].dtype == np.float32 and batch["a"].array.tolist() == [1.5, 2.5]
    assert isinstance(batch["b"], list) and batch["b"][0].shape == (2, 2)
    assert batch["b"][0].dtype == np.int32 and batch["b"][1].dtype == np.int64
    points = default_collate([Point(1, True), Point(2, False)])
    assert isinstance(points, Point) and points.y.dtype == np.bool_
    assert default_collate(["a", "b"]) == ["a", "b"]
    stacked = default_collate([Tensor(np.zeros(3)), Tensor(np.ones(3))])
    assert stacked.shape == (2, 3)
    assert default_collate([np.float64(1.0), np.float64(2.0)]).dtype == np.float64


def test_default_collate_errors():
    with pytest.raises(RuntimeError, match="each element in list of batch should be of equal "
                                           r"size, got sizes \[1, 2\]"):
        default_collate([[1], [1, 2]])
    with pytest.raises(TypeError, match="batch must contain tensors, numpy arrays, numbers, dicts "
                                        "or lists; found object"):
        default_collate([object()])


# ---------------------------------------------------------------- transforms
def test_to_tensor():
    hw = transforms.ToTensor()(np.full((4, 5), 255, np.uint8))
    assert isinstance(hw, Tensor) and hw.shape == (1, 4, 5) and hw.dtype == np.float32
    assert hw.array.max() == 1.0
    hwc = np.arange(24, dtype=np.uint8).reshape(2, 4, 3)
    chw = transforms.ToTensor()(hwc)
    assert chw.shape == (3, 2, 4) and chw.array[2, 1, 3] == np.float32(hwc[1, 3, 2] / 255)
    floats = transforms.ToTensor()(np.full((2, 2), 3.0))
    assert floats.dtype == np.float64 and floats.array.max() == 3.0, "torchvision: no scaling"
    with pytest.raises(ValueError, match=r"pic should be 2 or 3 dimensional .* got shape \(3,\)"):
        transforms.ToTensor()(np.zeros(3, np.uint8))


def test_to_tensor_matches_torchvision_layout():
    torch = pytest.importorskip("torch")
    hwc = np.random.default_rng(0).integers(0, 256, (5, 6, 3), dtype=np.uint8)
    expected = torch.from_numpy(hwc).permute(2, 0, 1).float().div(255).numpy()
    np.testing.assert_allclose(transforms.ToTensor()(hwc).array, expected, rtol=1e-6)


def test_normalize_compose_lambda():
    t = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.5, 0.0), (0.5, 2.0)),
                            transforms.Lambda(lambda x: x * 2)])
    out = t(np.full((2, 2, 2), 255, np.uint8))
    assert isinstance(out, Tensor) and out.array[0].max() == 2.0 and out.array[1].max() == 1.0
    plain = transforms.Normalize(0.5, 0.25)(np.ones((1, 2, 2), np.float32))
    assert isinstance(plain, np.ndarray) and plain.dtype == np.float32 and plain.max() == 2.0
    with pytest.raises(ValueError, match="std should be non-zero"):
        transforms.Normalize((0.5,), (0.0,))
    with pytest.raises(ValueError, match=r"mean has 2 values but the input has 3 channels"):
        transforms.Normalize((0.5, 0.5), (1.0,))(np.zeros((3, 2, 2), np.float32))
    with pytest.raises(TypeError, match="input should be a float array, got dtype uint8"):
        transforms.Normalize((0.5,), (1.0,))(np.zeros((1, 2, 2), np.uint8))
    with pytest.raises(TypeError, match="Lambda: argument should be callable, got int"):
        transforms.Lambda(3)


def test_pad():
    x = np.ones((1, 2, 3))
    assert transforms.Pad(2)(x).shape == (1, 6, 7)
    assert transforms.Pad((1, 0))(x).shape == (1, 2, 5)
    out = transforms.Pad((1, 2, 3, 4), fill=7)(x)
    assert out.shape == (1, 8, 7) and out[0, 0, 0] == 7 and out[0, 2, 1] == 1
    assert transforms.Pad(1, padding_mode="edge")(Tensor(x)).array.min() == 1
    with pytest.raises(ValueError, match="padding should be a non-negative int or a sequence of "
                                         r"2 or 4 non-negative ints, got \(1, 2, 3\)"):
        transforms.Pad((1, 2, 3))
    with pytest.raises(ValueError, match="padding_mode should be one of"):
        transforms.Pad(1, padding_mode="wrap")


@pytest.mark.parametrize("size", [(24, 24), (5, 11), (8, 8), (3, 17)])
@pytest.mark.parametrize("mode", ["bilinear", "nearest"])
def test_resize_matches_torch_interpolate(size, mode):
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(0).random((2, 3, 8, 8)).astype(np.float32)
    ours = transforms.Resize(size, interpolation=mode)(x)
    kwargs = {"align_corners": False} if mode == "bilinear" else {}
    theirs = torch.nn.functional.interpolate(torch.from_numpy(x), size=size, mode=mode, **kwargs)
    assert ours.dtype == np.float32 and ours.shape == tuple(theirs.shape)
    np.testing.assert_allclose(ours, theirs.numpy(), atol=1e-6, rtol=1e-5)


def test_resize_int_size_and_dtypes():
    assert transforms.Resize(24)(np.ones((1, 8, 16), np.float32)).shape == (1, 24, 48)
    assert transforms.Resize(24)(np.ones((16, 8), np.float32)).shape == (48, 24)
    up = transforms.Resize((4, 4))(np.full((2, 2), 200, np.uint8))
    assert up.dtype == np.uint8 and up.max() == 200
    assert isinstance(transforms.Resize(4)(Tensor(np.ones((2, 2)))), Tensor)
    with pytest.raises(ValueError, match="interpolation should be 'bilinear' or 'nearest', got "
                                         "'bicubic'"):
        transforms.Resize(4, interpolation="bicubic")
    with pytest.raises(ValueError, match=r"size should be a positive int or a pair of positive "
                                         r"ints, got \(0, 3\)"):
        transforms.Resize((0, 3))


def test_data_does_not_import_mpi_or_upper_layers():
    forbidden = ("mpi4py", "cupy", "disttrain.distributed", "disttrain.nn", "disttrain.optim")
    root = Path(__file__).resolve().parents[2] / "disttrain" / "data"
    for path in root.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            for name in names:
                assert not name.startswith(forbidden), f"{path} imports {name}"


def test_weighted_random_sampler():
    from disttrain.data import WeightedRandomSampler

    counts = np.bincount(list(WeightedRandomSampler([1.0, 3.0, 0.0], 4000,
                                                    generator=np.random.default_rng(0))),
                         minlength=3)
    assert counts[2] == 0 and 0.7 < counts[1] / 4000 < 0.8
    unique = list(WeightedRandomSampler(Tensor(np.array([1.0, 2.0, 3.0])), 3, replacement=False,
                                        generator=np.random.default_rng(1)))
    assert sorted(unique) == [0, 1, 2] and len(WeightedRandomSampler([1, 1], 5)) == 5
    for args, kwargs, match in [
        (([1, 2], 0), {}, r"num_samples should be a positive integer value, but got "
                          r"num_samples=0"),
        (([1, 2], 2.0), {}, r"num_samples=2\.0"),
        (([[1, 2]], 2), {}, r"weights should be a 1d sequence but given weights have shape "
                            r"\(1, 2\)"),
        (([1, 2], 2), {"replacement": 1}, r"replacement should be a boolean value"),
        (([-1, 2], 2), {}, r"weights should be finite, non-negative and not all zero"),
        (([1, 0, 2], 3), {"replacement": False}, r"cannot draw num_samples=3 without "
                                                 r"replacement from 2 non-zero weights"),
    ]:
        with pytest.raises(ValueError, match=match):
            WeightedRandomSampler(*args, **kwargs)
