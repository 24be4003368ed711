"""`dt.backends.mps`: Apple's Metal backend, which disttrain does not have."""

from __future__ import annotations


def is_available() -> bool:
    """False: disttrain runs on CPUs (numpy) and NVIDIA GPUs (cupy) only."""
    return False


def is_built() -> bool:
    """False: disttrain has no MPS backend."""
    return False
