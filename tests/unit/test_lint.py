"""ruff (the style guide's linter) is clean on the whole tree, when it is installed (dev extra)."""

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(shutil.which("ruff") is None, reason="ruff not installed (pip install .[dev])")
def test_ruff_check_is_clean():
    result = subprocess.run(["ruff", "check", "disttrain", "tests", "examples"], cwd=ROOT,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
