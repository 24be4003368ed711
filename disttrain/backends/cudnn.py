"""`dt.backends.cudnn`: torch.backends.cudnn's flags and queries.

What the flags change in disttrain: nothing. Its convolutions and pooling run as im2col +
GEMM (numpy's BLAS on CPUs, cuBLAS through cupy on GPUs) and never call cuDNN, so there is no
cuDNN algorithm to enable, benchmark or make deterministic. They exist, settable and
type-checked, so that ported scripts that set them run unchanged. Note for `deterministic`:
on GPUs the gradients of indexing and gather accumulate with atomic adds (cupyx.scatter_add),
whose float summation order can vary between runs; this flag does not change that. On CPUs
every op is deterministic.
"""

from __future__ import annotations

import sys

from disttrain import backend
from disttrain.backends._flags import bool_flags, set_flags

enabled: bool = True
benchmark: bool = False
deterministic: bool = False
allow_tf32: bool = True


def is_available() -> bool:
    """True when cupy sees a GPU and can load cuDNN (which disttrain itself does not call)."""
    return backend.cudnn_version() is not None


def version() -> int | None:
    """cuDNN's version number (as torch.backends.cudnn.version()), None when unavailable."""
    return backend.cudnn_version()


def flags(enabled: bool | None = None, benchmark: bool | None = None,
          deterministic: bool | None = None, allow_tf32: bool | None = None):
    """A context manager that sets the given flags inside a with block, then restores them.

    Example:
        >>> with dt.backends.cudnn.flags(benchmark=True):
        ...     assert dt.backends.cudnn.benchmark
    """
    return set_flags(sys.modules[__name__], enabled=enabled, benchmark=benchmark,
                     deterministic=deterministic, allow_tf32=allow_tf32)


bool_flags(__name__, ("enabled", "benchmark", "deterministic", "allow_tf32"))
