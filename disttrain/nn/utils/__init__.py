"""nn.utils: gradient clipping, flat parameter vectors, L1/L2 penalties, and `rnn`
(pad_sequence)."""

from __future__ import annotations

import math

from disttrain.backend import get_array_module
from disttrain.nn.utils import rnn  # noqa: F401  NOTE: torch's nn.utils.rnn path
from disttrain.nn.utils.penalties import l1_penalty, l2_penalty  # noqa: F401
from disttrain.tensor import Tensor


def _grads(parameters):
    parameters = [parameters] if isinstance(parameters, Tensor) else list(parameters)
    return [p.grad.array for p in parameters if p.grad is not None]


def clip_grad_norm_(parameters, max_norm: float, norm_type: float = 2.0,
                    error_if_nonfinite: bool = False) -> Tensor:
    """Scales gradients in place so their joint norm is at most max_norm; returns the norm
    before clipping (as torch.nn.utils.clip_grad_norm_)."""
    grads = _grads(parameters)
    if not grads:
        return Tensor(get_array_module().asarray(0.0, "float32"))
    xp = get_array_module(grads[0])
    norm_type = float(norm_type)
    if math.isinf(norm_type):
        norms = [xp.abs(g).max() for g in grads]
        total = xp.stack(norms).max()
    else:
        norms = [xp.linalg.norm(g.ravel(), norm_type) for g in grads]
        total = xp.linalg.norm(xp.stack(norms), norm_type)
    if error_if_nonfinite and not bool(xp.isfinite(total)):
        raise RuntimeError(f"clip_grad_norm_: the total norm of order {norm_type} for gradients "
                           f"is non-finite ({float(total)}); pass error_if_nonfinite=False to "
                           "clip anyway")
    coef = min(float(max_norm) / (float(total) + 1e-6), 1.0)
    if coef < 1.0:
        for g in grads:
            g *= g.dtype.type(coef)
    return Tensor(xp.asarray(total))


def clip_grad_value_(parameters, clip_value: float) -> None:
    for g in _grads(parameters):
        get_array_module(g).clip(g, -clip_value, clip_value, out=g)


def parameters_to_vector(parameters) -> Tensor:
    arrays = [p.array.ravel() for p in parameters]
    return Tensor(get_array_module(*arrays).concatenate(arrays))


def vector_to_parameters(vec: Tensor, parameters) -> None:
    offset = 0
    for p in parameters:
        n = p.numel()
        p.array[...] = vec.array[offset:offset + n].reshape(p.shape)
        offset += n
