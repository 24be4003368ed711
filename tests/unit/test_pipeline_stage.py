"""The pipeline runtime's pieces without MPI: header and tag encoding, a PipelineStage's
messages and shape checks over an in-process mailbox, and a one-stage ScheduleExecutor."""

from __future__ import annotations

import collections
import types

import numpy
import pytest

import disttrain as dt
import disttrain.nn as nn
from disttrain.distributed.pipeline.executor import ScheduleExecutor, split_microbatches
from disttrain.distributed.pipeline.schedule import make_schedule
from disttrain.distributed.pipeline.stage import (
    BACKWARD,
    FORWARD,
    HEADER_LEN,
    MAX_NDIM,
    PipelineStage,
    decode_header,
    encode_header,
    message_tag,
)


class _FakeComm:
    """Point-to-point over a shared dict of queues: sends never block, receives must find
    their message already there (tests order them as a schedule would)."""

    def __init__(self, rank: int, size: int, mailbox: dict):
        self.rank, self.size, self.mailbox = rank, size, mailbox

    def send(self, array, dest: int, tag: int = 0) -> None:
        assert array.flags.c_contiguous  # NOTE: what MPI's buffer interface needs
        self.mailbox[(self.rank, dest, tag)].append(array.copy())

    def recv_(self, array, source: int, tag: int = 0):
        message = self.mailbox[(source, self.rank, tag)].popleft()
        assert message.shape == array.shape and message.dtype == array.dtype
        array[...] = message
        return array

    def bcast_(self, array, root: int = 0):
        assert self.size == 1 and root == 0
        return array


def _stages(n: int = 2) -> list[PipelineStage]:
    mailbox = collections.defaultdict(collections.deque)
    return [PipelineStage(nn.Identity(), s, n,
                          _FakeComm(s, n, mailbox)) for s in range(n)]


# ---------------------------------------------------------------- header and tags
def test_tags_are_distinct_per_microbatch_direction_and_part():
    keys = [(m, d, p) for m in range(50) for d in (FORWARD, BACKWARD) for p in (False, True)]
    tags = [message_tag(*key) for key in keys]
    assert len(set(tags)) == len(keys) and min(tags) == 0


@pytest.mark.parametrize("dtype", ["float32", "float64", "float16", "int64", "int32", "uint8",
                                   "bool"])
@pytest.mark.parametrize("shape", [(), (5,), (5, 8), (0, 3), (1, 2, 1, 2, 1, 2, 3)])
def test_header_round_trip(dtype, shape):
    header = encode_header(7, BACKWARD, numpy.zeros(shape, dtype))
    assert header.shape == (HEADER_LEN,) and header.dtype == numpy.int64
    assert decode_header(header) == (7, BACKWARD, dtype, shape)


def test_decode_rejects_what_is_not_a_header():
    good = encode_header(0, FORWARD, numpy.zeros((2, 3)))
    for index, value in [(0, 12345), (3, 99), (3, -1), (4, MAX_NDIM + 1)]:
        bad = good.copy()
        bad[index] = value
        assert decode_header(bad) is None


def test_encode_errors_name_the_problem():
    with pytest.raises(TypeError, match=r"cannot send a gradient of dtype complex128 between "
                                        r"stages \(micro-batch 3\); supported dtypes"):
        encode_header(3, BACKWARD, numpy.zeros(2, complex))
    with pytest.raises(ValueError, match=r"activation with 8 dimensions .* at most 7"):
        encode_header(0, FORWARD, numpy.zeros((1,) * 8))


# ---------------------------------------------------------------- PipelineStage
def test_stage_must_match_its_comm():
    comm = _FakeComm(1, 2, {})
    with pytest.raises(ValueError, match=r"PipelineStage \(rank 1\): stage_index=0 and "
                                         r"num_stages=2 must equal the rank and size of comm"):
        PipelineStage(nn.ReLU(), 0, 2, comm)
    with pytest.raises(ValueError, match=r"num_stages=3 must equal"):
        PipelineStage(nn.ReLU(), 1, 3, comm)


def test_neighbours():
    first, middle, last = _stages(3)
    assert (first.prev_stage, first.next_stage, first.is_first_stage) == (None, 1, True)
    assert (middle.prev_stage, middle.next_stage) == (0, 2)
    assert (last.prev_stage, last.next_stage, last.is_last_stage) == (1, None, True)


def test_activation_and_gradient_round_trip():
    first, second = _stages()
    activation = numpy.arange(12.0).reshape(3, 4).T  # NOTE: not C-contiguous
    first.send_activation(2, activation)
    received = second.recv_activation(2, batch_size=4)
    assert numpy.array_equal(received, activation) and received.flags.c_contiguous
    grad = numpy.ones((4, 3), numpy.float32)
    second.send_grad(2, grad)
    received = first.recv_grad(2, expected_shape=(4, 3))
    assert received.dtype == numpy.float32 and numpy.array_equal(received, grad)


def test_empty_payload_sends_only_the_header():
    first, second = _stages()
    first.send_activation(0, numpy.zeros((0, 5)))
    assert sum(len(q) for q in first.comm.mailbox.values()) == 1
    assert second.recv_activation(0, batch_size=0).shape == (0, 5)


def test_batch_size_mismatch_names_stage_microbatch_and_shapes():
    first, second = _stages()
    first.send_activation(0, numpy.zeros((6, 8)))
    with pytest.raises(ValueError, match=r"^Pipeline stage 1, micro-batch 0: expected an "
                                         r"activation with batch size 5 from stage 0, received "
                                         r"shape \(6, 8\)$"):
        second.recv_activation(0, batch_size=5)


def test_gradient_shape_mismatch_names_stage_microbatch_and_shapes():
    first, second = _stages()
    second.send_grad(2, numpy.zeros((4, 2)))
    with pytest.raises(ValueError, match=r"^Pipeline stage 0, micro-batch 2: expected a "
                                         r"gradient of shape \(4, 3\) from stage 1, received "
                                         r"shape \(4, 2\) \(float64\)$"):
        first.recv_grad(2, expected_shape=(4, 3))


def test_a_header_for_another_microbatch_is_an_error():
    first, second = _stages()
    wrong = encode_header(5, FORWARD, numpy.zeros(3))
    first.comm.send(wrong, 1, message_tag(1, FORWARD, payload=False))
    with pytest.raises(RuntimeError, match=r"Pipeline stage 1: expected the activation of "
                                           r"micro-batch 1 from stage 0, got header "
                                           r"\[1346981957, 5, 0, 1, 1\]"):
        second.recv_activation(1, batch_size=3)


def test_broadcast_from_last_on_one_stage():
    (only,) = _stages(1)
    assert only.broadcast_from_last(2.5) == 2.5


# ---------------------------------------------------------------- executor
def test_split_microbatches():
    x = dt.tensor(numpy.arange(10.0))
    parts = split_microbatches(x, 4, stage_index=0)
    assert [p.tolist() for p in parts] == [[0, 1], [2, 3, 4], [5, 6], [7, 8, 9]]
    with pytest.raises(ValueError, match=r"Pipeline \(stage 2\): a batch of 3 cannot be split "
                                         r"into 4 micro-batches"):
        split_microbatches(x[:3], 4, stage_index=2)


def _one_stage_executor(schedule: str, n_microbatches: int):
    dt.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 5, dtype="float64"), nn.Tanh(),
                          nn.Linear(5, 3, dtype="float64"))
    stage = PipelineStage(model, 0, 1, _FakeComm(0, 1, {}))
    return model, ScheduleExecutor(stage, make_schedule(schedule, 1, n_microbatches)[0])


@pytest.mark.parametrize("schedule", ["gpipe", "1f1b"])
def test_one_stage_executor_equals_the_full_batch(schedule):
    model, executor = _one_stage_executor(schedule, 3)
    rng = numpy.random.default_rng(0)
    x, y = dt.tensor(rng.standard_normal((7, 4))), dt.tensor(rng.integers(0, 3, 7))
    loss_fn = nn.CrossEntropyLoss()
    loss = executor.step(split_microbatches(x, 3, 0), split_microbatches(y, 3, 0), loss_fn)
    grads = [p.grad.array.copy() for p in model.parameters()]
    model.zero_grad()
    reference = loss_fn(model(x), y)
    reference.backward()
    assert abs(loss - reference.item()) <= 1e-12
    assert all(numpy.abs(g - p.grad.array).max() <= 1e-12
               for g, p in zip(grads, model.parameters()))
    stats = executor.stats
    assert list(stats) == ["stage", "step_s", "compute_s", "wait_s", "send_s", "peak_live",
                           "idle_fraction"]
    assert stats["peak_live"] == (3 if schedule == "gpipe" else 1)
    assert stats["wait_s"] == stats["send_s"] == 0.0 and 0 < stats["compute_s"] <= stats["step_s"]


def test_unknown_action_kind_is_an_error():
    _, executor = _one_stage_executor("gpipe", 1)
    # NOTE: Action itself refuses unknown kinds; a hand-made list can still hold one
    executor.actions = [types.SimpleNamespace(kind="W", stage=0, microbatch=0)]
    x, y = dt.tensor(numpy.zeros((2, 4))), dt.tensor(numpy.zeros(2, numpy.int64))
    with pytest.raises(ValueError, match=r"Pipeline: unknown action kind 'W' in namespace"):
        executor.step([x], [y], nn.CrossEntropyLoss())


def test_pipeline_still_imports_from_its_old_module():
    from disttrain.distributed.pipeline import pipeline, stage

    assert stage.Pipeline is pipeline.Pipeline
    with pytest.raises(AttributeError, match=r"has no attribute 'Nope'"):
        stage.Nope  # noqa: B018
