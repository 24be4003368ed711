"""The top-level torch API surface of issue 11 that needs no torch to check: dt.device,
dt.accelerator, dt.cuda, dt.backends, dt.set_num_threads, dt.multiprocessing (spawn),
Module.share_memory, from_numpy/as_tensor, in-place fills, and their error messages."""

from __future__ import annotations

import mmap
import os
import pickle

import numpy
import pytest

import disttrain as dt
import disttrain.multiprocessing as mp
import disttrain.nn as nn
from disttrain import backend, devices

NO_GPU = not dt.cuda.is_available()


# ---------------------------------------------------------------- devices
def test_device_is_a_string_with_torch_fields():
    cpu, gpu = dt.device("cpu"), dt.device("cuda", 1)
    assert cpu == "cpu" and hash(cpu) == hash("cpu") and {"cpu": 1}[cpu] == 1
    assert (cpu.type, cpu.index, repr(cpu), str(cpu)) == ("cpu", None, "device(type='cpu')", "cpu")
    assert (gpu.type, gpu.index, gpu) == ("cuda", 1, "cuda:1")
    assert repr(gpu) == "device(type='cuda', index=1)"
    assert dt.device("cuda:0") == dt.device("cuda", 0) == dt.device(0) == "cuda:0"
    assert repr(dt.device("cuda")) == "device(type='cuda')" and dt.device("cuda").index is None
    assert dt.device(gpu) is gpu and dt.device("cpu:0") == "cpu"
    assert pickle.loads(pickle.dumps(gpu)) == gpu and isinstance(pickle.loads(
        pickle.dumps(gpu)), dt.device)
    assert f"{cpu}" == "cpu" and "cuda" in str(gpu)


@pytest.mark.parametrize("args, error, message", [
    (("foo",), RuntimeError, r"unknown device type 'foo' \(got 'foo'\).*'cpu'.*'cuda'"),
    (("mps",), RuntimeError, r"'mps' is a PyTorch device type that disttrain does not support"),
    (("cuda:x",), RuntimeError, r"invalid device string 'cuda:x'"),
    (("cuda:1", 2), RuntimeError, r"must not include an index.*\(2\)"),
    (("cuda", -1), RuntimeError, r"index must be non-negative, got -1"),
    (("cpu", 1), RuntimeError, r"'cpu' has only index 0, got 1"),
    (("cuda", "1"), TypeError, r"index must be an int, got str"),
    ((1.5,), TypeError, r"expected a str or int, got float"),
])
def test_device_errors(args, error, message):
    with pytest.raises(error, match=message):
        dt.device(*args)


def test_tensor_device_is_a_shared_device_object():
    t = dt.ones(2)
    assert t.device is devices.CPU and isinstance(t.device, dt.device)
    assert t.device == "cpu" and t.device == dt.device("cpu") and t.device.type == "cpu"
    assert t.is_cuda is False and "device=" not in repr(t)


def test_to_accepts_devices_dtypes_and_tensors():
    t = dt.ones(2)
    assert t.to(dt.device("cpu")) is t and t.to("cpu") is t and t.cpu() is t
    assert t.to(dt.device("cpu"), dt.float64).dtype == dt.float64
    assert t.to(dt.zeros(1, dtype=dt.float64)).dtype == dt.float64
    assert t.to(dtype=dt.int64).dtype == dt.int64
    copied = t.to("cpu", copy=True, non_blocking=True)
    assert copied is not t and copied.tolist() == [1.0, 1.0]
    model = nn.Linear(2, 3).to(dt.device("cpu"))
    assert all(p.device == "cpu" for p in model.parameters())


@pytest.mark.skipif(backend.cupy is not None, reason="checks the error without cupy")
def test_to_cuda_without_cupy_says_how_to_install():
    with pytest.raises(RuntimeError, match=r"device='cuda:0' needs CuPy.*pip install"):
        dt.ones(2).to(dt.device("cuda", 0))
    with pytest.raises(RuntimeError, match=r"device='cuda:1' needs CuPy"):
        dt.ones(2).cuda(1)


# ---------------------------------------------------------------- accelerator / cuda / backends
def test_accelerator_answers_truthfully():
    assert dt.accelerator.is_available() == dt.cuda.is_available()
    assert dt.accelerator.device_count() == dt.cuda.device_count()
    current = dt.accelerator.current_accelerator()
    if NO_GPU:
        assert current is None and dt.cuda.device_count() == 0
    else:
        assert current == "cuda" and current.type == "cuda"


@pytest.mark.skipif(not NO_GPU, reason="checks the no-GPU answers")
@pytest.mark.parametrize("call", [
    lambda: dt.cuda.synchronize(), lambda: dt.cuda.current_device(),
    lambda: dt.cuda.set_device(0), lambda: dt.cuda.get_device_name(),
    lambda: dt.accelerator.current_device_index(), lambda: dt.accelerator.synchronize()])
def test_cuda_calls_that_need_a_gpu_raise(call):
    with pytest.raises(RuntimeError, match=r"cuda\.\w+.*(needs CuPy|no CUDA GPU is available)"):
        call()


def test_cuda_seeding_and_cache_are_harmless():
    dt.cuda.manual_seed(3)
    dt.cuda.manual_seed_all(3)
    dt.cuda.empty_cache()
    dt.cuda.set_device(-1)  # a negative index does nothing, as torch
    with pytest.raises(ValueError, match=r"cuda\.manual_seed: seed must be a non-negative int"):
        dt.cuda.manual_seed(-1)


def test_backends_flags_and_availability():
    cudnn = dt.backends.cudnn
    assert dt.backends.mps.is_available() is False and dt.backends.mps.is_built() is False
    assert cudnn.is_available() == (backend.cudnn_version() is not None)
    assert (cudnn.version() is None) == (not cudnn.is_available())
    assert (cudnn.enabled, cudnn.benchmark, cudnn.deterministic) == (True, False, False)
    with cudnn.flags(benchmark=True, deterministic=True):
        assert cudnn.benchmark and cudnn.deterministic and cudnn.enabled
    assert not cudnn.benchmark and not cudnn.deterministic
    cudnn.benchmark = True
    try:
        assert dt.backends.cudnn.benchmark is True
    finally:
        cudnn.benchmark = False
    with pytest.raises(TypeError, match=r"cudnn\.benchmark expects a bool, got str \('yes'\)"):
        cudnn.benchmark = "yes"
    with pytest.raises(TypeError, match=r"matmul\.allow_tf32 expects a bool, got int"):
        dt.backends.cuda.matmul.allow_tf32 = 1
    assert dt.backends.cuda.is_built() == (backend.cupy is not None)


# ---------------------------------------------------------------- threads
def test_set_and_get_num_threads():
    before = dt.get_num_threads()
    try:
        dt.set_num_threads(1)
        assert dt.get_num_threads() == 1
    finally:
        dt.set_num_threads(before)
    assert dt.get_num_threads() == before
    with pytest.raises(RuntimeError, match="set_num_threads expects a positive integer, got 0"):
        dt.set_num_threads(0)
    with pytest.raises(TypeError, match=r"set_num_threads: expected an int, got float \(2.0\)"):
        dt.set_num_threads(2.0)


# ---------------------------------------------------------------- multiprocessing
def _write_index(i, directory, suffix):
    with open(os.path.join(directory, f"{i}{suffix}"), "w") as f:
        f.write(str(i * 10))


def _fail_on_one(i):
    if i == 1:
        raise ValueError(f"boom from process {i}")


def _exit_with_three(i):
    os._exit(3)


def test_multiprocessing_has_the_standard_names():
    import multiprocessing

    for name in multiprocessing.__all__:
        assert getattr(mp, name) is getattr(multiprocessing, name), name
    assert {"spawn", "start_processes", "ProcessRaisedException"} <= set(mp.__all__)


@pytest.mark.parametrize("start_method", ["fork", "spawn"])
def test_spawn_runs_fn_with_the_index(tmp_path, start_method):
    assert mp.spawn(_write_index, args=(str(tmp_path), ".txt"), nprocs=2,
                    start_method=start_method) is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["0.txt", "1.txt"]
    assert (tmp_path / "1.txt").read_text() == "10"


def test_spawn_reraises_the_child_exception_with_its_index_and_traceback():
    with pytest.raises(mp.ProcessRaisedException) as info:
        mp.spawn(_fail_on_one, nprocs=2, start_method="fork")
    message = str(info.value)
    assert "-- Process 1 terminated with the following error:" in message
    assert "Traceback (most recent call last)" in message
    assert "ValueError: boom from process 1" in message and info.value.error_index == 1


def test_spawn_reports_an_exit_code_and_join_false_gives_a_context():
    context = mp.spawn(_exit_with_three, nprocs=1, join=False, start_method="fork")
    assert isinstance(context, mp.ProcessContext) and len(context.pids()) == 1
    with pytest.raises(mp.ProcessExitedException, match="process 0 terminated with exit code 3"):
        while not context.join():
            pass


def test_spawn_argument_errors():
    with pytest.raises(ValueError, match=r"nprocs must be a positive int, got 0"):
        mp.spawn(_fail_on_one, nprocs=0)
    with pytest.raises(TypeError, match=r"fn must be callable, got 3"):
        mp.spawn(3)


# ---------------------------------------------------------------- shared memory
def _sgd_step_in_child(i, model):
    with dt.no_grad():
        for p in model.parameters():
            p.add_(1.0)  # an in-place update, as an optimizer step is


def test_share_memory_lets_forked_children_update_parameters():
    model = nn.Linear(3, 2)
    model.register_buffer("steps", dt.zeros(1))
    assert not any(t.is_shared() for t in model.parameters())
    assert model.share_memory() is model
    assert all(t.is_shared() for t in [*model.parameters(), *model.buffers()])
    before = {k: v.copy() for k, v in model.state_dict().items()}
    mp.spawn(_sgd_step_in_child, args=(model,), nprocs=2, start_method="fork")
    after = model.state_dict()
    for name in ("weight", "bias"):  # two children added 1 each, to the parent's storage
        numpy.testing.assert_allclose(after[name], before[name] + 2, rtol=1e-6)


def test_share_memory_keeps_values_and_refuses_spawned_copies():
    t = dt.randn(4, 5)
    values = t.numpy().copy()
    assert t.share_memory_() is t and t.is_shared()
    assert isinstance(t.array.base.base.obj, mmap.mmap)
    numpy.testing.assert_array_equal(t.numpy(), values)
    assert t[1:].is_shared()  # a view of shared storage is shared too
    model = nn.Linear(2, 2).share_memory()
    with pytest.raises(RuntimeError, match=r"args\[0\] \(Linear\) holds tensors in shared "
                                           r"memory.*start_method='spawn'.*'fork'"):
        mp.spawn(_sgd_step_in_child, args=(model,), start_method="spawn")


# ---------------------------------------------------------------- tensors
def test_from_numpy_shares_memory_and_as_tensor_where_it_can():
    a = numpy.arange(3.0)
    t = dt.from_numpy(a)
    a[0] = 7
    assert t.tolist() == [7.0, 1.0, 2.0] and t.dtype == dt.float64
    t.add_(1)
    assert a.tolist() == [8.0, 2.0, 3.0]
    assert dt.as_tensor(a).array is a and dt.as_tensor(t) is t
    assert dt.as_tensor(a, dtype=dt.float32).array is not a
    with pytest.raises(TypeError, match=r"from_numpy: expected np.ndarray \(got list\)"):
        dt.from_numpy([1, 2])
    with pytest.raises(TypeError, match=r"from_numpy: can't convert a numpy array of dtype <U1"):
        dt.from_numpy(numpy.array(["a"]))


def test_random_fills_use_the_generator():
    a = dt.zeros(1000).normal_(2.0, 0.5, generator=dt.Generator().manual_seed(0))
    b = dt.zeros(1000).normal_(2.0, 0.5, generator=dt.Generator().manual_seed(0))
    assert a.tolist() == b.tolist() and abs(a.mean().item() - 2.0) < 0.1
    u = dt.zeros(1000, dtype=dt.float64).uniform_(-3, -1)
    assert u.dtype == dt.float64 and -3 <= u.min().item() and u.max().item() < -1
    assert dt.zeros(3).uniform_(**{"from": 5, "to": 6}).min().item() >= 5
    with pytest.raises(ValueError, match=r"uniform_: expects from <= to, but got from=2 > to=1"):
        dt.zeros(2).uniform_(2, 1)
    with pytest.raises(ValueError, match=r"normal_: expects std >= 0.0, but found std -1"):
        dt.zeros(2).normal_(0, -1)
    with pytest.raises(TypeError, match=r"normal_: expects a floating point tensor, got dtype "
                                        r"int64"):
        dt.zeros(2, dtype=dt.int64).normal_()


def test_inplace_updates_refuse_leaves_that_require_grad():
    w = dt.ones(2, requires_grad=True)
    for call in (lambda: w.addcmul_(w, w), lambda: w.sqrt_(), lambda: w.normal_(),
                 lambda: w.lerp_(dt.zeros(2), 0.5)):
        with pytest.raises(RuntimeError, match=r"a leaf Variable that requires grad"):
            call()
    with dt.no_grad():
        w.addcdiv_(dt.ones(2), dt.full((2,), 4.0), value=2)
    assert w.tolist() == [1.5, 1.5]


@pytest.mark.parametrize("call, error, message", [
    (lambda: dt.ones(2, 3).mm(dt.ones(3)), ValueError, r"mm: both arguments must be 2-D, got "
                                                         r"shapes \(2, 3\) and \(3,\)"),
    (lambda: dt.ones(2, 3).mm(dt.ones(3, 2, dtype=dt.float64)), ValueError,
     r"mm: expected both arguments to have the same dtype, got float32 and float64"),
    (lambda: dt.ones(4).topk(5), ValueError, r"topk: k \(5\) must be an int in \[0, 4\]"),
    (lambda: dt.ones(4).maximum(2.0), TypeError, r"maximum: other must be a Tensor, got float"),
    (lambda: dt.ones(4).div(2, rounding_mode="round"), ValueError,
     r"div: expected rounding_mode to be one of None, 'trunc' or 'floor', got 'round'"),
    (lambda: dt.ones(2).sort(dim=1), IndexError,
     r"sort: dimension out of range \(expected to be in range of \[-1, 0\], but got 1\)"),
])
def test_tensor_method_errors(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_sorting_0d_and_topk_namedtuple():
    x = dt.tensor(3.0, requires_grad=True)
    values, indices = x.sort()
    assert values.item() == 3.0 and indices.item() == 0 and indices.dtype == dt.int64
    result = dt.tensor([1.0, 5.0, 3.0]).topk(2)
    assert type(result).__name__ == "topk" and result.indices.tolist() == [1, 2]
    assert type(dt.sort(dt.ones(2))).__name__ == "sort"


def test_multiprocessing_pickler_refuses_shared_tensors_but_not_others():
    from multiprocessing.reduction import ForkingPickler

    plain, shared = nn.Parameter(dt.ones(2)), nn.Parameter(dt.ones(2))
    shared.share_memory_()
    copy = pickle.loads(ForkingPickler.dumps(plain))
    assert copy.tolist() == [1.0, 1.0] and copy.requires_grad and isinstance(copy, nn.Parameter)
    with pytest.raises(RuntimeError, match=r"Parameter in shared memory \(share_memory_\) "
                                           r"pickled for another process.*'fork'"):
        ForkingPickler.dumps(shared)
    assert pickle.loads(pickle.dumps(shared)).tolist() == [1.0, 1.0]  # plain pickle: a copy


def test_pow_with_a_tensor_exponent_keeps_negative_bases_exact():
    # "Learning PyTorch with Examples": x.unsqueeze(-1).pow(torch.tensor([1, 2, 3]))
    x = dt.linspace(-3, 3, 5)
    got = x.unsqueeze(-1).pow(dt.tensor([1, 2, 3]))
    assert got.dtype == dt.float32
    expected = numpy.stack([x.numpy() ** k for k in (1, 2, 3)], axis=1)
    numpy.testing.assert_allclose(got.numpy(), expected, rtol=1e-6)
    numpy.testing.assert_array_equal((2 ** dt.tensor([1, 2, 3])).numpy(), [2, 4, 8])
    numpy.testing.assert_array_equal(((-2.0) ** dt.tensor([1.0, 2.0])).numpy(), [-2.0, 4.0])


def test_type_without_dtype_gives_torchs_type_string():
    assert dt.zeros(2).type() == "torch.FloatTensor"
    assert dt.zeros(2).long().type() == "torch.LongTensor"
    assert dt.tensor([True]).type() == "torch.BoolTensor"
    assert dt.zeros(2).type(dt.float64).dtype == dt.float64


@pytest.mark.parametrize("name, args", [
    ("masked_fill_", (numpy.array([True, False, True]), 1.0)), ("exp_", ()), ("log_", ()),
    ("abs_", ()), ("neg_", ()), ("pow_", (2,)), ("relu_", ()), ("sigmoid_", ()),
    ("tanh_", ()), ("clamp_min_", (0.5,)), ("clamp_max_", (0.5,)), ("floor_", ()),
    ("ceil_", ()), ("round_", ()), ("trunc_", ()), ("sign_", ()), ("sin_", ()), ("cos_", ()),
    ("reciprocal_", ()), ("rsqrt_", ()), ("square_", ())])
def test_inplace_variants_match_torch(name, args):
    import torch

    ours, theirs = dt.tensor([0.25, 0.75, 1.6]), torch.tensor([0.25, 0.75, 1.6])
    assert getattr(ours, name)(*[dt.tensor(a) if isinstance(a, numpy.ndarray) else a
                                 for a in args]) is ours
    getattr(theirs, name)(*[torch.from_numpy(a) if isinstance(a, numpy.ndarray) else a
                            for a in args])
    numpy.testing.assert_allclose(ours.numpy(), theirs.numpy(), rtol=1e-6)


def test_inplace_variants_refuse_lossy_casts_and_leaves_that_require_grad():
    with pytest.raises(RuntimeError, match="sigmoid_: result type float64 can't be cast to "
                                           "the desired output type int64"):
        dt.tensor([1, 2]).sigmoid_()
    with pytest.raises(RuntimeError, match="exp_: a leaf Variable that requires grad"):
        dt.zeros(2, requires_grad=True).exp_()


@pytest.mark.parametrize("name, kwargs", [
    ("norm", {}), ("norm", {"dim": 1}), ("norm", {"p": 1, "dim": 0}),
    ("norm", {"p": float("inf"), "dim": 1, "keepdim": True}), ("norm", {"p": 0}),
    ("norm", {"p": 3}), ("prod", {}), ("prod", {"dim": 1}), ("cumsum", {"dim": 0}),
    ("logsumexp", {"dim": 1}), ("amin", {"dim": 0}), ("any", {}), ("all", {"dim": 1})])
def test_reductions_match_torch_values_and_gradients(name, kwargs):
    import torch

    data = numpy.array([[0.5, -1.0, 0.0, 2.0], [1.5, 0.25, -0.75, 3.0], [0.0, 0.0, 1.0, -2.0]])
    ours = dt.tensor(data, requires_grad=True)
    theirs = torch.tensor(data, requires_grad=True)
    if name in ("any", "all"):
        ours, theirs = dt.tensor(data != 0), torch.tensor(data != 0)
    got, want = getattr(ours, name)(**kwargs), getattr(theirs, name)(**kwargs)
    numpy.testing.assert_allclose(got.detach().numpy(), want.detach().numpy(), rtol=1e-12)
    if want.requires_grad and kwargs.get("p") != 0:  # NOTE: p=0 counts: no graph here
        seed = numpy.arange(1.0, want.numel() + 1).reshape(want.shape)
        got.backward(dt.tensor(seed))
        want.backward(torch.tensor(seed))
        numpy.testing.assert_allclose(ours.grad.numpy(), theirs.grad.numpy(), rtol=1e-12)


def test_norm_of_zeros_has_a_zero_gradient_and_bad_p_is_named():
    x = dt.zeros(3, requires_grad=True)
    x.norm().backward()
    numpy.testing.assert_array_equal(x.grad.numpy(), [0.0, 0.0, 0.0])  # not 0/0
    with pytest.raises(ValueError, match="norm: p should be a number or 'fro', got 'nuc'"):
        dt.ones(2, 2).norm(p="nuc")


def test_free_functions_write_into_out_as_torch():
    a = dt.ones(2, 3)
    out = dt.zeros(1)
    assert dt.matmul(a, a.T, out=out) is out and out.shape == (2, 2)
    numpy.testing.assert_array_equal(out.numpy(), [[3.0, 3.0], [3.0, 3.0]])
    z = dt.zeros(2, 3)
    assert dt.mul(a, a * 2, out=z) is z and float(z.sum()) == 12.0
    with pytest.raises(RuntimeError, match="mul\\(\\): functions with out=... arguments don't "
                                           "support automatic differentiation"):
        dt.mul(dt.ones(2, requires_grad=True), 2.0, out=dt.zeros(2))
    with pytest.raises(TypeError, match="matmul\\(\\): out should be a Tensor, got ndarray"):
        dt.matmul(a, a.T, out=numpy.zeros((2, 2)))
    numpy.testing.assert_array_equal(a.matmul(a.T).numpy(), out.numpy())


def test_grad_fn_next_functions_walks_the_graph_as_torch():
    from disttrain.autograd import AccumulateGrad

    w = dt.ones(3, requires_grad=True)
    loss = ((w * 2).sum() - 1.0)
    (sum_fn, _), = [f for f in loss.grad_fn.next_functions if f[0] is not None]
    assert repr(sum_fn) == "<SumBackward>"
    (mul_fn, index), = sum_fn.next_functions
    assert repr(mul_fn) == "<MulBackward>" and index == 0
    leaf = [f for f, _ in mul_fn.next_functions if f is not None]
    assert len(leaf) == 1 and isinstance(leaf[0], AccumulateGrad) and leaf[0].variable is w
    assert repr(leaf[0]) == "<AccumulateGrad>"
