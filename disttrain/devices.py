"""`dt.device`, torch.device's twin: a `str` subclass ("cpu", "cuda", "cuda:1"), so a device
object and its string compare, hash and format alike and every string-based device argument
keeps working. Imports nothing of disttrain (backend imports it)."""

from __future__ import annotations

_SUPPORTED = ("cpu", "cuda")
# NOTE: device types torch knows but disttrain cannot run on: named in the error, so a ported
# script that asks for one hears why instead of "unknown device"
_TORCH_ONLY = ("mps", "xpu", "hip", "xla", "meta", "ipu", "hpu", "mtia", "vulkan", "lazy",
               "mkldnn", "opengl", "opencl", "ideep", "ve", "fpga", "maia", "privateuseone")


class device(str):  # noqa: N801  (torch's name)
    """Where a tensor lives: `device("cpu")`, `device("cuda")`, `device("cuda:1")`,
    `device("cuda", 1)` or `device(1)` (a GPU index, as torch).

    Unlike torch.device it is also a str, so `t.device == "cpu"` is True and a device works
    wherever a device string does (`.to(...)`, `device=`, dict keys).

    Args:
        type: "cpu" or "cuda", optionally with ":index"; or an int GPU index.
        index: the GPU index (only with a type without one).

    Example:
        >>> d = dt.device("cuda", 0)
        >>> d, d.type, d.index, d == "cuda:0"
        (device(type='cuda', index=0), 'cuda', 0, True)
    """

    def __new__(cls, type: str | int | device, index: int | None = None) -> device:
        if isinstance(type, device) and index is None:
            return type
        if isinstance(type, int) and not isinstance(type, bool):
            type, index = "cuda", type  # NOTE: torch.device(1) is the accelerator's device 1
        if not isinstance(type, str):
            raise TypeError(f"device: expected a str or int, got {type.__class__.__name__} "
                            f"({type!r})")
        kind, colon, text = type.partition(":")
        if colon:
            if index is not None:
                raise RuntimeError(f"device: type ({type!r}) must not include an index because "
                                   f"index was passed explicitly ({index})")
            if not text.isdigit():
                raise RuntimeError(f"device: invalid device string {type!r}: the index after "
                                   "':' must be a non-negative int")
            index = int(text)
        _check(kind, index, type)
        # NOTE: "cpu:0" is "cpu": every array on the host is one device here
        return str.__new__(cls, kind if kind == "cpu" or index is None else f"{kind}:{index}")

    @property
    def type(self) -> str:
        return self.partition(":")[0]

    @property
    def index(self) -> int | None:
        text = self.partition(":")[2]
        return int(text) if text else None

    def __repr__(self) -> str:
        index = self.index
        return f"device(type='{self.type}')" if index is None else \
            f"device(type='{self.type}', index={index})"

    def __reduce__(self):
        return device, (str(self),)


def _check(kind: str, index, given) -> None:
    if kind not in _SUPPORTED:
        why = (f"'{kind}' is a PyTorch device type that disttrain does not support"
               if kind in _TORCH_ONLY else f"unknown device type '{kind}'")
        raise RuntimeError(f"device: {why} (got {given!r}); disttrain runs on 'cpu' (numpy) "
                           "and 'cuda' / 'cuda:N' (NVIDIA GPUs through cupy)")
    if index is not None and (not isinstance(index, int) or isinstance(index, bool)):
        raise TypeError(f"device: index must be an int, got {index.__class__.__name__} "
                        f"({index!r})")
    if index is not None and index < 0:
        raise RuntimeError(f"device: index must be non-negative, got {index}")
    if kind == "cpu" and index not in (None, 0):
        raise RuntimeError(f"device: 'cpu' has only index 0, got {index}")


CPU = device("cpu")
