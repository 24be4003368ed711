"""Background loading for DataLoader(num_workers > 0): worker threads and get_worker_info.

Workers are threads, not the processes torch forks. NOTE: why threads: under MPI, fork() of a
rank that has initialised MPI (and InfiniBand or CUDA) is unsafe (Open MPI warns, and the child
may corrupt or hang the parent's network state), and spawned processes would need the dataset
pickled, which disttrain never does. Threads share the dataset without copies; numpy, file
reads and gzip release the GIL for most of their per-batch work, and the training step's
BLAS calls release it too, so loading overlaps training. Pure-Python per-sample code is still
serialised by the GIL. Imports numpy and disttrain.tensor only.
"""

from __future__ import annotations

import dataclasses
import itertools
import queue
import threading
import traceback
from collections.abc import Callable, Iterator

import numpy as np

from disttrain.tensor import Tensor

_local = threading.local()


@dataclasses.dataclass(frozen=True)
class WorkerInfo:
    """What `get_worker_info()` returns inside a worker (torch's WorkerInfo fields).

    Attributes:
        id: this worker's index, in [0, num_workers).
        num_workers: the DataLoader's num_workers.
        seed: a per-worker seed (base seed of the epoch + id), for a worker-local Generator.
        dataset: the loader's dataset (the same object in every worker: workers are threads).
    """

    id: int
    num_workers: int
    seed: int
    dataset: object


def get_worker_info() -> WorkerInfo | None:
    """This thread's WorkerInfo inside a DataLoader worker; None in the main thread.

    Workers are threads sharing the process's global RNGs, so a transform that needs its own
    randomness should draw from `dt.Generator().manual_seed(get_worker_info().seed)`.

    Example:
        >>> get_worker_info() is None  # not in a worker
        True
    """
    return getattr(_local, "info", None)


def gather(source: tuple, indices) -> list[Tensor]:
    """A batch by fancy indexing: `source` is (arrays, index map or None) from the dataset."""
    arrays, index_map = source
    indices = np.asarray(indices, dtype=np.intp)
    if index_map is not None:
        indices = index_map[indices]
    return [Tensor(a[indices]) for a in arrays]


class _KeyErrorMessage(str):
    # NOTE: KeyError's str() is the repr of its argument; this keeps the traceback readable.
    def __repr__(self) -> str:
        return self


class _Failure:
    """An exception raised in a worker, re-raised in the main thread (torch's ExceptionWrapper)."""

    def __init__(self, error: Exception, where: str) -> None:
        self.error, self.where = error, where
        self.text = "".join(traceback.format_exception(error))

    def reraise(self):
        kind = type(self.error)
        message = f"Caught {kind.__name__} {self.where}.\nOriginal {self.text}"
        if kind is KeyError:
            message = _KeyErrorMessage(message)
        try:
            error = kind(message)
        except Exception:
            raise RuntimeError(message) from self.error
        raise error from self.error


def next_batch(iterator: Iterator, batch_size: int, drop_last: bool, collate_fn: Callable):
    """The next collated batch of an iterable-style dataset's iterator, or None at its end."""
    samples = list(itertools.islice(iterator, batch_size))
    if not samples or (drop_last and len(samples) < batch_size):
        return None
    return collate_fn(samples)


_EXHAUSTED = object()  # a worker's iterable-style stream has ended


class WorkerPool:
    """`num_workers` threads loading batches; `run` yields them in task order.

    A task is a list of indices (map-style) or None: "the next batch of your own
    `iter(dataset)`" (iterable-style; each worker iterates the dataset itself, as in torch).
    Tasks go round-robin to the workers whose stream has not ended (batch i to worker
    i % num_workers for map-style); at most `prefetch` tasks are in flight. Each `run` is a
    generation: tasks and results of an abandoned earlier run are dropped.
    """

    def __init__(self, dataset, collate_fn: Callable, num_workers: int, prefetch: int,
                 worker_init_fn: Callable | None, base_seed: int, timeout: float,
                 batch_size: int | None = None, drop_last: bool = False) -> None:
        self._dataset, self._collate_fn, self._source = dataset, collate_fn, None
        self._batch_size, self._drop_last = batch_size, drop_last
        self._prefetch, self._timeout = max(prefetch, 1), timeout
        self._generation = 0
        self._tasks = [queue.SimpleQueue() for _ in range(num_workers)]
        self._results: queue.SimpleQueue = queue.SimpleQueue()
        self._threads = []
        for worker_id in range(num_workers):
            info = WorkerInfo(worker_id, num_workers, (base_seed + worker_id) % 2**64, dataset)
            thread = threading.Thread(target=self._loop, args=(info, worker_init_fn),
                                      name=f"DataLoader worker {worker_id}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def _loop(self, info: WorkerInfo, worker_init_fn: Callable | None) -> None:
        _local.info, init_failure, stream = info, None, {}
        if worker_init_fn is not None:
            try:
                worker_init_fn(info.id)
            except BaseException as e:  # NOTE: anything, or the main thread waits forever
                init_failure = _Failure(e, f"in DataLoader worker {info.id} in worker_init_fn")
        while (task := self._tasks[info.id].get()) is not None:
            generation, batch_index, indices = task
            if generation != self._generation:
                continue  # NOTE: left over from an abandoned epoch (a `break`): skip it
            if init_failure is not None:
                result = init_failure
            elif indices is None:
                result = self._next(info.id, stream, generation)
            else:
                result = self._load(info.id, indices)
            self._results.put((generation, batch_index, result))

    def _load(self, worker_id: int, indices):
        index = None
        try:
            if self._source is not None:
                return gather(self._source, indices)
            samples = []
            for index in indices:
                samples.append(self._dataset[index])
            index = None
            return self._collate_fn(samples)
        except BaseException as e:  # NOTE: as in worker_init_fn
            what = (f"sample index {index}" if index is not None
                    else f"the batch of sample indices {list(indices)}")
            return _Failure(e, f"in DataLoader worker {worker_id} while loading {what}")

    def _next(self, worker_id: int, stream: dict, generation: int):
        try:
            if stream.get("generation") != generation:  # NOTE: a new epoch: a new iterator
                stream.update(generation=generation, iterator=iter(self._dataset))
            batch = next_batch(stream["iterator"], self._batch_size, self._drop_last,
                               self._collate_fn)
        except BaseException as e:  # NOTE: as in worker_init_fn
            return _Failure(e, f"in DataLoader worker {worker_id} while iterating the dataset")
        return _EXHAUSTED if batch is None else batch

    def run(self, tasks: Iterator, source: tuple | None) -> Iterator:
        """Yields the batches of `tasks` (index lists, or None each) in order."""
        self._generation += 1
        generation, self._source = self._generation, source
        active, owners, received = list(range(len(self._tasks))), {}, {}
        counter = itertools.count()

        def put() -> bool:
            task = next(tasks, _EXHAUSTED) if active else _EXHAUSTED
            if task is not _EXHAUSTED:
                batch_index = next(counter)
                owners[batch_index] = active[batch_index % len(active)]
                self._tasks[owners[batch_index]].put((generation, batch_index, task))
            return task is not _EXHAUSTED

        in_flight, next_index = sum(put() for _ in range(self._prefetch)), 0
        while in_flight:
            while next_index not in received:
                got_generation, batch_index, result = self._get()
                if got_generation == generation:
                    received[batch_index] = result
            result, owner = received.pop(next_index), owners.pop(next_index)
            next_index, in_flight = next_index + 1, in_flight - 1
            if isinstance(result, _Failure):
                result.reraise()
            if result is _EXHAUSTED and owner in active:
                active.remove(owner)
            in_flight += put()
            if result is not _EXHAUSTED:
                yield result

    def _get(self):
        try:
            return self._results.get(timeout=self._timeout if self._timeout > 0 else None)
        except queue.Empty:
            raise RuntimeError(f"DataLoader timed out after {self._timeout} seconds") from None

    def shutdown(self) -> None:
        """Stops and joins the workers (each finishes the batch it is loading)."""
        self._generation += 1  # NOTE: queued tasks become stale and are skipped
        for tasks in self._tasks:
            tasks.put(None)
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join()
        self._threads = []
