"""`dt.cuda`: torch.cuda's queries and controls over cupy's CUDA runtime. Without a GPU the
queries answer truthfully (is_available() False, device_count() 0), the seeding and cache
functions do nothing (as torch's do), and the ones that need a device raise, saying why. The
GPU itself is reached only through backend (the one module that imports cupy)."""

from __future__ import annotations

from disttrain import backend, devices


def is_available() -> bool:
    """True when CuPy imports and sees at least one CUDA device."""
    return backend.cuda_is_available()


def device_count() -> int:
    """The number of CUDA devices cupy sees (0 without cupy or a GPU)."""
    if not is_available():
        return 0
    return backend.cupy.cuda.runtime.getDeviceCount()


def _require_gpu(what: str) -> None:
    if not is_available():
        backend.require_cupy(f"cuda.{what}")  # names the import error when cupy is missing
        raise RuntimeError(f"cuda.{what}: no CUDA GPU is available (cupy sees none); "
                           "check dt.cuda.is_available() first, or run on 'cpu'")


def _index(device) -> int | None:
    if device is None:
        return None
    parsed = devices.device(device)
    if parsed.type != "cuda":
        raise ValueError(f"cuda: expected a CUDA device, got {parsed!r}")
    return parsed.index


def current_device() -> int:
    """The index of the current CUDA device (raises without a GPU, as torch)."""
    _require_gpu("current_device")
    return backend.cupy.cuda.runtime.getDevice()


def set_device(device) -> None:
    """Makes `device` (an int, "cuda:N" or a dt.device) the current CUDA device; a negative
    int does nothing, as torch."""
    if isinstance(device, int) and device < 0:
        return
    _require_gpu("set_device")
    backend.cupy.cuda.Device(_index(device) or 0).use()


def synchronize(device=None) -> None:
    """Waits for all work queued on `device` (default: the current one) to finish."""
    _require_gpu("synchronize")
    backend.cupy.cuda.Device(_index(device)).synchronize()


def get_device_name(device=None) -> str:
    """The name of the CUDA device `device` (default: the current one)."""
    _require_gpu("get_device_name")
    index = _index(device)
    index = backend.cupy.cuda.runtime.getDevice() if index is None else index
    return backend.cupy.cuda.runtime.getDeviceProperties(index)["name"].decode()


def manual_seed(seed: int) -> None:
    """Accepted for ported scripts, and changes nothing: random tensors on a GPU are drawn
    from the host generator that `dt.manual_seed` seeds, then copied, so that seed already
    makes GPU runs reproducible. torch's version is a no-op without a GPU too."""
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"cuda.manual_seed: seed must be a non-negative int, got {seed!r}")


def manual_seed_all(seed: int) -> None:
    """As manual_seed (one host generator serves every GPU)."""
    manual_seed(seed)


def empty_cache() -> None:
    """Returns cupy's cached, unused GPU memory blocks to the driver (nothing without a GPU)."""
    if is_available():
        backend.cupy.get_default_memory_pool().free_all_blocks()
