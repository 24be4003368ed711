"""PipelineStage: one stage's sub-module, its neighbours, and the point-to-point wire protocol
(a fixed-size header, then the payload, under tags that name micro-batch and direction) with
the shape checks on what arrives. Executes nothing: executor.py runs schedules against it.
"""

from __future__ import annotations

import numpy

from disttrain.backend import get_array_module
from disttrain.distributed.comm import Communicator
from disttrain.nn import Module

DTYPES = ("float32", "float64", "float16", "int64", "int32", "uint8", "bool")
HEADER_LEN = 12  # magic, microbatch, direction, dtype code, ndim, up to 7 dims
MAX_NDIM = HEADER_LEN - 5
MAGIC = 0x5049_5045  # "PIPE"
FORWARD, BACKWARD = 0, 1
_WHAT = {FORWARD: "activation", BACKWARD: "gradient"}


def message_tag(microbatch: int, direction: int, payload: bool) -> int:
    """The MPI tag of a header (payload=False) or payload message.

    Tags encode micro-batch and direction, so a message meant for another micro-batch or the
    other direction is never matched by mistake.

    Example:
        >>> message_tag(3, BACKWARD, payload=True)
        15
    """
    return (microbatch * 2 + direction) * 2 + int(payload)


def encode_header(microbatch: int, direction: int, array) -> numpy.ndarray:
    """The int64 header announcing `array` (dtype and shape), so the receiver can allocate it.

    Example:
        >>> encode_header(2, FORWARD, numpy.zeros((5, 8))).tolist()[:7]
        [1346981957, 2, 0, 1, 2, 5, 8]
    """
    dtype = str(array.dtype)
    if dtype not in DTYPES:
        raise TypeError(f"Pipeline: cannot send a {_WHAT[direction]} of dtype {dtype} between "
                        f"stages (micro-batch {microbatch}); supported dtypes: {DTYPES}")
    if array.ndim > MAX_NDIM:
        raise ValueError(f"Pipeline: cannot send a {_WHAT[direction]} with {array.ndim} "
                         f"dimensions {array.shape} between stages (micro-batch {microbatch}); "
                         f"at most {MAX_NDIM}: reshape it in the stage's last layer")
    header = numpy.zeros(HEADER_LEN, numpy.int64)
    header[:5] = (MAGIC, microbatch, direction, DTYPES.index(dtype), array.ndim)
    header[5:5 + array.ndim] = array.shape
    return header


def decode_header(header: numpy.ndarray) -> tuple[int, int, str, tuple[int, ...]] | None:
    """(microbatch, direction, dtype, shape) of a header, or None when it is not one.

    Example:
        >>> decode_header(encode_header(2, FORWARD, numpy.zeros((5, 8))))
        (2, 0, 'float64', (5, 8))
    """
    values = header.tolist()  # NOTE: Python ints, one conversion for the whole header
    magic, microbatch, direction, code, ndim = values[:5]
    if magic != MAGIC or not 0 <= code < len(DTYPES) or not 0 <= ndim <= MAX_NDIM:
        return None
    return microbatch, direction, DTYPES[code], tuple(values[5:5 + ndim])


class PipelineStage:
    """One pipeline stage: its sub-module and the messages it exchanges with its neighbours.

    Stage s receives activations from stage s - 1 and gradients from stage s + 1 (the ranks
    of `comm`, whose rank is the stage index). Every message is a header then the payload;
    what arrives is checked against what the schedule expects, and a mismatch raises naming
    the stage, the micro-batch, the expected and the received shape.

    Args:
        submodule: the layers this stage runs.
        stage_index: this stage's position, 0 .. num_stages - 1 (must be `comm.rank`).
        num_stages: number of stages (must be `comm.size`).
        comm: the Communicator linking the stages of one pipeline (a ProcessGrid's pp_comm).

    Example (under `mpirun -n 2`):
        >>> comm = dist.init()  # doctest: +SKIP
        >>> stage = PipelineStage(nn.Linear(4, 4), comm.rank, comm.size, comm)  # doctest: +SKIP
        >>> if stage.is_first_stage:  # doctest: +SKIP
        ...     stage.send_activation(0, numpy.ones((2, 4)))
        ... else:
        ...     x = stage.recv_activation(0, batch_size=2)
    """

    def __init__(self, submodule: Module, stage_index: int, num_stages: int,
                 comm: Communicator):
        if comm.size != num_stages or comm.rank != stage_index:
            raise ValueError(f"PipelineStage (rank {comm.rank}): stage_index={stage_index} and "
                             f"num_stages={num_stages} must equal the rank and size of comm "
                             f"({comm.rank} and {comm.size}); pass the pipeline's own comm")
        self.submodule, self.comm = submodule, comm
        self.stage_index, self.num_stages = stage_index, num_stages

    is_first_stage = property(lambda self: self.stage_index == 0)
    is_last_stage = property(lambda self: self.stage_index == self.num_stages - 1)
    prev_stage = property(lambda self: None if self.is_first_stage else self.stage_index - 1)
    next_stage = property(lambda self: None if self.is_last_stage else self.stage_index + 1)

    # ---------------------------------------------------------------- schedule-level messages
    def send_activation(self, microbatch: int, array) -> None:
        """Sends micro-batch `microbatch`'s output to the next stage."""
        self.send(array, self.stage_index + 1, microbatch, FORWARD)

    def send_grad(self, microbatch: int, array) -> None:
        """Sends the gradient of micro-batch `microbatch`'s input to the previous stage."""
        self.send(array, self.stage_index - 1, microbatch, BACKWARD)

    def recv_activation(self, microbatch: int, batch_size: int, xp=numpy):
        """The previous stage's output for `microbatch`, which must hold `batch_size` rows."""
        array = self.recv(self.stage_index - 1, microbatch, FORWARD, xp)
        if array.shape[:1] != (batch_size,):
            raise ValueError(f"Pipeline stage {self.stage_index}, micro-batch {microbatch}: "
                             f"expected an activation with batch size {batch_size} from stage "
                             f"{self.stage_index - 1}, received shape {array.shape}")
        return array

    def recv_grad(self, microbatch: int, expected_shape: tuple[int, ...], xp=numpy):
        """The gradient of this stage's output for `microbatch`, of shape `expected_shape`."""
        array = self.recv(self.stage_index + 1, microbatch, BACKWARD, xp)
        if tuple(expected_shape) != array.shape:
            raise ValueError(f"Pipeline stage {self.stage_index}, micro-batch {microbatch}: "
                             f"expected a gradient of shape {tuple(expected_shape)} from stage "
                             f"{self.stage_index + 1}, received shape {array.shape} "
                             f"({array.dtype})")
        return array

    def broadcast_from_last(self, value: float) -> float:
        """The last stage's `value`, on every stage (the loss only the last stage computes)."""
        buf = numpy.array([value if self.is_last_stage else 0.0])
        self.comm.bcast_(buf, root=self.num_stages - 1)
        return float(buf[0])

    # ---------------------------------------------------------------- wire protocol
    def send(self, array, dest_stage: int, microbatch: int, direction: int) -> None:
        """Header, then (unless empty) the C-contiguous payload, to `dest_stage`."""
        header = encode_header(microbatch, direction, array)
        self.comm.send(header, dest_stage, message_tag(microbatch, direction, payload=False))
        if array.size:
            if not array.flags.c_contiguous:
                array = get_array_module(array).ascontiguousarray(array)
            self.comm.send(array, dest_stage, message_tag(microbatch, direction, payload=True))

    def recv(self, source_stage: int, microbatch: int, direction: int, xp=numpy):
        """Receives the header, checks it announces this micro-batch and direction, then
        receives the payload into a new `xp` array of the announced dtype and shape."""
        header = numpy.zeros(HEADER_LEN, numpy.int64)
        self.comm.recv_(header, source_stage, message_tag(microbatch, direction, payload=False))
        fields = decode_header(header)
        if fields is None or fields[:2] != (microbatch, direction):
            raise RuntimeError(f"Pipeline stage {self.stage_index}: expected the "
                               f"{_WHAT[direction]} of micro-batch {microbatch} from stage "
                               f"{source_stage}, got header {header[:5].tolist()}")
        array = xp.empty(fields[3], fields[2])
        if array.size:
            self.comm.recv_(array, source_stage, message_tag(microbatch, direction, payload=True))
        return array


def __getattr__(name: str):
    # NOTE: Pipeline lived in this module until the runtime was split (stage / executor /
    # partition / pipeline); imports of the old path keep working without a cycle
    if name == "Pipeline":
        from disttrain.distributed.pipeline.pipeline import Pipeline

        return Pipeline
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
