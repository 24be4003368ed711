"""What disttrain-launch checks before it starts anything: argparse types for its numbers, and
the files and directories it is given (script, hostfile, checkpoint directory, mpirun), so a
mistake is one line at once instead of a job that fails N times. Stdlib only."""

from __future__ import annotations

import argparse
import os
import tempfile


def _number(kind, minimum: float, inclusive: bool, what: str):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected {what}, got {text!r}") from None
        if value < minimum or (value == minimum and not inclusive) or value != value:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text}")
        return value

    parse.__name__ = kind.__name__  # NOTE: argparse names the type in "invalid int value"
    return parse


positive_int = _number(int, 1, True, "an integer >= 1")
nonnegative_int = _number(int, 0, True, "an integer >= 0")
positive_seconds = _number(float, 0.0, False, "a number of seconds > 0")
nonnegative_seconds = _number(float, 0.0, True, "a number of seconds >= 0 (0: no deadline)")


class PreflightError(Exception):
    """A launch argument that cannot work; the message is one line naming the argument."""


def check_script(script: str) -> None:
    if not os.path.isfile(script):
        raise PreflightError(f"script: {script!r} is not a file (looked in {os.getcwd()})")
    if not os.access(script, os.R_OK):
        raise PreflightError(f"script: {script!r} is not readable")


def check_hostfile(hostfile: str | None) -> None:
    if hostfile is None:
        return
    try:
        with open(hostfile) as f:
            f.read(1)
    except OSError as e:
        raise PreflightError(f"--hostfile: cannot read {hostfile!r}: {e.strerror or e}") from None


def check_mpirun(mpirun: str) -> None:
    if not os.path.isfile(mpirun):
        raise PreflightError(f"--mpirun: {mpirun!r} does not exist")
    if not os.access(mpirun, os.X_OK):
        raise PreflightError(f"--mpirun: {mpirun!r} is not executable")


def check_writable_dir(option: str, path: str) -> None:
    """Creates `path` if needed and proves it writable by writing a file there (os.access says
    yes to root on a read-only filesystem)."""
    if os.path.exists(path) and not os.path.isdir(path):
        raise PreflightError(f"{option}: {path!r} exists and is not a directory")
    try:
        os.makedirs(path, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".disttrain-write-test-"):
            pass
    except OSError as e:
        raise PreflightError(f"{option}: {path!r} is not a writable directory: "
                             f"{e.strerror or e}") from None
