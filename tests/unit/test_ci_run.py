""".ci/run: it runs the README's test command verbatim, installing everything itself, and any
nonzero pytest exit fails it (5, "no tests collected", included). Run with stub python3/pip/
python, so nothing is installed."""

from __future__ import annotations

import pathlib
import shutil
import subprocess

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
COMMAND = ('python3 -m venv .venv && . .venv/bin/activate && pip install -q -e ".[dev,parity]" '
           "&& python -m pytest -q")
# NOTE: `python3 -m venv .venv` makes an activate script that defines pip and python as shell
# functions logging their arguments; python (pytest) exits with $PYTEST_EXIT
STUB_PYTHON3 = """#!/usr/bin/env bash
mkdir -p .venv/bin
cat > .venv/bin/activate <<'ACTIVATE'
pip() { echo "pip $*" >> calls.log; }
python() { echo "python $*" >> calls.log; return "$PYTEST_EXIT"; }
ACTIVATE
"""


def test_readme_and_ci_run_the_same_command():
    assert COMMAND in (REPO / "README.md").read_text()
    assert COMMAND in (REPO / ".ci" / "run").read_text()


@pytest.mark.parametrize("pytest_exit", [0, 1, 5])
def test_ci_run_exits_with_pytests_code(tmp_path, pytest_exit):
    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("bash is not installed")
    (tmp_path / ".ci").mkdir()
    shutil.copy(REPO / ".ci" / "run", tmp_path / ".ci" / "run")
    stubs = tmp_path / "stubs"
    stubs.mkdir()
    (stubs / "python3").write_text(STUB_PYTHON3)
    (stubs / "python3").chmod(0o755)
    env = {"PATH": f"{stubs}:/usr/bin:/bin", "PYTEST_EXIT": str(pytest_exit)}
    done = subprocess.run([bash, str(tmp_path / ".ci" / "run")], env=env, capture_output=True,
                          text=True, timeout=30, check=False)
    assert done.returncode == pytest_exit, done.stderr
    assert (tmp_path / "calls.log").read_text().splitlines() == [
        "pip install -q -e .[dev,parity]", "python -m pytest -q"]
