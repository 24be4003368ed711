"""Array backends: numpy on the CPU, cupy on NVIDIA GPUs. The ONLY module that imports cupy."""

from __future__ import annotations

import sys

import numpy

from disttrain import devices, env

_cupy_error: Exception | None = None
try:  # NOTE: cupy is optional; remember why it is missing so errors can say so.
    import cupy
    import cupyx
except Exception as e:  # ImportError, or a CUDA driver error raised at import
    cupy, cupyx, _cupy_error = None, None, e


def tune_malloc() -> bool:
    """Asks glibc to keep freed large blocks for reuse instead of returning them to the OS;
    True when it took effect (False off Linux/glibc). Process-wide, so opt-in: training
    scripts and benchmarks call it first thing, or DISTTRAIN_TUNE_MALLOC=1 in the environment
    has this module call it when it loads (for a script you would rather not change).

    NOTE: every step allocates its activations and gradients afresh. glibc serves blocks of
    16 MB and more (a 2048x2048 float32 gradient) with mmap and unmaps them on free, so each
    step page-faulted 16 MB back in (4,112 faults per deep-MLP step) and MPI moved cold pages;
    keeping them made that step 6% faster. The cost: freed memory stays in the process (up to
    1 GiB untrimmed), which a library must not impose on its host program at import.

    Example:
        >>> import disttrain as dt
        >>> dt.tune_malloc()  # before building the model
        True
    """
    if not sys.platform.startswith("linux"):
        return False
    import ctypes  # NOTE: here, not at the top: only callers of tune_malloc pay for it

    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc (musl, ...): leave the allocator alone
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3  # from glibc's malloc.h
    return bool(libc.mallopt(m_mmap_threshold, 512 * 2**20)) and bool(
        libc.mallopt(m_trim_threshold, 1 * 2**30))


if env.tune_malloc():  # NOTE: only on the user's explicit request; never by default
    tune_malloc()


def get_array_module(*arrays):
    """numpy or cupy, whichever owns `arrays` (numpy when cupy is absent)."""
    if cupy is not None:
        return cupy.get_array_module(*arrays)
    return numpy


def is_cupy_array(array) -> bool:
    return cupy is not None and isinstance(array, cupy.ndarray)


def require_cupy(what: str) -> None:
    if cupy is None:
        raise RuntimeError(
            f"{what} needs CuPy, which failed to import: {_cupy_error}. "
            "Install it with `pip install disttrain[gpu]` (or the cupy-cudaXXx wheel matching "
            "your CUDA), or use device='cpu'."
        )


def cuda_is_available() -> bool:
    if cupy is None:
        return False
    try:
        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:
        return False


def cudnn_version() -> int | None:
    """cuDNN's version when cupy sees a GPU and can load cuDNN, else None."""
    if not cuda_is_available():
        return None
    try:
        from cupy_backends.cuda.libs import cudnn  # NOTE: fails when libcudnn is not installed

        return int(cudnn.getVersion())
    except Exception:
        return None


def parse_device(device) -> devices.device:
    """A device argument ("cpu", "cuda", "cuda:1", a dt.device or an int GPU index) as a
    dt.device, checked that it can be used (cuda needs cupy)."""
    parsed = _parsed.get(device) if isinstance(device, str) else None
    if parsed is None:
        parsed = devices.device(device)
        if parsed.type == "cuda":
            require_cupy(f"device={str(parsed)!r}")
        if isinstance(device, str):
            _parsed[device] = parsed
    return parsed


_parsed: dict[str, devices.device] = {}  # NOTE: parsing once per distinct string keeps .to cheap
_cuda_devices: dict[int, devices.device] = {}


def device_of(array) -> devices.device:
    """The dt.device holding `array` (one shared object per device: Tensor.device is hot)."""
    if is_cupy_array(array):
        index = array.device.id
        found = _cuda_devices.get(index)
        if found is None:
            found = _cuda_devices[index] = devices.device("cuda", index)
        return found
    return devices.CPU


def asnumpy(array) -> numpy.ndarray:
    """A host (numpy) view or copy of `array`."""
    if is_cupy_array(array):
        return cupy.asnumpy(array)
    return numpy.asarray(array)


def to_device(array, device: str):
    """Move an array to `device` ("cpu" or "cuda[:N]"); returns the same array if already there."""
    device = parse_device(device)
    if device == "cpu":
        return asnumpy(array)
    with cupy.cuda.Device(device.index):  # NOTE: index None is cupy's current device, as torch
        return cupy.asarray(array)


def scatter_add(target, index, values) -> None:
    """target[index] += values, accumulating repeated indices (numpy's add.at)."""
    if is_cupy_array(target):
        cupyx.scatter_add(target, index, values)
    else:
        numpy.add.at(target, index, values)


def erf(x):
    """Element-wise error function, float64-accurate, on numpy or cupy arrays."""
    if is_cupy_array(x):
        import cupyx.scipy.special  # NOTE: lazy; only GPU runs pay for this import

        return cupyx.scipy.special.erf(x)
    return _erf_numpy(x)


# NOTE: a vectorised port of fdlibm's s_erf.c (also Go's math/erf.go): rational approximations
# on |x| in [0, 0.84375), [0.84375, 1.25), [1.25, 1/0.35), [1/0.35, 6) and 1 beyond; <= 1 ulp.
# Coefficients: Copyright (C) 1993 by Sun Microsystems, Inc. All rights reserved. Developed at
# SunPro, a Sun Microsystems, Inc. business. Permission to use, copy, modify, and distribute this
# software is freely granted, provided that this notice is preserved.
_ERX = 8.45062911510467529297e-01
_EFX, _EFX8 = 1.28379167095512586316e-01, 1.02703333676410069053e00
_PP = (1.28379167095512558561e-01, -3.25042107247001499370e-01, -2.84817495755985104766e-02,
       -5.77027029648944159157e-03, -2.37630166566501626084e-05)  # fmt: skip
_QQ = (1.0, 3.97917223959155352819e-01, 6.50222499887672944485e-02, 5.08130628187576562776e-03,
       1.32494738004321644526e-04, -3.96022827877536812320e-06)  # fmt: skip
_PA = (-2.36211856075265944077e-03, 4.14856118683748331666e-01, -3.72207876035701323847e-01,
       3.18346619901161753674e-01, -1.10894694282396677476e-01, 3.54783043256182359371e-02,
       -2.16637559486879084300e-03)  # fmt: skip
_QA = (1.0, 1.06420880400844228286e-01, 5.40397917702171048937e-01, 7.18286544141962662868e-02,
       1.26171219808761642112e-01, 1.36370839120290507362e-02,
       1.19844998467991074170e-02)  # fmt: skip
_RA = (-9.86494403484714822705e-03, -6.93858572707181764372e-01, -1.05586262253232909814e01,
       -6.23753324503260060396e01, -1.62396669462573470355e02, -1.84605092906711035994e02,
       -8.12874355063065934246e01, -9.81432934416914548592e00)  # fmt: skip
_SA = (1.0, 1.96512716674392571292e01, 1.37657754143519042600e02, 4.34565877475229228821e02,
       6.45387271733267880336e02, 4.29008140027567833386e02, 1.08635005541779435134e02,
       6.57024977031928170135e00, -6.04244152148580987438e-02)  # fmt: skip
_RB = (-9.86494292470009928597e-03, -7.99283237680523006574e-01, -1.77579549177547519889e01,
       -1.60636384855821916062e02, -6.37566443368389627722e02, -1.02509513161107724954e03,
       -4.83519191608651397019e02)  # fmt: skip
_SB = (1.0, 3.03380607434824582924e01, 3.25792512996573918826e02, 1.53672958608443695994e03,
       3.19985821950859553908e03, 2.55305040643316442583e03, 4.74528541206955367215e02,
       -2.24409524465858183362e01)  # fmt: skip


def _polyval(coefficients, z):
    """c0 + z*(c1 + z*(c2 + ...)) by Horner's rule, in fdlibm's evaluation order."""
    result = coefficients[-1]
    for c in reversed(coefficients[:-1]):
        result = c + z * result
    return result


def _erf_numpy(x):
    x = numpy.asarray(x)
    dtype = x.dtype if x.dtype.kind == "f" else numpy.dtype(numpy.float64)
    x64 = x.astype(numpy.float64)
    a = numpy.abs(x64)
    out = numpy.where(numpy.isnan(a), a, 1.0)  # NaN stays NaN; |x| >= 6 (and inf) gives 1
    with numpy.errstate(all="ignore"):  # NOTE: tiny |x| underflows harmlessly in x*x
        _erf_regions(a, out)
    return numpy.copysign(out, x64).astype(dtype, copy=False)


def _erf_regions(a, out):
    """erf(a) for a = |x| < 6, written into `out` region by region (each on its own subset)."""
    m = a < 0.84375
    t = a[m]
    z = t * t
    y = t + t * (_polyval(_PP, z) / _polyval(_QQ, z))
    tiny = numpy.where(t < 2.848094538889218e-306, 0.125 * (8.0 * t + _EFX8 * t), t + _EFX * t)
    out[m] = numpy.where(t < 2.0**-28, tiny, y)
    m = (a >= 0.84375) & (a < 1.25)
    s = a[m] - 1.0
    out[m] = _ERX + _polyval(_PA, s) / _polyval(_QA, s)
    m = (a >= 1.25) & (a < 1 / 0.35)
    out[m] = _erf_tail(a[m], _RA, _SA)
    m = (a >= 1 / 0.35) & (a < 6.0)
    out[m] = _erf_tail(a[m], _RB, _SB)


def _erf_tail(t, numerator, denominator):
    """1 - erfc(t) for 1.25 <= t < 6, with erfc(t) = exp(-t*t - 0.5625 + R(s)/S(s)) / t."""
    s = 1.0 / (t * t)
    # NOTE: exp(-t*t) is split as exp(-z*z) * exp((z-t)*(z+t)) with z = t cut to its high 32
    # bits, so z*z is exact and the rounding error of t*t never reaches the exponent.
    z = (t.view(numpy.uint64) & numpy.uint64(0xFFFFFFFF00000000)).view(numpy.float64)
    correction = (z - t) * (z + t) + _polyval(numerator, s) / _polyval(denominator, s)
    return 1.0 - numpy.exp(-z * z - 0.5625) * numpy.exp(correction) / t
