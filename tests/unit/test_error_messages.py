"""User-facing error messages: each names the op or argument, the expected and actual values."""

import os
import re

import numpy
import pytest

import disttrain as dt
import disttrain.nn as nn
import disttrain.nn.functional as F


# ---------------------------------------------------------------- layers and ops
def test_linear_wrong_in_features():
    with pytest.raises(ValueError, match=r"linear.*=4.*=5.*\(2, 4\).*\(3, 5\)"):
        nn.Linear(5, 3)(dt.randn(2, 4))


def test_conv2d_wrong_channel_count():
    with pytest.raises(ValueError, match=r"conv2d.*1 channels.*\(8, 3, 3, 3\).*\(2, 1, 8, 8\)"):
        nn.Conv2d(3, 8, 3)(dt.randn(2, 1, 8, 8))


def test_conv2d_wrong_rank():
    with pytest.raises(ValueError, match=r"conv2d.*\(N, C, H, W\).*\(8, 8\)"):
        nn.Conv2d(3, 8, 3)(dt.randn(8, 8))


def test_matmul_shape_mismatch():
    with pytest.raises(ValueError, match=r"matmul.*\(2, 3\) and \(4, 5\)"):
        dt.randn(2, 3) @ dt.randn(4, 5)
    with pytest.raises(ValueError, match=r"matmul.*\(3,\) and \(4,\)"):
        dt.matmul(dt.randn(3), dt.randn(4))
    with pytest.raises(ValueError, match=r"matmul.*at least 1 dimension"):
        dt.matmul(dt.tensor(1.0), dt.randn(2))


def test_reshape_invalid_size():
    with pytest.raises(ValueError, match=r"reshape.*\(4, 2\).*size 6.*\(2, 3\)"):
        dt.randn(2, 3).reshape(4, 2)
    with pytest.raises(ValueError, match=r"reshape.*\(-1, 4\).*size 6"):
        dt.randn(2, 3).view(-1, 4)
    with pytest.raises(ValueError, match=r"reshape.*\(-1, -1\)"):
        dt.randn(2, 3).reshape(-1, -1)


def test_broadcast_failure():
    with pytest.raises(ValueError, match=r"broadcast.*\(2, 3\) and \(4,\)"):
        dt.randn(2, 3) + dt.randn(4)
    with pytest.raises(ValueError, match=r"broadcast.*\(3,\) and \(2,\)"):
        dt.randn(3) * dt.randn(2)


def test_dimension_out_of_range():
    with pytest.raises(IndexError, match=r"sum.*\[-2, 1\].*got 2"):
        dt.randn(2, 3).sum(2)
    with pytest.raises(ValueError, match=r"permute.*\(0, 0\)"):
        dt.randn(2, 3).permute(0, 0)


def test_batchnorm_wrong_channels():
    with pytest.raises(ValueError, match=r"BatchNorm2d.*3 channels.*\(2, 4, 3, 3\)"):
        nn.BatchNorm2d(3)(dt.randn(2, 4, 3, 3))
    with pytest.raises(ValueError, match=r"BatchNorm1d.*3 channels.*\(2, 4\)"):
        nn.BatchNorm1d(3)(dt.randn(2, 4))
    with pytest.raises(ValueError, match=r"BatchNorm2d.*4D.*3D.*\(2, 3, 3\)"):
        nn.BatchNorm2d(3)(dt.randn(2, 3, 3))


def test_layer_norm_wrong_trailing_shape():
    with pytest.raises(ValueError, match=r"layer_norm.*\(4,\).*\(2, 5\)"):
        nn.LayerNorm(4)(dt.randn(2, 5))


# ---------------------------------------------------------------- losses
def test_cross_entropy_probability_target_of_wrong_shape():
    with pytest.raises(ValueError, match=r"cross_entropy.*\(4, 10\).*\(4, 9\)"):
        F.cross_entropy(dt.randn(4, 10), dt.rand(4, 9))


def test_cross_entropy_class_target_of_wrong_shape():
    # NOTE: the check lives in nll_loss, which cross_entropy calls, so the message names it
    with pytest.raises(ValueError, match=r"target shape \(4,\).*\(4, 10\).*target shape \(3,\)"):
        F.cross_entropy(dt.randn(4, 10), dt.tensor([1, 2, 3]))
    with pytest.raises(ValueError, match=r"target shape \(2, 5\).*got target shape \(2, 4\)"):
        nn.CrossEntropyLoss()(dt.randn(2, 3, 5), dt.zeros(2, 4, dtype=dt.int64))


@pytest.mark.parametrize("label", [10, -1])
def test_cross_entropy_class_out_of_range(label):
    with pytest.raises(IndexError, match=rf"target {label} is out of bounds for 10 classes"):
        F.cross_entropy(dt.randn(4, 10), dt.tensor([1, 2, 3, label]))


def test_ignore_index_is_not_out_of_range():
    loss = F.cross_entropy(dt.randn(3, 4), dt.tensor([1, -100, 2]))
    assert numpy.isfinite(loss.item())


def test_nll_loss_bad_target_dtype():
    with pytest.raises(TypeError, match=r"nll_loss.*int64.*float32.*long\(\)"):
        F.nll_loss(dt.randn(4, 10).log_softmax(1), dt.tensor([1.0, 2.0, 3.0, 4.0]))
    with pytest.raises(TypeError, match=r"nll_loss.*bool"):
        nn.NLLLoss()(dt.randn(2, 3), dt.tensor([True, False]))


def test_mse_loss_shape_mismatch():
    with pytest.raises(ValueError, match=r"mse_loss.*\(4, 10\).*\(4,\)"):
        F.mse_loss(dt.randn(4, 10), dt.randn(4))


def test_bce_with_logits_integer_target():
    with pytest.raises(TypeError, match=r"binary_cross_entropy_with_logits.*int64"):
        nn.BCEWithLogitsLoss()(dt.randn(3), dt.tensor([0, 1, 1]))


def test_bad_reduction():
    with pytest.raises(ValueError, match=r"mse_loss.*reduction.*'avg'"):
        F.mse_loss(dt.randn(2), dt.randn(2), reduction="avg")


# ---------------------------------------------------------------- load_state_dict
class Net(nn.Module):
    def __init__(self, in_features=5):
        super().__init__()
        self.fc = nn.Linear(in_features, 4)


def test_load_state_dict_raises_once_in_torch_format():
    checkpoint = {"fc.weight": numpy.zeros((4, 3), numpy.float32),
                  "extra.weight": numpy.zeros(1, numpy.float32)}
    net = Net()
    before = net.fc.weight.detach().numpy().copy()
    with pytest.raises(RuntimeError) as info:
        net.load_state_dict(checkpoint)
    message = str(info.value)
    assert message == (
        "Error(s) in loading state_dict for Net:\n"
        '\tMissing key(s) in state_dict: "fc.bias".\n'
        '\tUnexpected key(s) in state_dict: "extra.weight".\n'
        "\tsize mismatch for fc.weight: copying a param with shape (4, 3) from checkpoint, "
        "the shape in current model is (4, 5)."
    )
    numpy.testing.assert_array_equal(net.fc.weight.detach().numpy(), before)  # nothing loaded


def test_load_state_dict_error_pieces_match():
    with pytest.raises(RuntimeError, match=r"size mismatch for fc\.weight: copying a param with "
                       r"shape \(4, 3\) from checkpoint, the shape in current model is "
                       r"\(4, 5\)"):
        Net().load_state_dict({"fc.weight": numpy.zeros((4, 3)), "fc.bias": numpy.zeros(4)})
    with pytest.raises(RuntimeError, match=r'Missing key\(s\) in state_dict: "fc.weight", '
                       r'"fc.bias"\.'):
        Net().load_state_dict({})


def test_load_state_dict_non_strict_returns_missing_and_unexpected():
    net = Net()
    result = net.load_state_dict({"fc.weight": numpy.ones((4, 5)), "other": numpy.ones(2)},
                                 strict=False)
    assert result.missing_keys == ["fc.bias"] and result.unexpected_keys == ["other"]
    missing, unexpected = result
    assert missing == ["fc.bias"] and unexpected == ["other"]
    assert net.fc.weight.tolist() == [[1.0] * 5] * 4


def test_load_state_dict_non_strict_still_rejects_size_mismatch():
    with pytest.raises(RuntimeError, match=r"for Net:\n\tsize mismatch for fc\.weight"):
        Net().load_state_dict({"fc.weight": numpy.ones((4, 3))}, strict=False)


# ---------------------------------------------------------------- dt.load
@pytest.fixture
def saved(tmp_path):
    path = tmp_path / "model.safetensors"
    dt.save(Net().state_dict(), path)
    return path


@pytest.mark.parametrize("keep", [-4, 100, 8, 3, 0], ids=lambda n: f"keep[:{n}]")
def test_load_truncated_file_names_the_file(saved, keep):
    raw = saved.read_bytes()
    saved.write_bytes(raw[:keep])
    with pytest.raises(ValueError, match=re.escape(str(saved)) + ".*not a valid safetensors"):
        dt.load(saved)


def test_load_corrupted_header_names_the_file(saved):
    raw = bytearray(saved.read_bytes())
    raw[10:20] = b"\xff" * 10
    saved.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match=re.escape(str(saved))):
        dt.load(saved)


def test_load_missing_file_names_the_file(tmp_path):
    path = os.path.join(tmp_path, "nope.safetensors")
    with pytest.raises(FileNotFoundError, match=re.escape(path)):
        dt.load(path)


# ---------------------------------------------------------------- tensor creation
def test_requires_grad_on_integers():
    with pytest.raises(RuntimeError, match=r"only floating point.*int64"):
        dt.zeros(2, dtype=dt.int64, requires_grad=True)


def test_item_on_many_elements():
    with pytest.raises(ValueError, match=r"item.*one-element.*\(2, 2\)"):
        dt.zeros(2, 2).item()


def test_bool_of_many_elements_is_ambiguous():
    with pytest.raises(RuntimeError, match="ambiguous"):
        bool(dt.zeros(2))
