"""disttrain: a small, fast autograd/nn core on numpy (CPU) or cupy (GPU), scaled out over MPI.

    import disttrain as dt, disttrain.nn as nn, disttrain.optim as optim

Importing disttrain imports nothing else: each public name below is loaded on first use
(disttrain.lazy), so `import disttrain.launch` needs no numpy and no import starts MPI.
"""

from disttrain.lazy import attach as _attach

__version__ = "0.1.0"

_SUBMODULES = (
    "autograd", "backend", "cuda", "data", "distributed", "env", "factories", "files",
    "functional", "launch", "metrics", "nn", "ops", "optim", "random", "serialization", "utils",
    "tensor_functions", "accelerator", "backends", "multiprocessing", "training", "onnx",
    "quantization",
)  # fmt: skip
# NOTE: no "tensor" submodule: dt.tensor is the function (as torch.tensor); the module is
# `import disttrain.tensor` / `from disttrain.tensor import Tensor`
_FROM = {
    "disttrain.factories": (
        "arange", "empty", "eye", "full", "full_like", "linspace", "ones", "ones_like", "rand",
        "randint", "randn", "randperm", "zeros", "zeros_like", "as_tensor", "empty_like",
        "from_numpy", "rand_like", "randn_like"),
    "disttrain.devices": ("device",),
    "disttrain.threads": ("get_num_threads", "set_num_threads"),
    "disttrain.random": (
        "Generator", "get_rng_state", "initial_seed", "manual_seed", "seed", "set_rng_state"),
    "disttrain.serialization": ("load", "save"),
    "disttrain.tensor": (
        "Function", "Tensor", "bool_", "cat", "enable_grad", "float16", "float32", "float64",
        "int8", "int16", "int32", "int64", "is_grad_enabled", "no_grad", "stack",
        "tensor", "uint8", "where"),
    "disttrain.tensor_functions": (
        "exp", "log", "sqrt", "abs", "sum", "mean", "max", "min", "argmax", "argmin", "clamp",
        "flatten", "reshape", "relu", "sigmoid", "tanh", "softmax", "log_softmax", "transpose",
        "permute", "squeeze", "unsqueeze", "var", "std", "pow", "sin", "cos", "tril", "triu",
        "bmm", "baddbmm", "narrow", "masked_fill", "eq", "ne", "lt", "le", "gt", "ge", "equal",
        "add", "sub", "mul", "div", "maximum", "minimum", "lerp", "addcmul", "addcdiv", "mm",
        "topk", "sort", "argsort", "matmul", "norm", "neg", "floor", "ceil", "round", "trunc",
        "reciprocal", "rsqrt", "square", "sign", "amax", "amin", "prod", "cumsum", "logsumexp",
        "any", "all"),
    "disttrain.backend": ("tune_malloc",),
    "disttrain.quantization.qtypes": ("qint8", "quint8"),
}  # fmt: skip
_ALIASES = {  # NOTE: torch's names: dt.bool is torch.bool (the builtin stays in builtins)
    "bool": "disttrain.tensor:bool_", "float": "disttrain.tensor:float32",
    "double": "disttrain.tensor:float64", "long": "disttrain.tensor:int64",
}  # fmt: skip

__getattr__, __dir__, __all__ = _attach(
    __name__, _SUBMODULES,
    {**{name: module for module, names in _FROM.items() for name in names}, **_ALIASES})
