"""`dt.cuda.is_available()` and friends; the GPU itself is reached only through backend."""

from __future__ import annotations

from disttrain import backend


def is_available() -> bool:
    """True when CuPy imports and sees at least one CUDA device."""
    return backend.cuda_is_available()


def device_count() -> int:
    if not is_available():
        return 0
    return backend.cupy.cuda.runtime.getDeviceCount()
