"""save/load of (nested) state dicts as safetensors files; never pickle. Imports only backend
and files (the atomic write)."""

from __future__ import annotations

import errno
import json
import os
import re

import numpy
from safetensors import SafetensorError, safe_open
from safetensors.numpy import save_file

from disttrain.backend import asnumpy, is_cupy_array
from disttrain.files import atomic_write

FORMAT = "disttrain"
FORMAT_VERSION = "1"
STRUCTURE_KEY = "disttrain.structure"  # __metadata__ key holding the JSON structure
_DTYPES = (
    "bool", "uint8", "int8", "uint16", "int16", "uint32", "int32", "uint64", "int64",
    "float16", "float32", "float64", "complex64",
)  # fmt: skip
_INT_RE = re.compile(r"-?[0-9]+")


def save(obj: dict, path: str | os.PathLike) -> None:
    """Write a (nested) dict of arrays and plain values to `path` as a safetensors file.

    Arrays (numpy, cupy, or disttrain Tensors) become safetensors tensors; the rest of the
    structure (python and numpy scalars, str, None, lists, tuples, dicts with str or int keys)
    is stored as JSON in the header, so `load` rebuilds it exactly. A flat ``{str: array}``
    dict (a model state_dict) keeps its keys as tensor names, so
    ``safetensors.torch.load_file(path)`` reads it into PyTorch directly. The write is atomic:
    a crash leaves either the old file or the new one, never a torn one.

    Args:
        obj: the dict to save, e.g. ``model.state_dict()``, ``optimizer.state_dict()`` or a
            checkpoint ``{"model": ..., "optimizer": ..., "step": 10}``.
        path: destination file (conventionally ``*.safetensors``); replaced if it exists.

    Example:
        >>> import os, tempfile, numpy
        >>> path = os.path.join(tempfile.mkdtemp(), "model.safetensors")
        >>> save({"fc.weight": numpy.ones((2, 3), numpy.float32)}, path)
        >>> load(path)["fc.weight"].shape
        (2, 3)
    """
    path = os.fspath(path)
    if not isinstance(obj, dict):
        raise TypeError(f"save: expected a dict (e.g. a state_dict), got {type(obj).__name__}")
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise FileNotFoundError(errno.ENOENT, "save: directory does not exist", directory)
    # NOTE: a flat {str: array} dict keeps its keys verbatim as tensor names (PyTorch interop);
    # otherwise names are escaped key paths. Either way the JSON structure records each name.
    is_flat = all(isinstance(k, str) and _is_array(v) for k, v in obj.items())
    tensors: dict[str, numpy.ndarray] = {}
    structure = _encode(obj, (), tensors, is_flat)
    metadata = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        STRUCTURE_KEY: json.dumps(structure, separators=(",", ":")),
    }
    with atomic_write(path) as tmp:
        save_file(tensors, tmp, metadata=metadata)


def load(path: str | os.PathLike) -> dict:
    """Read a file written by `save` (exact structure) or any safetensors file ({name: array}).

    Never unpickles: a pickle or ``torch.save`` file is rejected with a ValueError, unexecuted.

    Args:
        path: a ``.safetensors`` file.

    Returns:
        The saved dict with numpy arrays in place of arrays and Tensors (dtypes preserved),
        int keys as int and tuples as tuples; ``{name: array}`` for files from other tools.

    Example:
        >>> import os, tempfile, numpy
        >>> path = os.path.join(tempfile.mkdtemp(), "opt.safetensors")
        >>> save({"state": {0: {"step": 3.0}}, "param_groups": [{"betas": (0.9, 0.999)}]}, path)
        >>> load(path)["param_groups"][0]["betas"]
        (0.9, 0.999)
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(errno.ENOENT, "load: no such file", path)
    if os.path.isdir(path):
        raise IsADirectoryError(errno.EISDIR, "load: expected a file, got a directory", path)
    metadata, tensors = _read(path)
    if metadata.get("format") != FORMAT:
        return tensors
    version = metadata.get("format_version")
    if version != FORMAT_VERSION:
        raise ValueError(
            f"{path}: disttrain format_version {version!r} is not supported (this disttrain "
            f"reads {FORMAT_VERSION!r}); upgrade disttrain to load it"
        )
    try:
        return _decode(json.loads(metadata[STRUCTURE_KEY]), tensors)
    except (KeyError, ValueError, TypeError, RecursionError) as e:
        reason = f"{type(e).__name__}: {e}"
        raise ValueError(f"{path}: disttrain metadata is corrupt ({reason})") from None


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


def _read(path: str) -> tuple[dict, dict]:
    """(metadata, {name: array}) of a safetensors file, with errors that name the file."""
    try:
        with safe_open(path, framework="np") as f:
            metadata = f.metadata() or {}
            tensors = {}
            for name in f.keys():
                try:
                    tensors[name] = f.get_tensor(name)
                except TypeError as e:  # a dtype numpy lacks, e.g. bfloat16
                    raise ValueError(
                        f"{path}: tensor {name!r} cannot be read into numpy ({e}); convert it "
                        "to float32 before saving"
                    ) from None
    except SafetensorError as e:
        raise ValueError(f"{path}: not a valid safetensors file ({e}){_hint(path)}") from None
    except OSError as e:  # NOTE: safetensors' I/O errors do not name the file
        raise OSError(e.errno, f"load: cannot read ({e.strerror or e})", path) from None
    return metadata, tensors


def _hint(path: str) -> str:
    with open(path, "rb") as f:
        head = f.read(4)
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
