"""Element-wise primitives: arithmetic, unary maths, activations, where, casts and copies.

Inputs of binary ops already have equal shapes (broadcasting is the explicit `Expand` in
movement.py)."""

from __future__ import annotations

import math

from disttrain import backend
from disttrain.autograd import Function
from disttrain.backend import get_array_module


class Add(Function):
    def forward(self, a, b):
        return a + b

    def backward(self, grad):
        return grad, grad


class Sub(Function):
    def forward(self, a, b):
        return a - b

    def backward(self, grad):
        return grad, -grad if self.needs_input_grad[1] else None


class Mul(Function):
    def forward(self, a, b):
        self.save(a, b)
        return a * b

    def backward(self, grad):
        a, b = self.saved
        return (grad * b if self.needs_input_grad[0] else None,
                grad * a if self.needs_input_grad[1] else None)


class Div(Function):
    def forward(self, a, b):
        self.save(a, b)
        return a / b

    def backward(self, grad):
        a, b = self.saved
        grad_a = grad / b
        return grad_a, (-grad_a * a / b) if self.needs_input_grad[1] else None


class Neg(Function):
    def forward(self, x):
        return -x

    def backward(self, grad):
        return -grad


class Pow(Function):  # x ** c for a constant exponent c
    def forward(self, x, exponent):
        self.save(x, exponent)
        return x ** exponent

    def backward(self, grad):
        x, exponent = self.saved
        return grad * (exponent * x ** (exponent - 1))


class PowTensor(Function):  # a ** b, both tensors (broadcast to one shape already)
    def forward(self, a, b):
        out = a ** b
        self.save(a, b, out)
        return out

    def backward(self, grad):
        a, b, out = self.saved
        xp = get_array_module(a)
        with xp.errstate(divide="ignore", invalid="ignore"):  # NOTE: nan where torch has nan
            grad_a = grad * b * a ** (b - 1) if self.needs_input_grad[0] else None
            grad_b = None
            if self.needs_input_grad[1]:  # torch: d/db is 0 where a == 0 and b >= 0
                grad_b = xp.where((a == 0) & (b >= 0), 0, grad * out * xp.log(a))
        return grad_a, grad_b


class Exp(Function):
    def forward(self, x):
        y = get_array_module(x).exp(x)
        self.save(y)
        return y

    def backward(self, grad):
        return grad * self.saved[0]


class Log(Function):
    def forward(self, x):
        self.save(x)
        return get_array_module(x).log(x)

    def backward(self, grad):
        return grad / self.saved[0]


class Sqrt(Function):
    def forward(self, x):
        y = get_array_module(x).sqrt(x)
        self.save(y)
        return y

    def backward(self, grad):
        return grad / (2 * self.saved[0])


class Abs(Function):
    def forward(self, x):
        xp = get_array_module(x)
        self.save(xp.sign(x))
        return xp.abs(x)

    def backward(self, grad):
        return grad * self.saved[0]


class ReLU(Function):
    # NOTE: a primitive (not max(x, 0)) so the gradient at the tie x == 0 is 0, as in torch.
    def forward(self, x):
        y = get_array_module(x).maximum(x, 0)
        self.save(y)
        return y

    def backward(self, grad):
        return grad * (self.saved[0] > 0)


class Sigmoid(Function):
    # NOTE: exp(-logaddexp(0, -x)) never overflows, unlike 1 / (1 + exp(-x)).
    def forward(self, x):
        xp = get_array_module(x)
        y = xp.exp(-xp.logaddexp(0, -x))
        self.save(y)
        return y

    def backward(self, grad):
        y = self.saved[0]
        return grad * y * (1 - y)


class LogSigmoid(Function):
    # NOTE: a primitive for numerics: -logaddexp(0, -x) is finite for every x.
    def forward(self, x):
        self.save(x)
        return -get_array_module(x).logaddexp(0, -x)

    def backward(self, grad):
        x = self.saved[0]
        return grad * get_array_module(x).exp(-get_array_module(x).logaddexp(0, x))


class Tanh(Function):
    def forward(self, x):
        y = get_array_module(x).tanh(x)
        self.save(y)
        return y

    def backward(self, grad):
        y = self.saved[0]
        return grad * (1 - y * y)


class Sin(Function):
    def forward(self, x):
        self.save(x)
        return get_array_module(x).sin(x)

    def backward(self, grad):
        return grad * get_array_module(grad).cos(self.saved[0])


class Cos(Function):
    def forward(self, x):
        self.save(x)
        return get_array_module(x).cos(x)

    def backward(self, grad):
        return -grad * get_array_module(grad).sin(self.saved[0])


class Erf(Function):
    def forward(self, x):
        self.save(x)
        return backend.erf(x)

    def backward(self, grad):
        x = self.saved[0]
        return grad * (2 / math.sqrt(math.pi)) * get_array_module(x).exp(-x * x)


class Clamp(Function):
    def forward(self, x, low, high):
        self.save(x, low, high)
        return get_array_module(x).clip(x, low, high)

    def backward(self, grad):
        x, low, high = self.saved
        inside = True if low is None else x >= low
        inside = inside & (True if high is None else x <= high)
        return grad * inside


class Where(Function):
    def forward(self, a, b, condition):
        self.save(condition)
        return get_array_module(a).where(condition, a, b)

    def backward(self, grad):
        xp, condition = get_array_module(grad), self.saved[0]
        zero = grad.dtype.type(0)
        return (xp.where(condition, grad, zero) if self.needs_input_grad[0] else None,
                xp.where(condition, zero, grad) if self.needs_input_grad[1] else None)


class Cast(Function):
    def forward(self, x, dtype):
        self.save(x.dtype)
        return x.astype(dtype)

    def backward(self, grad):
        return grad.astype(self.saved[0])


class ToDevice(Function):
    def forward(self, x, device):
        self.save(backend.device_of(x))
        return backend.to_device(x, device)

    def backward(self, grad):
        return backend.to_device(grad, self.saved[0])


class Clone(Function):
    def forward(self, x):
        return x.copy()

    def backward(self, grad):
        return grad


def _tie_split(grad, a, b, a_loses, b_loses):
    """torch's maximum/minimum backward: equal inputs share the gradient in halves; the input
    that lost gets none (a NaN on either side loses nowhere, as in torch)."""
    xp = get_array_module(grad)
    shared = xp.where(a == b, grad * 0.5, grad)
    zero = grad.dtype.type(0)
    return xp.where(a_loses, zero, shared), xp.where(b_loses, zero, shared)


class Maximum(Function):
    # NOTE: a primitive (not a where) so that ties split the gradient, as torch.maximum does
    def forward(self, a, b):
        self.save(a, b)
        return get_array_module(a).maximum(a, b)

    def backward(self, grad):
        a, b = self.saved
        return _tie_split(grad, a, b, a < b, a > b)


class Minimum(Function):
    def forward(self, a, b):
        self.save(a, b)
        return get_array_module(a).minimum(a, b)

    def backward(self, grad):
        a, b = self.saved
        return _tie_split(grad, a, b, a > b, a < b)
