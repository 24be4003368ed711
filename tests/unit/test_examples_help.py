"""Every example's `--help` exits 0 and shows a description that is not cut mid-sentence (as
`description=__doc__.split("\\n")[0]` cut a docstring whose first sentence runs on)."""

from __future__ import annotations

import os
import pathlib
import re
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
EXAMPLES = ["mnist_cnn", "train_data_parallel", "train_pipeline", "scale_benchmark",
            "allreduce_benchmark", "benchmark_core", "checkpoint_benchmark", "plot_training",
            "scaling_model", "reduce_scatter_benchmark", "sync_breakdown"]
# NOTE: argparse's section headings; the description sits between the usage and the first
SECTION = re.compile(r"^(options|optional arguments|positional arguments):$", re.MULTILINE)


def description_of(help_text: str) -> str:
    """The description in argparse `--help` output: after the usage block's blank line, before
    the first argument section."""
    after_usage = help_text.split("\n\n", 1)[1] if "\n\n" in help_text else ""
    section = SECTION.search(after_usage)
    return (after_usage[:section.start()] if section else after_usage).strip("\n")


def cut_mid_sentence(description: str) -> bool:
    """Whether the description's last prose line (the last line not indented as a code
    example) fails to end a sentence (. ! ?), or there is no prose at all."""
    prose = [line.rstrip() for line in description.splitlines()
             if line.strip() and not line.startswith((" ", "\t"))]
    return not prose or re.search(r"[.!?][\"')\]]*$", prose[-1]) is None


@pytest.mark.parametrize("text, cut", [
    ("All-reduce bus bandwidth of disttrain's Communicator, of raw mpi4py,", True),
    ("Times one full training step at 1 BLAS thread:", True),
    ("What a checkpoint costs (10M parameters,", True),
    ("", True),
    ("    python examples/x.py   # only a code line", True),
    ("Trains a CNN.", False),
    ("Trains a CNN (on digits).\n\n    python examples/x.py --epochs 2\n", False),
    ("First paragraph.\nSecond line of it, then (a note.)", False),
])  # fmt: skip
def test_cut_mid_sentence(text, cut):
    assert cut_mid_sentence(text) is cut


def test_description_of_argparse_help():
    text = ("usage: x.py [-h]\n          [--n N]\n\nLine one.\n\n    code\n\noptions:\n"
            "  -h, --help  show this help message and exit\n")
    assert description_of(text) == "Line one.\n\n    code"


@pytest.mark.parametrize("name", EXAMPLES)
def test_help_exits_0_with_a_complete_description(name):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    done = subprocess.run([sys.executable, str(REPO / "examples" / f"{name}.py"), "--help"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=120,
                          check=False)
    assert done.returncode == 0, f"{name}.py --help exited {done.returncode}:\n{done.stderr}"
    description = description_of(done.stdout)
    assert not cut_mid_sentence(description), (
        f"{name}.py --help: the description ends mid-sentence (pass the whole module docstring "
        f"with RawDescriptionHelpFormatter):\n{description}")
