"""disttrain.onnx.export's errors (an op with no converter names the op and the module path;
bad arguments name the argument), the converter registry (the extension point), and that
tracing leaves Function.apply and Module.__call__ as they were."""

from __future__ import annotations

import io
import subprocess
import sys

import numpy
import pytest
from onnx_runtime_check import Lambda, check_export, export_bytes, onnx, randn, session

import disttrain as dt  # noqa: E402
import disttrain.nn as nn  # noqa: E402
import disttrain.nn.functional as F  # noqa: E402
from disttrain.autograd import Function  # noqa: E402
from disttrain.nn.module import Module  # noqa: E402
from disttrain.onnx import (  # noqa: E402
    ExportError,
    export,
    register_function_converter,
    register_module_converter,
)


class Xyz(Function):
    def forward(self, x):
        return x * 3

    def backward(self, grad):
        return grad * 3


class Custom(nn.Module):
    def forward(self, x):
        return Xyz.apply(x)


def _features():
    return nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Identity(), Custom())


def test_unsupported_function_names_op_and_module_path():
    model = nn.Sequential()
    model.features = _features()
    with pytest.raises(ExportError, match=r"onnx.export: cannot export Function 'Xyz'.*"
                       r"\(produced inside module 'features.3' \(Custom\)\)"):
        export(model, dt.randn(2, 4), io.BytesIO())


def test_loss_in_forward_is_named():
    model = Lambda(lambda m, x: F.cross_entropy(x, dt.tensor([0, 1])))
    with pytest.raises(ExportError, match=r"cannot export Function 'CrossEntropy'.*"
                       r"module '<root>' \(Lambda\)"):
        export(model, dt.randn(2, 3), io.BytesIO())


def test_unused_unsupported_op_is_not_converted():
    model = Lambda(lambda m, x: (Xyz.apply(x), F.cross_entropy(x, x.argmax(1)), x + 1)[2])
    check_export(model, randn(3))


def test_argmax_of_whole_tensor():
    model = Lambda(lambda m, x: x.argmax())
    check_export(model, lambda n: dt.randn(2, 5), batches=(2,), dynamic=False)


def test_boolean_mask_index_is_refused():
    model = Lambda(lambda m, x: x[m.keep])
    model.register_buffer("keep", dt.tensor(numpy.array([True, False, True])))
    with pytest.raises(ExportError, match="boolean mask index"):
        export(model, dt.randn(3, 2), io.BytesIO())


def test_per_sample_attention_mask_is_refused():
    mha = nn.MultiheadAttention(4, 2, batch_first=True)
    pad = dt.tensor(numpy.array([[False, False, True], [False, False, False]]))
    model = Lambda(lambda m, x: m.mha(x, x, x, key_padding_mask=pad, need_weights=False)[0],
                   mha=mha)
    with pytest.raises(ExportError, match="per-sample bool mask.*module 'mha'"):
        export(model, dt.randn(2, 3, 4), io.BytesIO())


@pytest.mark.parametrize("kwargs,error,match", [
    ({"opset_version": 12}, ValueError, r"opset_version must be an int in \[13, \d+\], got 12"),
    ({"export_params": False}, ValueError, "export_params=False is not supported"),
    ({"input_names": ["a", "b"]}, ValueError, r"input_names must be at most 1 distinct"),
    ({"output_names": ["y", "y"]}, ValueError, "output_names must be at most"),
    ({"dynamic_axes": {"z": [0]}}, ValueError, "dynamic_axes names 'z', which is not an input"),
    ({"dynamic_axes": {"input": [2]}}, ValueError, r"dynamic_axes\['input'\] has axis 2"),
])
def test_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        export(nn.Linear(3, 2), dt.randn(2, 3), io.BytesIO(), **kwargs)


def test_bad_model_file_and_args():
    with pytest.raises(TypeError, match="model must be a disttrain.nn.Module, got function"):
        export(lambda x: x, dt.randn(2), io.BytesIO())
    with pytest.raises(TypeError, match="f must be a path or a binary file object, got int"):
        export(nn.Linear(3, 2), dt.randn(2, 3), 3)
    with pytest.raises(ExportError, match="args must hold at least one Tensor"):
        export(nn.Linear(3, 2), (3,), io.BytesIO())
    with pytest.raises(ExportError, match="returned no Tensor"):
        export(Lambda(lambda m, x: None), dt.randn(2), io.BytesIO())


def test_tracing_leaves_apply_and_call_untouched():
    apply, call = Function.__dict__["apply"], Module.__call__
    export(nn.Linear(3, 2), dt.randn(2, 3), io.BytesIO())
    with pytest.raises(ExportError):
        export(Custom(), dt.randn(2, 3), io.BytesIO())
    assert Function.__dict__["apply"] is apply and Module.__call__ is call
    assert F.leaky_relu.__name__ == "leaky_relu" and not hasattr(F.leaky_relu, "__wrapped__")


def test_export_is_not_reentrant():
    inner = nn.Linear(2, 2)
    model = Lambda(lambda m, x: export(inner, x, io.BytesIO()))
    with pytest.raises(RuntimeError, match="already exporting"):
        export(model, dt.randn(2, 2), io.BytesIO())


def test_writes_a_path_and_a_file(tmp_path):
    path = tmp_path / "m.onnx"
    proto = export(nn.Linear(3, 2), dt.randn(2, 3), path)
    assert onnx.load(str(path)) == proto
    with open(tmp_path / "n.onnx", "wb") as f:
        export(nn.Linear(3, 2), (dt.randn(2, 3), {}), f)
    onnx.checker.check_model(onnx.load(str(tmp_path / "n.onnx")))


def test_import_does_not_import_onnx():
    code = "import sys, disttrain as dt; dt.onnx.export; assert 'onnx' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


# ---------------------------------------------------------------- the extension point
class Scale(Function):
    def forward(self, x, factor):
        return x * factor

    def backward(self, grad):
        raise NotImplementedError


class Doubler(nn.Module):
    def forward(self, x):
        return Scale.apply(x, factor=2.0) - x * 0.0


def test_registered_function_converter():
    def scale(g, inputs, call):
        return g.node("Mul", [inputs[0], g.constant(call.params["factor"], numpy.float32)])

    register_function_converter(Scale, scale)
    check_export(Lambda(lambda m, x: Scale.apply(x, factor=1.5) + 1), randn(3))


def test_registered_module_converter_exports_the_whole_module():
    register_function_converter(Scale, lambda g, inputs, call: g.node("Identity", inputs))
    calls = []

    def doubler(g, module, call):
        calls.append(call)
        return g.node("Add", [g.value(call.inputs[0])] * 2)

    register_module_converter(Doubler, doubler)
    model = nn.Sequential(nn.Linear(3, 3), Doubler())
    proto = check_export(model, randn(3))
    ops = [n.op_type for n in proto.graph.node]
    assert ops == ["Gemm", "Add"] and calls[0].path == "1" and calls[0].module_type == "Doubler"


def test_module_converter_when_declines_and_wrong_output_count():
    register_function_converter(Scale, lambda g, inputs, call: g.node(
        "Mul", [inputs[0], g.constant(2.0, numpy.float32)]))
    register_module_converter(Doubler, lambda g, module, call: ["a", "b"],
                              when=lambda module, bound: module.training)
    check_export(Doubler(), randn(3))  # eval: declined, traced inside
    register_module_converter(Doubler, lambda g, module, call: ["a", "b"])
    with pytest.raises(ExportError, match="returned 2 values for 1 output Tensors"):
        export(Doubler(), dt.randn(2, 3), io.BytesIO())


def test_register_rejects_non_classes_and_non_callables():
    with pytest.raises(TypeError, match="function_class must be a class"):
        register_function_converter("Scale", lambda *a: None)
    with pytest.raises(TypeError, match="converter must be callable"):
        register_module_converter(Doubler, None)


class TwoInputs(nn.Module):
    def forward(self, a, b=None):
        return a * b + a


def test_onnx_model_with_two_inputs_and_kwargs():
    model = TwoInputs()
    args = (dt.randn(2, 3), {"b": dt.randn(2, 3)})
    data = export_bytes(model, args, input_names=["a", "b"], dynamic_axes={"a": [0], "b": [0]})
    sess = session(data)
    for n in (2, 4):
        a, b = dt.randn(n, 3), dt.randn(n, 3)
        got = sess.run(None, {"a": a.numpy(), "b": b.numpy()})[0]
        numpy.testing.assert_allclose(got, (a * b + a).numpy(), rtol=1e-6)


# ---------------------------------------------------------------- dynamic axes: the second run
def test_constant_that_fixes_the_batch_is_an_error():
    model = Lambda(lambda m, x: x + dt.tensor(numpy.ones(x.shape, numpy.float32)))
    with pytest.raises(ExportError, match=r"a constant of shape \(2, 3\) would fix a dynamic "
                       r"axis.*module '<root>' \(Lambda\)"):
        export(model, dt.randn(2, 3), io.BytesIO(), dynamic_axes={"input": [0]})
    export(model, dt.randn(2, 3), io.BytesIO())  # NOTE: without dynamic axes it is exact


def test_position_table_with_a_dynamic_sequence_axis_is_an_error():
    from test_onnx_models import _example

    cfg = {"model": "transformer", "layers": 1, "d_model": 8, "hidden": 8, "heads": 2,
           "ff": 16, "dropout": 0.0, "seq_len": 12}
    model = _example("char_lm").build_model(cfg)
    ids = dt.randint(0, 256, (2, 6))
    with pytest.raises(ExportError, match=r"would fix a dynamic axis.*module '0' \(TokenPos"):
        export(model, ids, io.BytesIO(), dynamic_axes={"input": [0, 1]})


def test_reshape_of_a_middle_dynamic_axis():
    """(T, B, F) -> (T * B, F) -> (T, B, 3) with B dynamic: the second run shows the -1 goes
    on B, not on the first dim."""
    model = Lambda(lambda m, x: m.lin(x.reshape(-1, 4)).reshape(x.shape[0], x.shape[1], 3),
                   lin=nn.Linear(4, 3))
    check_export(model, lambda n: dt.randn(5, n, 4), batch_axis=1)
