"""`dt.accelerator`, torch.accelerator's device-agnostic queries. disttrain's one accelerator
type is CUDA (through cupy): without a GPU, is_available() is False and
current_accelerator() None, so `device = dt.accelerator.current_accelerator() if
dt.accelerator.is_available() else dt.device("cpu")` picks the CPU."""

from __future__ import annotations

from disttrain import cuda, devices


def is_available() -> bool:
    """True when a CUDA GPU is usable (cupy imports and sees one)."""
    return cuda.is_available()


def current_accelerator(check_available: bool = False) -> devices.device | None:
    """`dt.device("cuda")` when a GPU is usable, else None.

    Args:
        check_available: accepted for torch's signature; the answer is always checked here.

    Example:
        >>> dev = dt.accelerator.current_accelerator()
        >>> dev is None or dev.type == "cuda"
        True
    """
    return devices.device("cuda") if cuda.is_available() else None


def device_count() -> int:
    """The number of GPUs (0 without one)."""
    return cuda.device_count()


def current_device_index() -> int:
    """The current GPU's index (raises without a GPU)."""
    return cuda.current_device()


def set_device_index(device) -> None:
    """Makes `device` (an int, "cuda:N" or a dt.device) the current GPU."""
    cuda.set_device(device)


def synchronize(device=None) -> None:
    """Waits for the work queued on the GPU `device` (raises without a GPU)."""
    cuda.synchronize(device)
