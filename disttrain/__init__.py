"""disttrain: a small, fast autograd/nn core on numpy (CPU) or cupy (GPU), scaled out over MPI.

    import disttrain as dt, disttrain.nn as nn, disttrain.optim as optim
"""

from disttrain import cuda, functional  # noqa: F401
from disttrain.factories import (
    arange,
    empty,
    eye,
    full,
    full_like,
    linspace,
    ones,
    ones_like,
    rand,
    randint,
    randn,
    randperm,
    zeros,
    zeros_like,
)
from disttrain.random import get_rng_state, manual_seed, set_rng_state
from disttrain.serialization import load, save
from disttrain.tensor import (
    Function,
    Tensor,
    bool_,
    cat,
    enable_grad,
    float16,
    float32,
    float64,
    int8,
    int16,
    int32,
    int64,
    is_grad_enabled,
    matmul,
    no_grad,
    stack,
    tensor,
    uint8,
    where,
)

bool = bool_  # noqa: A001  NOTE: dt.bool as in torch.bool; the builtin stays reachable as builtins
float = float32  # noqa: A001
double = float64
long = int64

__version__ = "0.1.0"


def _unary(name):
    def fn(input: Tensor, *args, **kwargs) -> Tensor:
        return getattr(input, name)(*args, **kwargs)

    fn.__name__ = name
    fn.__doc__ = f"dt.{name}(x, ...) is x.{name}(...)"
    return fn


exp, log, sqrt, abs, sum, mean, max, min = (  # noqa: A001
    _unary(n) for n in ("exp", "log", "sqrt", "abs", "sum", "mean", "max", "min"))
argmax, argmin, clamp, flatten, reshape, relu = (
    _unary(n) for n in ("argmax", "argmin", "clamp", "flatten", "reshape", "relu"))
sigmoid, tanh, softmax, log_softmax, transpose, permute = (
    _unary(n) for n in ("sigmoid", "tanh", "softmax", "log_softmax", "transpose", "permute"))
squeeze, unsqueeze, var, std, pow = (
    _unary(n) for n in ("squeeze", "unsqueeze", "var", "std", "pow"))
