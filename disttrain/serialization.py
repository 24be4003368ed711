"""save/load of (nested) state dicts as safetensors files or file objects; never pickle.
Imports only backend and files (the atomic write)."""

from __future__ import annotations

import errno
import json
import os
import re
from typing import BinaryIO

import numpy
from safetensors import SafetensorError, safe_open
from safetensors.numpy import load as load_bytes
from safetensors.numpy import save as save_bytes
from safetensors.numpy import save_file

from disttrain.backend import asnumpy, is_cupy_array, parse_device, to_device
from disttrain.files import atomic_write

FORMAT = "disttrain"
FORMAT_VERSION = "1"
STRUCTURE_KEY = "disttrain.structure"  # __metadata__ key holding the JSON structure
_DTYPES = (
    "bool", "uint8", "int8", "uint16", "int16", "uint32", "int32", "uint64", "int64",
    "float16", "float32", "float64", "complex64",
)  # fmt: skip
_INT_RE = re.compile(r"-?[0-9]+")


def save(obj, f: str | os.PathLike | BinaryIO) -> None:
    """Write `obj` (a state_dict, a checkpoint dict, a Tensor, ...) to `f` as safetensors.

    Arrays (numpy, cupy, or disttrain Tensors) become safetensors tensors; the rest of the
    structure (python and numpy scalars, str, None, lists, tuples, dicts with str or int keys)
    is stored as JSON in the header, so `load` rebuilds it exactly. A flat ``{str: array}``
    dict (a model state_dict) keeps its keys as tensor names, so PyTorch reads it with
    ``safetensors.torch.load_file(path)`` (then ``model.load_state_dict(...)``). Unlike
    torch.save, objects are never pickled: a Module or an optimizer raises a TypeError that
    says to save its ``state_dict()``. A write to a path is atomic: a crash leaves either the
    old file or the new one, never a torn one.

    Args:
        obj: what to save, e.g. ``model.state_dict()``, ``optimizer.state_dict()`` or a
            checkpoint ``{"model": ..., "optimizer": ..., "epoch": 10}``.
        f: a path (str or os.PathLike, conventionally ``*.safetensors``; replaced if it
            exists) or a binary file object opened for writing (``io.BytesIO``,
            ``open(path, "wb")``).

    Example:
        >>> import io, numpy
        >>> buffer = io.BytesIO()
        >>> save({"fc.weight": numpy.ones((2, 3), numpy.float32)}, buffer)
        >>> load(io.BytesIO(buffer.getvalue()))["fc.weight"].shape
        (2, 3)
    """
    _check_not_an_object(obj)
    # NOTE: a flat {str: array} dict keeps its keys verbatim as tensor names (PyTorch interop);
    # otherwise names are escaped key paths. Either way the JSON structure records each name.
    is_flat = isinstance(obj, dict) and all(
        isinstance(k, str) and _is_array(v) for k, v in obj.items())
    tensors: dict[str, numpy.ndarray] = {}
    structure = _encode(obj, (), tensors, is_flat)
    metadata = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        STRUCTURE_KEY: json.dumps(structure, separators=(",", ":")),
    }
    if not _is_path(f):
        if not callable(getattr(f, "write", None)):
            raise TypeError(f"save: f should be a path (str or os.PathLike) or a binary file "
                            f"object with write(), got {type(f).__name__}")
        f.write(save_bytes(tensors, metadata=metadata))
        return
    path = os.fspath(f)
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise FileNotFoundError(errno.ENOENT, "save: directory does not exist", directory)
    with atomic_write(path) as tmp:
        save_file(tensors, tmp, metadata=metadata)


def load(f: str | os.PathLike | BinaryIO, map_location=None, pickle_module=None, *,
         weights_only: bool | None = None, mmap: bool | None = None):
    """Read what `save` wrote (exact structure) or any safetensors file ({name: array}).

    Never unpickles: a pickle or ``torch.save`` file is rejected with a ValueError, unexecuted.
    Files hold only arrays and plain values, never code, so every load is what torch calls
    weights-only, whatever `weights_only` says.

    Args:
        f: a ``.safetensors`` path or a binary file object opened for reading.
        map_location: where the arrays go, as torch: None or "cpu" (numpy arrays), a device
            ("cuda", "cuda:1", a dt.device: cupy arrays), a dict mapping the saved location
            to a device (files hold host arrays, so the saved location is always "cpu"), or a
            callable ``fn(array, "cpu")`` returning the array to use (None keeps it).
        pickle_module: must be None (torch's argument; disttrain never unpickles).
        weights_only: accepted for torch scripts; loads are always weights-only.
        mmap: memory-map the file instead of reading it (a path only): the arrays are
            read-only views of the file, paged in as they are used.

    Returns:
        The saved structure with numpy (or, with a cuda map_location, cupy) arrays in place
        of arrays and Tensors (dtypes preserved), int keys as int and tuples as tuples;
        ``{name: array}`` for files from other tools.

    Example:
        >>> import os, tempfile, numpy
        >>> path = os.path.join(tempfile.mkdtemp(), "opt.safetensors")
        >>> save({"state": {0: {"step": 3.0}}, "param_groups": [{"betas": (0.9, 0.999)}]}, path)
        >>> load(path, map_location="cpu", weights_only=True)["param_groups"][0]["betas"]
        (0.9, 0.999)
    """
    if pickle_module is not None:
        raise TypeError(f"load: pickle_module must be None, got {pickle_module!r}; disttrain "
                        "files are safetensors and are never unpickled")
    for name, flag in (("weights_only", weights_only), ("mmap", mmap)):
        if flag is not None and not isinstance(flag, bool):
            raise TypeError(f"load: {name} should be a bool or None, got {flag!r}")
    move = _mover(map_location)
    if _is_path(f):
        name = os.fspath(f)
        _check_file(name)
        metadata, tensors = _read(name, bool(mmap))
    else:
        if mmap:
            raise ValueError(f"load: mmap=True needs a file path, got a "
                             f"{type(f).__name__} file object")
        if not callable(getattr(f, "read", None)):
            raise TypeError(f"load: f should be a path (str or os.PathLike) or a binary file "
                            f"object with read(), got {type(f).__name__}")
        name = f"<{type(f).__name__} {getattr(f, 'name', 'file object')}>"
        metadata, tensors = _read_bytes(f.read(), name)
    if move is not None:
        tensors = {key: move(array) for key, array in tensors.items()}
    return _decode_file(name, metadata, tensors)


def _decode_file(name: str, metadata: dict, tensors: dict):
    if metadata.get("format") != FORMAT:
        return tensors
    version = metadata.get("format_version")
    if version != FORMAT_VERSION:
        raise ValueError(
            f"{name}: disttrain format_version {version!r} is not supported (this disttrain "
            f"reads {FORMAT_VERSION!r}); upgrade disttrain to load it"
        )
    try:
        return _decode(json.loads(metadata[STRUCTURE_KEY]), tensors)
    except (KeyError, ValueError, TypeError, RecursionError) as e:
        reason = f"{type(e).__name__}: {e}"
        raise ValueError(f"{name}: disttrain metadata is corrupt ({reason})") from None


def _is_path(f) -> bool:
    return isinstance(f, (str, os.PathLike))


def _check_file(path: str) -> None:
    if not os.path.exists(path):
        raise FileNotFoundError(errno.ENOENT, "load: no such file", path)
    if os.path.isdir(path):
        raise IsADirectoryError(errno.EISDIR, "load: expected a file, got a directory", path)


def _check_not_an_object(obj) -> None:
    if not isinstance(obj, dict) and callable(getattr(obj, "state_dict", None)):
        raise TypeError(_object_message(obj, "obj"))


def _object_message(value, where: str) -> str:
    kind = type(value).__name__
    return (f"save: {where} is a {kind} object; disttrain never pickles objects (torch.save "
            f"would pickle the whole {kind}), so save its state instead: "
            f"dt.save(model.state_dict(), f), then restore it into a new {kind} with "
            f"load_state_dict(dt.load(f))")


def _mover(map_location):
    """A function moving each loaded host array where `map_location` says, or None."""
    if map_location is None:
        return None
    if isinstance(map_location, dict):
        for key, value in map_location.items():
            if not isinstance(key, str) or not isinstance(value, str):
                raise TypeError(f"load: map_location dict should map location strings to "
                                f"device strings, got {key!r}: {value!r}")
        # NOTE: disttrain files hold host arrays: their saved location is "cpu"
        return _mover(map_location.get("cpu", "cpu"))
    if isinstance(map_location, str):  # NOTE: a dt.device is a str
        device = parse_device(map_location)
        return None if device == "cpu" else (lambda array: to_device(array, device))
    if callable(map_location):
        def move(array):
            moved = map_location(array, "cpu")
            return array if moved is None else moved
        return move
    raise TypeError(f"load: map_location should be None, a device string or dt.device, a dict "
                    f"or a callable, got {type(map_location).__name__}")


def _is_array(value) -> bool:
    return isinstance(value, numpy.ndarray) or hasattr(value, "array") or is_cupy_array(value)


def _as_array(value) -> numpy.ndarray | None:
    """The host array behind a numpy/cupy array or a Tensor (duck-typed by `.array`), else None."""
    if not isinstance(value, numpy.ndarray) and hasattr(value, "array"):
        value = value.array
    if isinstance(value, numpy.ndarray) or is_cupy_array(value):
        return asnumpy(value)
    return None


def _encode(value, keys: tuple, tensors: dict, is_flat: bool):
    """JSON node for `value`; arrays go into `tensors` and are referenced by name."""
    if isinstance(value, dict):
        pairs = []
        for key, item in value.items():
            if isinstance(key, bool) or not isinstance(key, (str, int)):
                raise TypeError(
                    f"save: key {key!r} in {_where(keys)} has type {type(key).__name__}; "
                    "dict keys must be str or int"
                )
            pairs.append([key, _encode(item, (*keys, key), tensors, is_flat)])
        return {"dict": pairs}
    if isinstance(value, (list, tuple)):
        kind = "tuple" if isinstance(value, tuple) else "list"
        return {kind: [_encode(v, (*keys, i), tensors, is_flat) for i, v in enumerate(value)]}
    if isinstance(value, numpy.generic) and value.dtype.name in _DTYPES:
        # NOTE: numpy scalars are 0-d tensors so their dtype and exact value survive.
        return {"scalar": _add_tensor(numpy.asarray(value), keys, tensors, is_flat)}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    array = _as_array(value)
    if array is None and callable(getattr(value, "state_dict", None)):
        raise TypeError(_object_message(value, _where(keys)))
    if array is None:
        raise TypeError(
            f"save: unsupported value at {_where(keys)} of type {type(value).__name__}; expected "
            "an array, Tensor, number, str, None, bool, list, tuple or dict"
        )
    if array.dtype.name not in _DTYPES:
        raise TypeError(
            f"save: array at {_where(keys)} has dtype {array.dtype}, which safetensors cannot "
            f"store; supported dtypes: {', '.join(_DTYPES)}"
        )
    return {"tensor": _add_tensor(array, keys, tensors, is_flat)}


def _add_tensor(array: numpy.ndarray, keys: tuple, tensors: dict, is_flat: bool) -> str:
    name = keys[0] if is_flat else "/".join(_escape(k) for k in keys)
    assert name not in tensors, f"tensor name collision: {name!r}"
    # NOTE: safetensors copies `nbytes` from the data pointer, so views must be made contiguous.
    tensors[name] = array if array.flags.c_contiguous else array.copy(order="C")
    return name


def _escape(key: str | int) -> str:
    """One path component: '~' -> '~0', '/' -> '~1' (JSON pointer); '~s' marks digit-only strs."""
    if isinstance(key, int):
        return str(key)
    key = key.replace("~", "~0").replace("/", "~1")
    return "~s" + key if _INT_RE.fullmatch(key) else key


def _where(keys: tuple) -> str:
    return "obj" + "".join(f"[{k!r}]" for k in keys)


def _read(path: str, mmap: bool = False) -> tuple[dict, dict]:
    """(metadata, {name: array}) of a safetensors file, with errors that name the file; with
    `mmap`, each array is a read-only view of one memory map of the file."""
    try:
        with safe_open(path, framework="np") as f:
            metadata = f.metadata() or {}
            if mmap:
                return metadata, _map_tensors(path)
            tensors = {}
            for name in f.keys():
                try:
                    tensors[name] = f.get_tensor(name)
                except TypeError as e:  # a dtype numpy lacks, e.g. bfloat16
                    raise ValueError(_dtype_message(path, name, e)) from None
    except SafetensorError as e:
        with open(path, "rb") as file:
            hint = _hint(file.read(4))
        raise ValueError(f"{path}: not a valid safetensors file ({e}){hint}") from None
    except OSError as e:  # NOTE: safetensors' I/O errors do not name the file
        raise OSError(e.errno, f"load: cannot read ({e.strerror or e})", path) from None
    return metadata, tensors


def _read_bytes(data: bytes, name: str) -> tuple[dict, dict]:
    """`_read` of a file's bytes (a file object's content)."""
    try:
        tensors = load_bytes(data)
    except SafetensorError as e:
        raise ValueError(f"{name}: not a valid safetensors file ({e}){_hint(data[:4])}") from None
    except TypeError as e:  # NOTE: the names are unknown here; bfloat16 is the usual cause
        raise ValueError(_dtype_message(name, "?", e)) from None
    return _header(data[:8], data[8:])[0], tensors


def _header(size_bytes: bytes, rest: bytes) -> tuple[dict, dict]:
    """(metadata, {name: entry}) from a header that safetensors has already validated."""
    header = json.loads(rest[: int.from_bytes(size_bytes, "little")])
    return header.pop("__metadata__", None) or {}, header


_NUMPY_DTYPES = {"BOOL": "?", "U8": "u1", "I8": "i1", "U16": "<u2", "I16": "<i2", "U32": "<u4",
                 "I32": "<i4", "U64": "<u8", "I64": "<i8", "F16": "<f2", "F32": "<f4",
                 "F64": "<f8", "C64": "<c8"}


def _map_tensors(path: str) -> dict:
    """{name: read-only view of one memory map}; the header was validated by safe_open."""
    with open(path, "rb") as file:
        size_bytes = file.read(8)
        _, entries = _header(size_bytes, file.read(int.from_bytes(size_bytes, "little")))
    data_start = 8 + int.from_bytes(size_bytes, "little")
    whole = numpy.memmap(path, numpy.uint8, "r").view(numpy.ndarray)
    tensors = {}
    for name, entry in entries.items():
        dtype = _NUMPY_DTYPES.get(entry["dtype"])
        if dtype is None:
            raise ValueError(_dtype_message(path, name, f"dtype {entry['dtype']}"))
        begin, end = (data_start + offset for offset in entry["data_offsets"])
        tensors[name] = whole[begin:end].view(dtype).reshape(entry["shape"])
    return tensors


def _dtype_message(where: str, name: str, reason) -> str:
    return (f"{where}: tensor {name!r} cannot be read into numpy ({reason}); convert it to "
            "float32 before saving")


def _hint(head: bytes) -> str:
    if head[:1] == b"\x80" or head == b"PK\x03\x04":
        return (
            "; it looks like a pickle / torch.save file, which disttrain never unpickles: "
            "convert it with safetensors.torch.save_file(torch.load(f, weights_only=True), ...)"
        )
    return ""


def _decode(node, tensors: dict):
    """Inverse of `_encode`; raises ValueError/KeyError/TypeError on a malformed node."""
    if isinstance(node, list):
        raise ValueError(f"malformed node {node!r:.80}")
    if not isinstance(node, dict):
        return node  # None, bool, int, float or str
    if len(node) != 1:
        raise ValueError(f"malformed node {node!r:.80}")
    ((kind, body),) = node.items()
    if kind == "dict":
        return {key: _decode(item, tensors) for key, item in body}
    if kind in ("list", "tuple"):
        items = [_decode(item, tensors) for item in body]
        return tuple(items) if kind == "tuple" else items
    if kind in ("tensor", "scalar"):
        if body not in tensors:
            raise ValueError(f"structure refers to missing tensor {body!r}")
        return tensors[body][()] if kind == "scalar" else tensors[body]
    raise ValueError(f"unknown node kind {kind!r}")
