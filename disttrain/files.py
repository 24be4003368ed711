"""Crash-safe file writes: the one atomic-write helper of disttrain. Stdlib only (the
heartbeat writer and the launcher use it without importing numpy)."""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator


def fsync_dir(path: str | os.PathLike) -> None:
    """Makes the entries of directory `path` (a rename, a new file) durable."""
    if not hasattr(os, "O_DIRECTORY"):  # NOTE: Windows cannot open a directory to fsync it
        return
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, *, durable: bool = True) -> Iterator[str]:
    """Yields a temporary path next to `path`; when the block ends without an exception the
    file written there replaces `path` in one rename, so readers (and a crash) see the old file
    or the new one, never a torn one. On an exception the temporary file is removed.

    Args:
        path: the destination file; replaced if it exists.
        durable: fsync the file before the rename and the directory after it, so the new
            content survives a power loss (checkpoints); False only keeps the rename atomic
            (files rewritten every second, worthless after a crash).

    Example:
        >>> import os, tempfile
        >>> path = os.path.join(tempfile.mkdtemp(), "state.json")
        >>> with atomic_write(path) as tmp:
        ...     with open(tmp, "w") as f:
        ...         _ = f.write("{}")
        >>> open(path).read()
        '{}'
    """
    path = os.fspath(path)
    # NOTE: pid and thread in the name: a background checkpoint thread and the training thread
    # may write side by side, and ranks may share the directory
    tmp = f"{path}.tmp-{os.getpid()}-{threading.get_ident()}"
    try:
        yield tmp
        if durable:
            fd = os.open(tmp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise
    if durable:
        fsync_dir(os.path.dirname(os.path.abspath(path)))


def write_text_atomic(path: str | os.PathLike, text: str, *, durable: bool = True) -> None:
    """Writes `text` (UTF-8) to `path` through `atomic_write`.

    Example:
        >>> import os, tempfile
        >>> path = os.path.join(tempfile.mkdtemp(), "latest")
        >>> write_text_atomic(path, "step-00000100\\n")
    """
    with atomic_write(path, durable=durable) as tmp, open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
