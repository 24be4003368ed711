"""End to end: examples/char_lm.py trains each sequence model a few steps on the stdlib corpus
(loss goes down) and --sample generates text from the checkpoint it saved."""

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

import disttrain as dt

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "char_lm.py"
TINY = ["--epochs", "2", "--steps-per-epoch", "12", "--batch-size", "8", "--seq-len", "32",
        "--max-bytes", "60000", "--files", "6", "--layers", "1", "--d-model", "32",
        "--hidden", "64", "--heads", "2", "--ff", "64", "--lr", "1e-2", "--checkpoint-dir", ""]


def _load_example():
    spec = importlib.util.spec_from_file_location("char_lm", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_corpus_is_a_fixed_selection_and_windows_shift_by_one():
    example = _load_example()
    first = example.stdlib_corpus(5, seed=3, max_bytes=20000)
    assert first == example.stdlib_corpus(5, seed=3, max_bytes=20000)
    assert first != example.stdlib_corpus(5, seed=4, max_bytes=20000)
    assert len(first) == 20000
    x, y = example.windows(first, 16)
    assert x.shape == y.shape == ((20000 - 1) // 16, 16) and x.dtype == np.int64
    np.testing.assert_array_equal(x[:, 1:], y[:, :-1])
    assert y[0, -1] == first[16]
    with pytest.raises(ValueError, match="10 bytes is too little text for one window of "
                                         "--seq-len 16"):
        example.windows(first[:10], 16)


@pytest.mark.parametrize("model", ["lstm", "gru", "transformer"])
def test_tiny_run_learns_and_samples(model, tmp_path, capsys):
    example = _load_example()
    path = str(tmp_path / f"{model}.safetensors")
    history = example.main(["--model", model, "--checkpoint", path] + TINY)
    out = capsys.readouterr().out
    assert [h["epoch"] for h in history] == [1, 2]
    assert history[1]["loss"] < history[0]["loss"] - 0.3, history
    assert history[1]["val_bpc"] < 8.0 and history[1]["tokens_per_s"] > 0
    assert "bits/char" in out and "tokens/s" in out and f"saved the model to {path}" in out
    saved = dt.load(path)
    assert saved["config"]["model"] == model
    text = example.main(["--sample", "40", "--prompt", "import ", "--checkpoint", path])
    assert text.startswith("import ") and len(text.encode("utf-8", "replace")) >= 40


def _run_two_ranks(run_mpi_job, tmp_path, extra):
    path, log = tmp_path / "two.safetensors", tmp_path / "two.json"
    argv = [sys.executable, str(EXAMPLE), "--checkpoint", str(path), "--json", str(log)]
    code, out, _ = run_mpi_job(2, argv + TINY + extra, tmp_path, timeout_s=120)
    return code, out, path, log


def test_two_rank_data_parallel_and_pipeline_train_and_save(tmp_path, run_mpi_job):
    for extra, setup in ((["--model", "transformer"], "2 rank(s)"),
                         (["--model", "transformer", "--pipeline", "2"], "dp=1 x pp=2")):
        code, out, path, log = _run_two_ranks(run_mpi_job, tmp_path, extra)
        assert code == 0, out
        assert setup in out and out.count("epoch   2") == 1, out  # rank 0 prints, once
        history = json.loads(log.read_text())
        assert history[1]["loss"] < history[0]["loss"] - 0.3, history
        text = _load_example().main(["--sample", "20", "--checkpoint", str(path)])
        assert text.startswith("def ")


def test_pipeline_needs_the_transformer(tmp_path, run_mpi_job):
    code, out, _, _ = _run_two_ranks(run_mpi_job, tmp_path, ["--model", "gru",
                                                             "--pipeline", "2"])
    assert code != 0
    assert "char_lm (rank 0): --pipeline 2 needs --model transformer" in out, out
    assert "got --model gru on 2 ranks" in out
