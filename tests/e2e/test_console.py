"""Console output of the main job (examples/mnist_cnn.py): one line per epoch when stdout is a
pipe or the launcher's log (no tqdm `\\r` frames, which the launcher's console turned into ~30
lines an epoch), and the progress bar on a terminal."""

from __future__ import annotations

import fcntl
import os
import pathlib
import re
import select
import struct
import subprocess
import sys
import termios
import time

EXAMPLE = pathlib.Path(__file__).resolve().parents[2] / "examples" / "mnist_cnn.py"


def _epoch_lines(text: str) -> list[str]:
    """The epoch summaries ("epoch   1  loss ..."), not tqdm's frames ("epoch 1:  30%|...")."""
    return [line for line in text.splitlines() if re.match(r"epoch +\d+  loss ", line)]


def _tqdm_frames(text: str) -> list[str]:
    """tqdm's frames ("epoch 1:  30%|###  | 7/23 [...]"), wherever their `\r`s went (the
    launcher's console reads rank 0's log in text mode, which turns each into a line)."""
    return re.findall(r"\d+%\|", text)


def test_piped_stdout_gets_one_line_per_epoch(tmp_path):
    done = subprocess.run([sys.executable, str(EXAMPLE), "--epochs", "2"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert len(_epoch_lines(done.stdout)) == 2, done.stdout
    assert "\r" not in done.stdout + done.stderr, (done.stdout, done.stderr)
    assert not _tqdm_frames(done.stdout + done.stderr), (done.stdout, done.stderr)


def _read_all(fd: int, proc: subprocess.Popen, timeout_s: float) -> str:
    chunks, deadline = [], time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.1)
        if ready:
            try:
                data = os.read(fd, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        elif proc.poll() is not None:
            break
    return b"".join(chunks).decode(errors="replace")


def test_terminal_stdout_gets_the_progress_bar(tmp_path):
    leader, follower = os.openpty()
    # NOTE: a fresh pty is 0 columns wide, and tqdm draws nothing at width 0
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    proc = subprocess.Popen([sys.executable, str(EXAMPLE), "--epochs", "1"], cwd=tmp_path,
                            stdout=follower, stderr=subprocess.PIPE)
    os.close(follower)
    try:
        output = _read_all(leader, proc, timeout_s=120)
        assert proc.wait(timeout=30) == 0, output + proc.stderr.read().decode()
    finally:
        os.close(leader)
        proc.stderr.close()
    assert len(_tqdm_frames(output)) > 2 and "epoch 1:" in output, output
    assert len(_epoch_lines(output.replace("\r", "\n"))) == 1, output


def test_under_the_launcher_one_line_per_epoch(tmp_path, mpirun):
    done = subprocess.run([sys.executable, "-m", "disttrain.launch", "-n", "2", str(EXAMPLE),
                           "--epochs", "2"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    assert len(_epoch_lines(done.stdout)) == 2, done.stdout
    assert not _tqdm_frames(done.stdout + done.stderr), (done.stdout, done.stderr)
    logs = {path.resolve() for path in tmp_path.glob("logs/**/rank-*.log")}  # `latest` links
    assert len(logs) == 2, sorted(str(p) for p in tmp_path.rglob("*"))
    for log in logs:
        text = log.read_bytes().decode(errors="replace")  # NOTE: keeps `\r` as written
        assert "\r" not in text and not _tqdm_frames(text), (log, text)
