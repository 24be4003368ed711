"""Export to ONNX: `disttrain.onnx.export(model, args, f, ...)`, torch.onnx.export's signature.

The forward is traced in eval mode (every Function.apply, registered module and registered
functional is recorded), each recorded call becomes ONNX nodes through its converter, and the
model is checked with onnx.checker. Other modules extend the exporter through the registry:
`register_function_converter(FunctionClass, fn)`, `register_module_converter(ModuleClass, fn)`
(a whole module as nodes, not traced inside: e.g. quantized layers) and
`register_functional_converter(name, fn)`, `register_tensor_method_converter(name, fn)`; see
disttrain.onnx.registry for the signatures.

Importing this package does not import the onnx package (export does, on first call).

Example:
    >>> import disttrain as dt, disttrain.nn as nn
    >>> model = nn.Sequential(nn.Conv2d(1, 8, 3), nn.ReLU(), nn.Flatten(),
    ...                       nn.Linear(8 * 26 * 26, 10))
    >>> dt.onnx.export(model, dt.randn(2, 1, 28, 28), "cnn.onnx", input_names=["x"],
    ...                output_names=["logits"], dynamic_axes={"x": {0: "N"}, "logits": {0: "N"}})
"""

from disttrain.onnx import ops_layers, ops_logic, ops_math, ops_rnn  # noqa: F401 (registers)
from disttrain.onnx.export import export
from disttrain.onnx.graph import ExportError, GraphBuilder
from disttrain.onnx.registry import (
    Call,
    register_function_converter,
    register_functional_converter,
    register_module_converter,
    register_tensor_method_converter,
)

__all__ = ["export", "ExportError", "GraphBuilder", "Call", "register_function_converter",
           "register_module_converter", "register_functional_converter",
           "register_tensor_method_converter"]
