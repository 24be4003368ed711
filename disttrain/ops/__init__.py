"""Primitive differentiable ops: one class per primitive, forward and backward side by side,
arrays in and arrays out. Only `Function.apply` makes graph nodes.

Grouped by kind: elementwise (arithmetic, unary maths, activations, where, casts), movement
(reshape, permute, expand, index, gather, cat), reduce (sum, max), nn (matmul, linear,
log_softmax, NLL / cross-entropy) and conv (conv2d, pooling). Every Function is re-exported here,
so `from disttrain import ops; ops.Add` is the way the core names them. Imports autograd and
backend only: never disttrain.tensor (no import cycle).
"""

from disttrain.ops.attention import Softmax
from disttrain.ops.conv import AvgPool2d, Conv2d, MaxPool2d
from disttrain.ops.conv_transpose import ConvTranspose2d
from disttrain.ops.elementwise import (
    Abs,
    Add,
    Cast,
    Clamp,
    Clone,
    Cos,
    Div,
    Erf,
    Exp,
    Log,
    LogSigmoid,
    Maximum,
    Minimum,
    Mul,
    Neg,
    Pow,
    PowTensor,
    ReLU,
    Sigmoid,
    Sin,
    Sqrt,
    Sub,
    Tanh,
    ToDevice,
    Where,
)
from disttrain.ops.loss import BinaryCrossEntropy
from disttrain.ops.movement import Cat, Expand, Gather, Index, Permute, Reshape
from disttrain.ops.nn import CrossEntropy, Linear, LogSoftmax, MatMul, NLLLoss
from disttrain.ops.reduce import Cumsum, Max, Norm2, Prod, Sum
from disttrain.ops.resample import AxisMap, ConstantPad

__all__ = [
    "Abs", "Add", "AvgPool2d", "Cast", "Cat", "Clamp", "Clone", "Conv2d", "CrossEntropy", "Div",
    "Erf", "Exp", "Expand", "Gather", "Index", "Linear", "Log", "LogSigmoid", "LogSoftmax",
    "MatMul", "Max", "MaxPool2d", "Mul", "NLLLoss", "Neg", "Permute", "Pow", "ReLU", "Reshape",
    "Sigmoid", "Sqrt", "Sub", "Sum", "Tanh", "ToDevice", "Where", "Sin", "Cos",
    "Softmax", "Maximum", "Minimum", "PowTensor", "Norm2", "Prod", "Cumsum",
    "ConvTranspose2d",
    "BinaryCrossEntropy", "AxisMap", "ConstantPad",
]  # fmt: skip
