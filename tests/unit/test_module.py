"""nn.Module: registration, traversal, state_dict, modes, containers, repr and hooks."""

from collections import OrderedDict

import numpy
import pytest

import disttrain as dt
import disttrain.nn as nn

try:
    import torch
except ImportError:
    torch = None

needs_torch = pytest.mark.skipif(torch is None, reason="torch is not installed")

SEED_CNN_REPR = """Sequential(
  (0): Conv2d(1, 32, kernel_size=(3, 3), stride=(1, 1))
  (1): ReLU()
  (2): MaxPool2d(kernel_size=2, stride=2, padding=0, dilation=1, ceil_mode=False)
  (3): Flatten(start_dim=1, end_dim=-1)
  (4): Linear(in_features=5408, out_features=128, bias=True)
  (5): ReLU()
  (6): Linear(in_features=128, out_features=10, bias=True)
)"""
SEED_CNN_STATE = {
    "0.weight": (32, 1, 3, 3), "0.bias": (32,), "4.weight": (128, 5408), "4.bias": (128,),
    "6.weight": (10, 128), "6.bias": (10,),
}  # fmt: skip


def seed_cnn(nn_module):
    """The examples' default CNN, built from disttrain.nn or torch.nn."""
    return nn_module.Sequential(
        nn_module.Conv2d(1, 32, 3, 1), nn_module.ReLU(), nn_module.MaxPool2d(2),
        nn_module.Flatten(), nn_module.Linear(5408, 128), nn_module.ReLU(),
        nn_module.Linear(128, 10),
    )  # fmt: skip


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3)
        self.scale = nn.Parameter(dt.ones(1))
        self.head = nn.Sequential(nn.Linear(8, 3), nn.ReLU(), nn.Linear(3, 2))
        self.register_buffer("steps", dt.zeros(1))
        self.register_buffer("cache", dt.zeros(2), persistent=False)

    def forward(self, x):
        return self.head(self.conv(x).flatten(1)) * self.scale


# ---------------------------------------------------------------- registration
def test_registration_follows_assignment_order():
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.zeta = nn.Parameter(dt.zeros(1))
            self.alpha = nn.Linear(2, 2)
            self.mid = nn.Parameter(dt.zeros(2))

    m = M()
    assert [n for n, _ in m.named_parameters()] == ["zeta", "mid", "alpha.weight", "alpha.bias"]
    m.zeta = nn.Parameter(dt.ones(1))  # re-assignment keeps the slot
    assert [n for n, _ in m.named_parameters()][0] == "zeta" and m.zeta.tolist() == [1.0]
    assert [n for n, _ in m.named_children()] == ["alpha"]


def test_nested_named_parameters():
    names = [n for n, _ in Net().named_parameters()]
    assert names == ["scale", "conv.weight", "conv.bias", "head.0.weight", "head.0.bias",
                     "head.2.weight", "head.2.bias"]
    assert all(isinstance(p, nn.Parameter) and p.requires_grad for p in Net().parameters())


def test_plain_attributes_and_tensors_are_not_registered():
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.plain = dt.ones(2)
            self.size = 3

    m = M()
    assert list(m.parameters()) == [] and list(m.state_dict()) == []
    m.register_parameter("w", nn.Parameter(dt.ones(1)))
    with pytest.raises(TypeError, match="parameter 'w'"):
        m.w = dt.ones(1)  # a plain Tensor cannot silently replace a Parameter


def test_assigning_before_init_raises():
    class Bad(nn.Module):
        def __init__(self):
            self.fc = nn.Linear(1, 1)

    with pytest.raises(AttributeError, match="before Module.__init__"):
        Bad()


def test_shared_parameter_appears_once():
    class Tied(nn.Module):
        def __init__(self):
            super().__init__()
            self.enc, self.dec = nn.Linear(3, 3), nn.Linear(3, 3)
            self.dec.weight = self.enc.weight

    m = Tied()
    assert [n for n, _ in m.named_parameters()] == ["enc.weight", "enc.bias", "dec.bias"]
    assert len(list(m.parameters())) == 3
    assert list(m.state_dict()) == ["enc.weight", "enc.bias", "dec.weight", "dec.bias"]


def test_shared_module_in_sequential_matches_torch():
    # regression: state_dict skipped the second occurrence of a shared module; torch keeps it
    layer = nn.Linear(2, 2)
    seq = nn.Sequential(layer, nn.ReLU(), layer)
    assert [n for n, _ in seq.named_parameters()] == ["0.weight", "0.bias"]
    assert list(seq.state_dict()) == ["0.weight", "0.bias", "2.weight", "2.bias"]
    assert len(list(seq.modules())) == 3
    seq.load_state_dict(seq.state_dict())
    if torch is not None:
        t = torch.nn.Linear(2, 2)
        assert list(torch.nn.Sequential(t, torch.nn.ReLU(), t).state_dict()) == list(
            seq.state_dict())


# ---------------------------------------------------------------- buffers and state_dict
def test_buffers_in_state_dict_and_non_persistent_excluded():
    m = Net()
    assert [n for n, _ in m.named_buffers()] == ["steps", "cache"]
    sd = m.state_dict()
    assert "steps" in sd and "cache" not in sd
    assert list(sd)[:2] == ["scale", "steps"]  # own params, own buffers, then children


def test_batchnorm_buffers():
    bn = nn.BatchNorm2d(3)
    sd = bn.state_dict()
    assert list(sd) == ["weight", "bias", "running_mean", "running_var", "num_batches_tracked"]
    assert sd["num_batches_tracked"].dtype == numpy.int64 and sd["num_batches_tracked"].shape == ()
    bn(dt.randn(4, 3, 2, 2))
    bn(dt.randn(4, 3, 2, 2))
    assert bn.state_dict()["num_batches_tracked"] == 2
    assert not numpy.allclose(bn.state_dict()["running_mean"], 0)
    assert [n for n, _ in bn.named_parameters()] == ["weight", "bias"]


def test_state_dict_holds_numpy_copies():
    m = nn.Linear(2, 2)
    sd = m.state_dict()
    assert all(type(v) is numpy.ndarray for v in sd.values())
    sd["weight"][...] = 42.0
    assert not numpy.any(m.weight.detach().numpy() == 42.0)
    kept = m.state_dict(keep_vars=True)
    assert kept["weight"] is m.weight


def test_load_state_dict_accepts_tensors_and_arrays():
    m = nn.Linear(2, 3)
    m.load_state_dict({"weight": numpy.ones((3, 2), numpy.float64), "bias": dt.zeros(3)})
    assert m.weight.tolist() == [[1.0, 1.0]] * 3 and m.weight.dtype == dt.float32
    assert m.bias.tolist() == [0.0] * 3 and isinstance(m.weight, nn.Parameter)


@needs_torch
def test_state_dict_keys_and_shapes_match_torch_for_seed_cnn():
    ours = seed_cnn(nn).state_dict()
    theirs = seed_cnn(torch.nn).state_dict()
    assert list(ours) == list(theirs)
    assert {k: v.shape for k, v in ours.items()} == {k: tuple(v.shape) for k, v in theirs.items()}


def test_state_dict_keys_and_shapes_of_seed_cnn():
    assert {k: v.shape for k, v in seed_cnn(nn).state_dict().items()} == SEED_CNN_STATE


@needs_torch
@pytest.mark.parametrize("name, args", [("BatchNorm2d", (3,)), ("BatchNorm1d", (5,)),
                                        ("LayerNorm", ((4, 6),)), ("LayerNorm", (8,))])
def test_state_dict_matches_torch_for_norm_layers(name, args):
    ours = getattr(nn, name)(*args).state_dict()
    theirs = getattr(torch.nn, name)(*args).state_dict()
    assert list(ours) == list(theirs)
    for key, value in theirs.items():
        assert ours[key].shape == tuple(value.shape), key
        assert str(value.dtype) == f"torch.{ours[key].dtype}", key
        numpy.testing.assert_array_equal(ours[key], value.numpy())


# ---------------------------------------------------------------- modes, apply, grads, dtype
def test_train_eval_propagate():
    m = Net()
    assert m.training and m.head[0].training
    assert m.eval() is m
    assert not any(sub.training for sub in m.modules())
    m.train()
    assert all(sub.training for sub in m.modules())
    m.head.eval()
    assert m.training and not m.head[2].training


def test_dropout_follows_the_mode():
    drop = nn.Dropout(0.5)
    x = dt.ones(1000)
    assert (drop(x).numpy() == 0).any()
    drop.eval()
    assert drop(x) is x


def test_apply_visits_children_first_then_self():
    visited = []
    m = Net()
    assert m.apply(lambda mod: visited.append(type(mod).__name__)) is m
    assert visited == ["Conv2d", "Linear", "ReLU", "Linear", "Sequential", "Net"]

    def init(mod):
        if isinstance(mod, nn.Linear):
            nn.init.zeros_(mod.weight)

    m.apply(init)
    assert not m.head[0].weight.detach().numpy().any()


def backward_once(m):
    m(dt.randn(2, 1, 4, 4)).sum().backward()


def test_zero_grad_set_to_none():
    m = Net()
    backward_once(m)
    assert all(p.grad is not None for p in m.parameters())
    m.zero_grad()
    assert all(p.grad is None for p in m.parameters())


def test_zero_grad_in_place():
    m = Net()
    backward_once(m)
    grads = [p.grad for p in m.parameters()]
    m.zero_grad(set_to_none=False)
    for p, g in zip(m.parameters(), grads, strict=True):
        assert p.grad is g and not p.grad.numpy().any()


def test_to_dtype_casts_float_parameters_and_buffers_in_place():
    m = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))
    weight = m[0].weight
    m(dt.randn(4, 2)).sum().backward()
    assert m.to(dt.float64) is m
    assert m[0].weight is weight and weight.dtype == dt.float64 and weight.grad.dtype == dt.float64
    assert m[1].running_mean.dtype == dt.float64
    assert m[1].num_batches_tracked.dtype == dt.int64  # integer buffers keep their dtype
    assert m(dt.randn(4, 2, dtype=dt.float64)).dtype == dt.float64
    m.float()
    assert weight.dtype == dt.float32


# ---------------------------------------------------------------- containers
def test_sequential_parameters_indexing_and_slicing():
    seq = nn.Sequential(nn.Linear(1, 2), nn.ReLU(), nn.Linear(2, 3))
    assert len(seq) == 3 and len(list(seq.parameters())) == 4
    assert isinstance(seq[0], nn.Linear) and seq[-1] is seq[2] and isinstance(seq[1], nn.ReLU)
    tail = seq[1:]
    assert isinstance(tail, nn.Sequential) and len(tail) == 2
    assert [n for n, _ in tail.named_parameters()] == ["2.weight", "2.bias"]  # as torch
    assert tail[1] is seq[2]
    assert [type(m).__name__ for m in seq] == ["Linear", "ReLU", "Linear"]
    assert seq(dt.ones(4, 1)).shape == (4, 3)


def test_sequential_from_ordered_dict():
    seq = nn.Sequential(OrderedDict([("fc", nn.Linear(2, 2)), ("act", nn.ReLU())]))
    assert list(seq.state_dict()) == ["fc.weight", "fc.bias"] and seq.fc is seq[0]


def test_module_list_parameters():
    layers = nn.ModuleList([nn.Linear(1, 1), nn.Linear(1, 2)])
    layers.append(nn.Linear(2, 2))
    assert len(layers) == 3 and [n for n, _ in layers.named_parameters()][-1] == "2.bias"
    assert len(list(layers.parameters())) == 6
    assert isinstance(layers[1:], nn.ModuleList) and len(layers[1:]) == 2

    class Holder(nn.Module):
        def __init__(self):
            super().__init__()
            self.blocks = layers

    assert [n for n, _ in Holder().named_parameters()][:2] == ["blocks.0.weight", "blocks.0.bias"]


def test_module_dict_parameters():
    d = nn.ModuleDict({"enc": nn.Linear(1, 2), "dec": nn.Linear(2, 1)})
    d["extra"] = nn.Linear(3, 3)
    assert list(d.keys()) == ["enc", "dec", "extra"] and len(d) == 3
    assert [n for n, _ in d.named_parameters()] == ["enc.weight", "enc.bias", "dec.weight",
                                                    "dec.bias", "extra.weight", "extra.bias"]
    assert d["dec"].out_features == 1


# ---------------------------------------------------------------- repr
def test_seed_cnn_repr():
    assert repr(seed_cnn(nn)) == SEED_CNN_REPR


@needs_torch
def test_seed_cnn_repr_equals_torch():
    assert repr(seed_cnn(nn)) == repr(seed_cnn(torch.nn))


def test_nested_repr_indents_children():
    text = repr(Net())
    assert text.startswith("Net(\n  (conv): Conv2d(1, 2, kernel_size=(3, 3), stride=(1, 1))")
    assert "  (head): Sequential(\n    (0): Linear(in_features=8, out_features=3, bias=True)" \
        in text


# ---------------------------------------------------------------- hooks
def test_forward_hook_sees_inputs_and_output_and_can_be_removed():
    seq = nn.Sequential(nn.Linear(1, 2), nn.ReLU())
    calls = []
    handle = seq.register_forward_hook(lambda m, args, out: calls.append((m, args[0].shape,
                                                                          out.shape)))
    x = dt.ones(5, 1)
    seq(x)
    assert calls == [(seq, (5, 1), (5, 2))]
    handle.remove()
    seq(x)
    assert len(calls) == 1


def test_forward_hook_can_replace_the_output():
    lin = nn.Linear(2, 2)
    lin.register_forward_hook(lambda m, args, out: out * 0)
    assert lin(dt.ones(1, 2)).tolist() == [[0.0, 0.0]]


def test_forward_pre_hook_can_replace_the_input():
    lin = nn.Linear(2, 1, bias=False)
    handle = lin.register_forward_pre_hook(lambda m, args: (args[0] * 0,))
    assert lin(dt.ones(1, 2)).tolist() == [[0.0]]
    handle.remove()
    assert lin(dt.ones(1, 2)).item() == pytest.approx(lin.weight.detach().numpy().sum())


def test_forward_hook_on_a_submodule_captures_activations():
    seq = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    captured = {}
    seq[1].register_forward_hook(lambda m, args, out: captured.setdefault("relu", out))
    seq(dt.randn(6, 3))
    assert captured["relu"].shape == (6, 4) and (captured["relu"].detach().numpy() >= 0).all()


def test_module_to_takes_torchs_argument_forms():
    model = nn.Linear(2, 2)
    assert model.to("cpu", non_blocking=True) is model
    assert model.to(dt.device("cpu")).weight.device == "cpu"
    assert model.to(dt.float64).weight.dtype == dt.float64
    assert model.to(dt.zeros(1, dtype=dt.float32)).weight.dtype == dt.float32  # a tensor's
    if not dt.cuda.is_available():
        with pytest.raises(RuntimeError, match="device='cuda:0' needs CuPy"):
            model.to(0)  # an int is a GPU index, as in torch
