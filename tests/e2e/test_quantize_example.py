"""End to end: examples/quantize.py trains the main job's CNN briefly, quantizes it to int8
and prints the float32 vs int8 table; the int8 model keeps the accuracy (within 1 point) at
<= 0.3x the file size, and ONNX Runtime's int8 outputs agree with disttrain's. A second run
loads the float weights the first one wrote (--checkpoint) instead of training."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("onnxruntime")
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "quantize.py"
ROWS = ("validation accuracy (disttrain)", "validation accuracy (ONNX Runtime)",
        "file size, safetensors (bytes)", "file size, ONNX (bytes)",
        "latency batch 1, disttrain (ms)", "latency batch 256, disttrain (ms)",
        "latency batch 1, onnxruntime (ms)", "latency batch 256, onnxruntime (ms)")


def _run(args: list, tmp_path: Path) -> tuple[str, dict]:
    out = tmp_path / "result.json"
    proc = subprocess.run([sys.executable, str(EXAMPLE), "--repeats", "2", "--json", str(out),
                           *args], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout, json.loads(out.read_text())


def _table(stdout: str) -> dict:
    """{row label: (float32, int8, ratio) strings} of the printed table."""
    rows = {}
    for line in stdout.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and len(cells) == 4 and cells[0] in ROWS:
            rows[cells[0]] = tuple(cells[1:])
    return rows


def test_quantize_example_table_and_bounds(tmp_path):
    stdout, result = _run(["--epochs", "2", "--out-dir", str(tmp_path / "files")], tmp_path)
    table = _table(stdout)
    assert list(table) == list(ROWS), stdout
    assert all(ratio.endswith("x") for _, _, ratio in table.values())
    f32, i8 = result["float32"], result["int8"]
    assert f32["accuracy"] > 0.8
    assert i8["accuracy"] >= f32["accuracy"] - 0.01
    assert i8["file_bytes"] <= 0.3 * f32["file_bytes"]
    assert i8["onnx_file_bytes"] <= 0.3 * f32["onnx_file_bytes"]
    assert result["agreement"]["argmax_agreement"] >= 0.99
    assert result["agreement"]["max_abs_logit_diff"] <= 2 * result["agreement"]["output_scale"]
    assert abs(i8["onnx_accuracy"] - i8["accuracy"]) <= 0.01
    for runtime in ("disttrain", "onnxruntime"):
        for batch in (1, 256):
            assert i8[f"{runtime}_ms_batch{batch}"] > 0 and f32[f"{runtime}_ms_batch{batch}"] > 0
    assert table["file size, safetensors (bytes)"][0] == f"{f32['file_bytes']:,}"

    checkpoint = tmp_path / "files" / "float32.safetensors"
    _, again = _run(["--checkpoint", str(checkpoint)], tmp_path)
    assert again["float32"]["accuracy"] == f32["accuracy"]
    assert again["int8"]["accuracy"] == i8["accuracy"]
