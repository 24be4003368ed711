"""DataLoader(num_workers > 0): background worker threads, torch's worker arguments."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from disttrain.data import (
    ChainDataset,
    DataLoader,
    Dataset,
    IterableDataset,
    TensorDataset,
    transforms,
)
from disttrain.data.sampler import DistributedSampler
from disttrain.utils.data import get_worker_info


class Recording(Dataset):
    """A per-sample dataset that records which thread loaded each index."""

    def __init__(self, n: int, fail_at: int | None = None, delay_s: float = 0.0) -> None:
        self.n, self.fail_at, self.delay_s = n, fail_at, delay_s
        self.threads: dict[int, str] = {}
        self.infos: dict[int, object] = {}

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int):
        if i == self.fail_at:
            raise ValueError(f"bad sample {i}")
        time.sleep(self.delay_s)
        self.threads[i] = threading.current_thread().name
        self.infos[i] = get_worker_info()
        return np.full((2,), i, np.float32), i


def batches_of(loader) -> list[list[int]]:
    return [batch[-1].array.tolist() for batch in loader]


def live_workers() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("DataLoader worker")]


@pytest.mark.parametrize("shuffle", [False, True])
@pytest.mark.parametrize("make", [lambda: Recording(23),
                                  lambda: TensorDataset(np.arange(23).reshape(23, 1),
                                                        np.arange(23))])
def test_workers_give_the_batches_of_num_workers_0(make, shuffle):
    def run(num_workers):
        loader = DataLoader(make(), batch_size=4, shuffle=shuffle, seed=5,
                            num_workers=num_workers)
        return [batches_of(loader) for _ in range(2)]  # two epochs

    expected = run(0)
    assert run(1) == expected and run(3) == expected
    assert expected[0] != expected[1] if shuffle else expected[0] == expected[1]


def test_samples_are_loaded_in_worker_threads_with_worker_info():
    ds = Recording(12)
    loader = DataLoader(ds, batch_size=2, num_workers=3, seed=1)
    assert batches_of(loader) == [[i, i + 1] for i in range(0, 12, 2)]
    # batch b goes to worker b % 3
    assert {ds.threads[i] for i in range(12)} == {f"DataLoader worker {w}" for w in range(3)}
    assert ds.threads[2] == "DataLoader worker 1" and ds.threads[6] == "DataLoader worker 0"
    info = ds.infos[4]  # batch 2, worker 2
    assert (info.id, info.num_workers, info.dataset) == (2, 3, ds)
    assert ds.infos[0].seed + 2 == info.seed
    assert get_worker_info() is None  # main thread
    assert live_workers() == []  # shut down after the epoch


def test_worker_init_fn_once_per_worker():
    calls, lock = [], threading.Lock()

    def init(worker_id):
        info = get_worker_info()
        with lock:
            calls.append((worker_id, info.id, threading.current_thread().name))

    loader = DataLoader(Recording(20), batch_size=2, num_workers=2, worker_init_fn=init)
    assert len(batches_of(loader)) == 10
    assert sorted(calls) == [(0, 0, "DataLoader worker 0"), (1, 1, "DataLoader worker 1")]


def test_worker_exception_reraised_naming_worker_and_sample():
    loader = DataLoader(Recording(10, fail_at=5), batch_size=2, num_workers=2)
    with pytest.raises(ValueError, match=r"Caught ValueError in DataLoader worker 0 while loading "
                                         r"sample index 5\.\nOriginal Traceback(.|\n)*bad sample"):
        batches_of(loader)
    assert live_workers() == []


def test_worker_init_fn_exception_and_key_error():
    def init(worker_id):
        raise KeyError("no such key")

    loader = DataLoader(Recording(4), batch_size=2, num_workers=1, worker_init_fn=init)
    with pytest.raises(KeyError, match=r"Caught KeyError in DataLoader worker 0 in worker_init_fn"):
        batches_of(loader)


def test_collate_failure_names_the_batch():
    def collate(samples):
        raise TypeError("cannot collate")

    loader = DataLoader(Recording(4), batch_size=2, num_workers=1, collate_fn=collate)
    with pytest.raises(TypeError, match=r"worker 0 while loading the batch of sample indices "
                                        r"\[0, 1\]"):
        batches_of(loader)


def test_break_shuts_workers_down_without_hanging():
    loader = DataLoader(Recording(400, delay_s=0.001), batch_size=2, num_workers=2,
                        prefetch_factor=4)
    for _ in loader:
        break
    assert live_workers() == []
    assert len(batches_of(loader)) == 200  # the next epoch starts afresh


def test_persistent_workers_survive_epochs_and_early_break():
    calls = []
    loader = DataLoader(Recording(30), batch_size=4, num_workers=2, persistent_workers=True,
                        worker_init_fn=calls.append, shuffle=True, seed=3)
    reference = DataLoader(Recording(30), batch_size=4, shuffle=True, seed=3)
    first = batches_of(loader)
    threads = live_workers()
    assert sorted(threads) == ["DataLoader worker 0", "DataLoader worker 1"]
    for _ in loader:  # epoch 1 abandoned after one batch
        break
    third = batches_of(loader)
    ref = [batches_of(reference) for _ in range(3)]
    assert first == ref[0] and third == ref[2] and sorted(calls) == [0, 1]
    assert sorted(live_workers()) == threads
    del loader
    assert live_workers() == []


def test_prefetch_bounds_the_batches_in_flight():
    ds = Recording(100)
    loader = DataLoader(ds, batch_size=1, num_workers=2, prefetch_factor=3)
    iterator = iter(loader)
    next(iterator)
    time.sleep(0.2)
    assert len(ds.threads) <= 1 + 2 * 3  # the one yielded + prefetch_factor * num_workers
    iterator.close()


def test_timeout_raises():
    loader = DataLoader(Recording(4, delay_s=0.5), batch_size=1, num_workers=1, timeout=0.05)
    with pytest.raises(RuntimeError, match=r"DataLoader timed out after 0.05 seconds"):
        batches_of(loader)


def test_worker_seeds_follow_the_generator():
    def seeds(**kwargs):
        ds = Recording(4)
        batches_of(DataLoader(ds, batch_size=2, num_workers=2, **kwargs))
        return ds.infos[0].seed, ds.infos[2].seed

    assert seeds(seed=1) == seeds(seed=1) != seeds(seed=2)
    assert seeds(seed=1)[1] == seeds(seed=1)[0] + 1


def test_transforms_and_distributed_sampler_with_workers():
    images = np.random.default_rng(0).integers(0, 256, (10, 28, 28), dtype=np.uint8)

    class Images(Dataset):
        def __len__(self):
            return 10

        def __getitem__(self, i):
            return transforms.ToTensor()(images[i]), i

    sampler = DistributedSampler(range(10), num_replicas=2, rank=1, seed=4)
    got = [x.array for x, _ in DataLoader(Images(), batch_size=3, sampler=sampler,
                                          num_workers=2)]
    expected = [x.array for x, _ in DataLoader(Images(), batch_size=3, sampler=sampler)]
    assert [a.shape for a in got] == [(3, 1, 28, 28), (2, 1, 28, 28)]
    for a, b in zip(got, expected, strict=True):
        np.testing.assert_array_equal(a, b)


def test_state_dict_resume_with_workers():
    loader = DataLoader(Recording(20), batch_size=3, shuffle=True, seed=7, num_workers=2)
    iterator = iter(loader)
    taken = [next(iterator)[-1].array.tolist() for _ in range(2)]
    state = loader.state_dict()
    iterator.close()
    resumed = DataLoader(Recording(20), batch_size=3, shuffle=True, seed=0, num_workers=2)
    resumed.load_state_dict(state)
    full = batches_of(DataLoader(Recording(20), batch_size=3, shuffle=True, seed=7))
    assert taken + batches_of(resumed) == full


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(num_workers=-1), ValueError, r"num_workers option should be non-negative; use "
                                       r"num_workers=0 .* \(got -1\)"),
    (dict(num_workers=1.5), TypeError, r"DataLoader: num_workers must be an int, got float"),
    (dict(timeout=-1), ValueError, r"timeout option should be non-negative, got -1"),
    (dict(prefetch_factor=2), ValueError, r"prefetch_factor option could only be specified "
                                          r"with num_workers > 0"),
    (dict(num_workers=1, prefetch_factor=-1), ValueError,
     r"prefetch_factor option should be non-negative, got -1"),
    (dict(persistent_workers=True), ValueError,
     r"persistent_workers option needs num_workers > 0"),
    (dict(multiprocessing_context="spawn"), ValueError,
     r"multiprocessing_context can only be used with num_workers > 0, but got num_workers=0"),
    (dict(num_workers=1, multiprocessing_context="nope"), ValueError,
     r"multiprocessing_context option should specify a valid start method in .*'nope'"),
])
def test_worker_argument_errors_as_torch(kwargs, error, match):
    with pytest.raises(error, match=match):
        DataLoader(Recording(4), **kwargs)


def test_torch_arguments_accepted_and_positional_order():
    ds = Recording(6)
    # torch's positional order: dataset, batch_size, shuffle, sampler, batch_sampler,
    # num_workers, collate_fn, pin_memory, drop_last, timeout, worker_init_fn, mp context, gen
    loader = DataLoader(ds, 4, False, None, None, 1, None, False, True, 5.0, None, "spawn",
                        None, prefetch_factor=1, persistent_workers=False,
                        pin_memory_device="", in_order=False)
    assert (loader.num_workers, loader.drop_last, loader.timeout) == (1, True, 5.0)
    assert loader.prefetch_factor == 1 and loader.multiprocessing_context == "spawn"
    assert batches_of(loader) == [[0, 1, 2, 3]]
    assert DataLoader(ds, num_workers=2).prefetch_factor == 2


def test_pin_memory_warns_without_accelerator_as_torch():
    loader = DataLoader(Recording(4), batch_size=2, pin_memory=True)
    assert loader.pin_memory is True
    with pytest.warns(UserWarning, match="'pin_memory' argument is set as true but no "
                                         "accelerator is found"):
        assert batches_of(loader) == [[0, 1], [2, 3]]


# ---------------------------------------------------------------- iterable-style datasets
class Stream(IterableDataset):
    """0..n-1; with shard=True each worker yields its share (torch's get_worker_info idiom)."""

    def __init__(self, n: int, shard: bool = False, fail_at: int | None = None,
                 has_len: bool = True) -> None:
        self.n, self.shard, self.fail_at, self.has_len = n, shard, fail_at, has_len

    def __iter__(self):
        info = get_worker_info()
        start, step = (info.id, info.num_workers) if self.shard and info else (0, 1)
        for i in range(start, self.n, step):
            if i == self.fail_at:
                raise ValueError(f"stream broke at {i}")
            yield np.float32(i), i

    def __len__(self) -> int:
        if not self.has_len:
            raise TypeError("Stream has no len()")
        return self.n


def test_iterable_dataset_main_thread_batches_and_len():
    assert batches_of(DataLoader(Stream(7), batch_size=3)) == [[0, 1, 2], [3, 4, 5], [6]]
    assert batches_of(DataLoader(Stream(7), batch_size=3, drop_last=True)) == [[0, 1, 2],
                                                                               [3, 4, 5]]
    assert len(DataLoader(Stream(7), batch_size=3)) == 3
    assert len(DataLoader(Stream(7), batch_size=3, drop_last=True)) == 2
    with pytest.raises(TypeError, match="Stream has no len"):
        len(DataLoader(Stream(7, has_len=False), batch_size=3))
    chained = DataLoader(Stream(2) + Stream(3), batch_size=5)
    assert batches_of(chained) == [[0, 1, 0, 1, 2]] and len(ChainDataset([Stream(2)])) == 2


def test_iterable_dataset_sharded_workers_round_robin():
    loader = DataLoader(Stream(10, shard=True), batch_size=2, num_workers=2)
    # worker 0 streams 0, 2, 4, ...; worker 1 streams 1, 3, 5, ...; batches alternate, as torch
    assert batches_of(loader) == [[0, 2], [1, 3], [4, 6], [5, 7], [8], [9]]
    uneven = DataLoader(Stream(9, shard=True), batch_size=2, num_workers=3, drop_last=True)
    assert batches_of(uneven) == [[0, 3], [1, 4], [2, 5]]  # each worker drops its own tail
    assert live_workers() == []


def test_iterable_dataset_unsharded_workers_replicate_the_stream_as_torch():
    got = batches_of(DataLoader(Stream(3), batch_size=3, num_workers=2))
    assert got == [[0, 1, 2], [0, 1, 2]]


def test_iterable_dataset_with_persistent_workers_restarts_each_epoch():
    loader = DataLoader(Stream(6, shard=True), batch_size=2, num_workers=2,
                        persistent_workers=True)
    first = batches_of(loader)
    for _ in loader:
        break
    assert batches_of(loader) == first == [[0, 2], [1, 3], [4], [5]]


def test_iterable_dataset_errors():
    for kwargs, name in [({"shuffle": True}, "shuffle"), ({"sampler": [0, 1]}, "sampler"),
                         ({"batch_sampler": [[0]]}, "batch_sampler")]:
        with pytest.raises(ValueError, match=f"DataLoader with IterableDataset: expected "
                                             f"unspecified {name} option, but got {name}="):
            DataLoader(Stream(4), **kwargs)
    loader = DataLoader(Stream(8, shard=True, fail_at=5), batch_size=2, num_workers=2)
    with pytest.raises(ValueError, match=r"Caught ValueError in DataLoader worker 1 while "
                                         r"iterating the dataset(.|\n)*stream broke at 5"):
        batches_of(loader)
    with pytest.raises(TypeError, match=r"ChainDataset only supports IterableDataset, but "
                                        r"datasets\[1\] is a TensorDataset"):
        list(ChainDataset([Stream(1), TensorDataset(np.arange(2))]))


@pytest.mark.parametrize("num_workers", [0, 2])
def test_iterable_dataset_state_dict_resume(num_workers):
    loader = DataLoader(Stream(10, shard=True), batch_size=2, num_workers=num_workers)
    full = batches_of(loader)
    iterator = iter(loader)
    taken = [next(iterator)[-1].array.tolist() for _ in range(2)]
    state = loader.state_dict()
    iterator.close()
    resumed = DataLoader(Stream(10, shard=True), batch_size=2, num_workers=num_workers)
    resumed.load_state_dict(state)
    assert taken + batches_of(resumed) == full


def test_iterable_dataset_without_len_works_with_list_and_loader():
    class Bare(IterableDataset):
        def __iter__(self):
            return iter(range(3))

    assert list(Bare()) == [0, 1, 2] and list(ChainDataset([Bare(), Bare()])) == [0, 1, 2] * 2
    with pytest.raises(TypeError, match="object of type Bare has no len"):
        len(DataLoader(Bare(), batch_size=2))
    assert [b.array.tolist() for b in DataLoader(Bare(), batch_size=2)] == [[0, 1], [2]]
