"""float64 central-difference check of conv2d's Winograd path (ops.winograd): every element of
the input, weight and bias gradients of 3x3 stride-1 convs from 16 to 24 channels, padding 0 and 1,
odd sizes; a spy checks that the path ran."""

from __future__ import annotations

import numpy
import pytest
from gradcheck import check_backward, make_inputs

import disttrain.nn.functional as F
from disttrain.ops import conv as conv_ops
from disttrain.ops import winograd


@pytest.mark.parametrize("padding, shapes", [
    (1, [(1, 16, 3, 4), (24, 16, 3, 3), (24,)]),  # the input gradient is a Winograd conv too
    (0, [(2, 16, 5, 4), (24, 16, 3, 3), (24,)]),  # the input gradient goes through col2im
])
def test_backward(padding, shapes, monkeypatch):
    calls = {"forward": 0, "weight_grad": 0}

    def spy(name, fn):
        def counted(*args):
            calls[name] += 1
            return fn(*args)
        return counted

    monkeypatch.setattr(conv_ops, "winograd_forward", spy("forward", winograd.winograd_forward))
    monkeypatch.setattr(conv_ops, "winograd_weight_grad",
                        spy("weight_grad", winograd.winograd_weight_grad))
    inputs = make_inputs(shapes, "normal", numpy)
    check_backward(lambda x, w, b: F.conv2d(x, w, b, padding=padding), inputs)
    # NOTE: one backward; the central differences run thousands of forwards (no_grad)
    assert calls["weight_grad"] == 1 and calls["forward"] > 1000
