"""Shared by tests/unit/test_onnx*.py: export a model, run the file in ONNX Runtime (CPU) and
compare with disttrain's own output, on the traced batch and on another batch size."""

from __future__ import annotations

import io

import numpy
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

import disttrain as dt  # noqa: E402
import disttrain.nn as nn  # noqa: E402
from disttrain.onnx import export  # noqa: E402


class Lambda(nn.Module):
    """A module whose forward is `fn` (functional ops under test), with optional children."""

    def __init__(self, fn, **children):
        super().__init__()
        self.fn = fn
        for name, child in children.items():
            setattr(self, name, child)

    def forward(self, *args):
        return self.fn(self, *args)


def export_bytes(model, args, **kwargs) -> bytes:
    buffer = io.BytesIO()
    export(model, args, buffer, **kwargs)
    return buffer.getvalue()


def session(data: bytes):
    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])


def run_both(model, args: tuple, sess, names) -> None:
    """disttrain's outputs and ONNX Runtime's on `args`, compared."""
    with dt.no_grad():
        expected = model(*args)
    expected = [t.numpy() for t in _flat(expected)]
    feeds = {n: a.numpy() for n, a in zip(names, args)}
    got = sess.run(None, feeds)
    assert len(got) == len(expected)
    for g, e in zip(got, expected):
        assert g.shape == e.shape, (g.shape, e.shape)
        numpy.testing.assert_allclose(g, e, rtol=1e-4, atol=2e-5)


def _flat(value) -> list:
    if isinstance(value, (tuple, list)):
        return [t for v in value for t in _flat(v)]
    return [] if value is None else [value]


def check_export(model, make_input, batches=(2, 3), dynamic=True, opset_version=17,
                 batch_axis=0, output_axes=None):
    """Exports `model` traced on make_input(batches[0]) (a Tensor or tuple of Tensors) with
    the batch axis dynamic, checks the file, then compares ONNX Runtime with disttrain on
    every batch size in `batches`. Returns the ModelProto."""
    args = make_input(batches[0])
    args = args if isinstance(args, tuple) else (args,)
    model.eval()
    with dt.no_grad():
        outputs = _flat(model(*args))
    input_names = [f"in{i}" for i in range(len(args))]
    output_names = [f"out{i}" for i in range(len(outputs))]
    axes = None
    if dynamic:
        axes = {n: [batch_axis] for n in input_names}
        axes.update({n: [batch_axis if output_axes is None else output_axes[i]]
                     for i, n in enumerate(output_names)})
    data = export_bytes(model, args, input_names=input_names, output_names=output_names,
                        dynamic_axes=axes, opset_version=opset_version)
    proto = onnx.load_from_string(data)
    onnx.checker.check_model(proto, full_check=True)
    sess = session(data)
    for batch in batches:
        new = make_input(batch)
        run_both(model, new if isinstance(new, tuple) else (new,), sess, input_names)
    return proto


def randn(*shape):
    return lambda n: dt.randn(n, *shape)
