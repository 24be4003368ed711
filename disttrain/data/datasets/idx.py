"""The IDX file format of MNIST (raw or gzip): read_idx and write_idx, with struct and numpy.

Never pickle. Imports numpy and the standard library only.
"""

from __future__ import annotations

import gzip
import os
import struct
import zlib

import numpy as np

# IDX dtype codes (third magic byte); data is big-endian.
_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_CODES = {np.dtype(v).newbyteorder("="): k for k, v in _DTYPES.items()}


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Reads an IDX file (gzip-compressed or raw, told apart by content) into a numpy array.

    Args:
        path: the file.

    Returns:
        A writable native-byte-order array with the shape and dtype the header declares.

    Raises:
        ValueError: naming the file, for bad gzip data, a bad magic number or a data size
            that does not match the header's dimensions.

    Example:
        >>> read_idx("train-labels-idx1-ubyte.gz").shape  # doctest: +SKIP
        (60000,)
    """
    with open(path, "rb") as f:
        raw = f.read()
    if raw[:2] == b"\x1f\x8b":  # gzip magic
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as e:
            raise ValueError(f"IDX file {path}: corrupt or truncated gzip data ({e})") from e
    if len(raw) < 4 or raw[:2] != b"\0\0" or raw[2] not in _DTYPES or raw[3] == 0:
        raise ValueError(
            f"IDX file {path}: bad magic number 0x{raw[:4].hex()}; expected two zero bytes, a "
            f"dtype code in {{{', '.join(f'0x{c:02x}' for c in _DTYPES)}}} and ndim >= 1 "
            "(e.g. 0x00000803 for images, 0x00000801 for labels). Is this an IDX file?")
    ndim, header_bytes = raw[3], 4 + 4 * raw[3]
    if len(raw) < header_bytes:
        raise ValueError(f"IDX file {path}: truncated header: {ndim} dimensions need "
                         f"{header_bytes} header bytes but the file has {len(raw)}")
    dims = struct.unpack(f">{ndim}I", raw[4:header_bytes])
    dtype = np.dtype(_DTYPES[raw[2]])
    expected = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    actual = len(raw) - header_bytes
    if actual != expected:
        problem = "truncated" if actual < expected else "has trailing bytes"
        raise ValueError(f"IDX file {path}: {problem}: the header says shape {dims} of "
                         f"{dtype.newbyteorder('=').name} ({expected} data bytes) but the file "
                         f"holds {actual} data bytes")
    array = np.frombuffer(raw, dtype, offset=header_bytes).reshape(dims)
    return array.astype(dtype.newbyteorder("="))


def write_idx(path: str | os.PathLike, array: np.ndarray, compress: bool | None = None) -> None:
    """Writes `array` as an IDX file, gzip-compressed (mtime 0) when `compress` or path ends .gz.

    Args:
        path: the file to write.
        array: uint8, int8, int16, int32, float32 or float64 array with ndim >= 1.
        compress: gzip the file; default: whether `path` ends with ".gz".

    Example:
        >>> write_idx("labels-idx1-ubyte.gz", np.arange(10, dtype=np.uint8))  # doctest: +SKIP
    """
    array = np.asarray(array)
    code = _CODES.get(array.dtype.newbyteorder("="))
    if code is None or array.ndim == 0:
        raise ValueError(f"write_idx: array must have ndim >= 1 and a dtype in "
                         f"{sorted(str(d) for d in _CODES)}, got ndim {array.ndim}, dtype "
                         f"{array.dtype}")
    header = struct.pack(f">BBBB{array.ndim}I", 0, 0, code, array.ndim, *array.shape)
    raw = header + array.astype(_DTYPES[code]).tobytes()
    if compress if compress is not None else str(path).endswith(".gz"):
        # NOTE: mtime=0 (and the name GzipFile stores) make the bytes reproducible.
        with gzip.GzipFile(path, "wb", mtime=0) as f:
            f.write(raw)
    else:
        with open(path, "wb") as f:
            f.write(raw)
