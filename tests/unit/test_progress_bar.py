"""examples/mnist_cnn.py draws its tqdm bar on rank 0 only, and only when stdout is a terminal:
under disttrain-launch or a pipe each refresh would become a console line of its own."""

from __future__ import annotations

import importlib.util
import io
import os
import pathlib
import sys

import pytest

EXAMPLE = pathlib.Path(__file__).resolve().parents[2] / "examples" / "mnist_cnn.py"


@pytest.fixture(scope="module")
def shows_progress_bar():
    spec = importlib.util.spec_from_file_location("mnist_cnn_progress", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.shows_progress_bar


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("rank, stream, disabled, expected", [
    (0, _Terminal(), False, True),
    (1, _Terminal(), False, False),  # only rank 0 draws
    (0, _Terminal(), True, False),  # --no-progress
    (0, io.StringIO(), False, False),  # a pipe or a log file: one line per epoch instead
])
def test_decision(shows_progress_bar, rank, stream, disabled, expected):
    assert shows_progress_bar(rank, stream, disabled) is expected


def test_a_real_pty_counts_as_a_terminal_and_a_pipe_does_not(shows_progress_bar):
    leader, follower = os.openpty()
    read_end, write_end = os.pipe()
    try:
        with open(follower, "w", closefd=False) as tty, open(write_end, "w", closefd=False) as pipe:
            assert shows_progress_bar(0, tty) is True
            assert shows_progress_bar(0, pipe) is False
    finally:
        for fd in (leader, follower, read_end, write_end):
            os.close(fd)


def test_default_stream_is_stdout(shows_progress_bar, monkeypatch):
    monkeypatch.setattr(sys, "stdout", _Terminal())
    assert shows_progress_bar(0) is True
    monkeypatch.setattr(sys, "stdout", io.StringIO())
    assert shows_progress_bar(0) is False
