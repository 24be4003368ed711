"""disttrain.data.transforms augmentation: exact results of each transform on given parameters,
the batched path equal to the per-sample path, parameter statistics, torchvision's reprs and
argument errors, reproducibility per seed/rank/epoch, BatchAugment on a DataLoader."""

from __future__ import annotations

import numpy as np
import pytest

import disttrain as dt
from disttrain.data import DataLoader, TensorDataset
from disttrain.data import transforms as T
from disttrain.tensor import Tensor

RNG = np.random.default_rng(5)
BATCH = RNG.random((6, 3, 9, 8)).astype(np.float32)
UINT8 = RNG.integers(0, 256, (5, 3, 7, 7), dtype=np.uint8)


def _per_sample(transform, batch, params):
    rows = [{k: np.asarray(v)[i:i + 1] for k, v in params.items()} for i in range(len(batch))]
    return np.stack([transform.apply(batch[i], row) for i, row in enumerate(rows)])


def _all_transforms(generator):
    return [T.RandomHorizontalFlip(generator=generator), T.RandomVerticalFlip(generator=generator),
            T.RandomCrop(7, padding=2, generator=generator),
            T.RandomCrop((5, 6), padding=(1, 2), padding_mode="reflect", generator=generator),
            T.RandomRotation(30, generator=generator),
            T.RandomRotation((-20, 40), interpolation="bilinear", fill=(0.5, 0.1, 1),
                             center=(2, 3), generator=generator),
            T.RandomAffine(15, translate=(0.2, 0.1), scale=(0.8, 1.2), shear=(-5, 5, -3, 3),
                           interpolation=T.InterpolationMode.BILINEAR, generator=generator),
            T.ColorJitter(0.5, 0.5, 0.5, 0.2, generator=generator),
            T.RandomErasing(p=0.8, generator=generator),
            T.RandomErasing(p=0.8, value="random", generator=generator),
            T.GaussianNoise(sigma=0.2, generator=generator)]


@pytest.mark.parametrize("index", range(11))
@pytest.mark.parametrize("batch", [BATCH, UINT8], ids=["float32", "uint8"])
def test_batched_path_equals_per_sample_path(index, batch):
    transform = _all_transforms(dt.Generator().manual_seed(index))[index]
    if isinstance(transform, T.GaussianNoise) and batch.dtype == np.uint8:
        return
    params = transform.make_params(batch)
    whole = transform.apply(batch, params)
    np.testing.assert_allclose(whole, _per_sample(transform, batch, params), rtol=1e-6, atol=1e-6)
    assert whole.dtype == batch.dtype


def test_flips_are_exact_and_follow_p():
    x = np.arange(2 * 3 * 4).reshape(2, 3, 4)
    np.testing.assert_array_equal(T.RandomHorizontalFlip(1.0)(x), x[..., ::-1])
    np.testing.assert_array_equal(T.RandomVerticalFlip(1.0)(x), x[:, ::-1])
    np.testing.assert_array_equal(T.RandomVerticalFlip(0.0)(x), x)
    flip = np.array([True, False, True, False, False, True])
    out = T.RandomHorizontalFlip().apply(BATCH, {"flip": flip})
    np.testing.assert_array_equal(out[flip], BATCH[flip][..., ::-1])
    np.testing.assert_array_equal(out[~flip], BATCH[~flip])
    big = np.zeros((4000, 1, 1, 2))
    big[..., 1] = 1
    flipped = T.RandomHorizontalFlip(0.3, generator=dt.Generator().manual_seed(0))(big)
    assert abs(flipped[:, 0, 0, 0].mean() - 0.3) < 0.03
    assert isinstance(T.RandomHorizontalFlip(1.0)(Tensor(x)), Tensor)
    hw = np.arange(6).reshape(2, 3)
    np.testing.assert_array_equal(T.RandomHorizontalFlip(1.0)(hw), hw[:, ::-1])


@pytest.mark.parametrize("mode", ["constant", "edge", "reflect", "symmetric"])
def test_random_crop_is_the_crop_of_the_padded_image(mode):
    crop = T.RandomCrop((6, 5), padding=(1, 2, 3, 4), fill=7, padding_mode=mode,
                        generator=dt.Generator().manual_seed(1))
    params = crop.make_params(BATCH)
    kwargs = {"constant_values": 7} if mode == "constant" else {}
    padded = np.pad(BATCH, [(0, 0), (0, 0), (2, 4), (1, 3)], mode=mode, **kwargs)
    out = crop.apply(BATCH, params)
    for n, (i, j) in enumerate(zip(params["i"], params["j"], strict=True)):
        np.testing.assert_array_equal(out[n], padded[n, :, i:i + 6, j:j + 5])
    assert params["i"].min() >= 0 and params["i"].max() <= 15 - 6
    assert params["j"].max() <= 12 - 5


def test_random_crop_offsets_cover_the_range_and_pad_if_needed():
    crop = T.RandomCrop(28, padding=2, generator=dt.Generator().manual_seed(0))
    params = crop.make_params(np.zeros((2000, 1, 28, 28), np.float32))
    assert sorted(set(params["i"].tolist())) == [0, 1, 2, 3, 4]
    assert sorted(set(params["j"].tolist())) == [0, 1, 2, 3, 4]
    small = np.ones((1, 3, 4), np.float32)
    out = T.RandomCrop(6, pad_if_needed=True, fill=(9,))(small)
    assert out.shape == (1, 6, 6) and out.sum() == 12 + 9 * 24
    unchanged = T.RandomCrop((9, 8))(BATCH)
    np.testing.assert_array_equal(unchanged, BATCH)
    with pytest.raises(ValueError, match=r"RandomCrop: required crop size \(10, 10\) is larger "
                                         r"than the \(padded\) input image size \(9, 8\)"):
        T.RandomCrop(10)(BATCH)


def test_rotation_by_right_angles_is_rot90():
    x = RNG.random((2, 2, 6, 6)).astype(np.float32)
    rot = T.RandomRotation(90)
    for angle, k in ((90, 1), (180, 2), (-90, 3), (270, 3)):
        out = rot.apply(x, {"angle": np.full(2, float(angle))})
        np.testing.assert_array_equal(out, np.rot90(x, k, axes=(2, 3)))
    odd = RNG.random((1, 5, 5)).astype(np.float32)
    np.testing.assert_array_equal(rot.apply(odd, {"angle": np.array([90.0])}),
                                  np.rot90(odd, 1, axes=(1, 2)))
    nonsquare = RNG.random((1, 4, 6)).astype(np.float32)
    out = rot.apply(nonsquare, {"angle": np.array([180.0])})
    np.testing.assert_array_equal(out, nonsquare[:, ::-1, ::-1])


def test_rotation_fill_expand_and_uint8():
    x = np.ones((1, 8, 8), np.float32)
    out = T.RandomRotation(45, fill=5).apply(x, {"angle": np.array([45.0])})
    assert out[0, 0, 0] == 5 and out[0, 4, 4] == 1
    wide = T.RandomRotation(90, expand=True).apply(np.ones((1, 4, 6)), {"angle": np.array([90.])})
    assert wide.shape == (1, 6, 4) and np.all(wide == 1)
    diag = T.RandomRotation(45, expand=True).apply(np.ones((1, 10, 10)),
                                                   {"angle": np.array([45.0])})
    assert diag.shape == (1, 16, 16)  # NOTE: ceil(12.07) - floor(-2.07)
    img = UINT8[:1]
    out = T.RandomRotation(30, interpolation="bilinear")(img)
    assert out.dtype == np.uint8
    with pytest.raises(ValueError, match="RandomRotation: expand=True gives each sample of a "
                                         "batch its own size"):
        T.RandomRotation(10, expand=True)(BATCH)


def test_affine_identity_and_pure_translation():
    aff = T.RandomAffine(0, interpolation="bilinear")
    identity = {"angle": np.zeros(6), "translate": np.zeros((6, 2)), "scale": np.ones(6),
                "shear": np.zeros((6, 2))}
    np.testing.assert_allclose(aff.apply(BATCH, identity), BATCH, atol=1e-6)
    np.testing.assert_array_equal(T.RandomAffine(0).apply(UINT8, {**identity, "angle":
                                  np.zeros(5), "translate": np.zeros((5, 2)), "scale":
                                  np.ones(5), "shear": np.zeros((5, 2))}), UINT8)
    shift = {**identity, "translate": np.tile([2.0, 1.0], (6, 1))}
    out = T.RandomAffine(0, fill=-1).apply(BATCH, shift)
    np.testing.assert_array_equal(out[:, :, 1:, 2:], BATCH[:, :, :-1, :-2])
    assert np.all(out[:, :, 0] == -1) and np.all(out[:, :, :, :2] == -1)


def test_affine_parameters_stay_in_their_ranges():
    aff = T.RandomAffine((-5, 10), translate=(0.25, 0.5), scale=(0.5, 2), shear=7,
                         generator=dt.Generator().manual_seed(3))
    params = aff.make_params(np.zeros((500, 1, 8, 12)))
    assert -5 <= params["angle"].min() and params["angle"].max() <= 10
    assert np.abs(params["translate"][:, 0]).max() == 3  # |tx| <= round(0.25 * 12)
    assert np.abs(params["translate"][:, 1]).max() == 4
    assert np.all(params["translate"] == np.rint(params["translate"]))
    assert 0.5 <= params["scale"].min() and params["scale"].max() <= 2
    assert np.abs(params["shear"][:, 0]).max() <= 7 and np.all(params["shear"][:, 1] == 0)


def _gray(x):
    return (0.2989 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2])[:, None]


def test_color_jitter_brightness_and_contrast_formulas():
    n = len(BATCH)
    jitter = T.ColorJitter(brightness=0.5, contrast=0.5)
    for op, name in ((0, "brightness"), (1, "contrast")):
        factor = np.linspace(0.5, 1.5, n)
        order = np.tile([op, 1 - op, 2, 3], (n, 1))
        other = "contrast" if name == "brightness" else "brightness"
        out = jitter.apply(BATCH, {"order": order, name: factor, other: np.ones(n)})
        f = factor[:, None, None, None].astype(np.float32)
        if name == "brightness":
            expected = np.clip(f * BATCH, 0, 1)
        else:
            mean = _gray(BATCH).mean(axis=(1, 2, 3), keepdims=True)
            expected = np.clip(f * BATCH + (1 - f) * mean, 0, 1)
        np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)
    gray1 = BATCH[:, :1]
    out = jitter.apply(gray1, {"order": np.tile([1, 0, 2, 3], (n, 1)),
                               "contrast": np.full(n, 2.0), "brightness": np.ones(n)})
    mean = gray1.mean(axis=(1, 2, 3), keepdims=True)
    np.testing.assert_allclose(out, np.clip(2 * gray1 - mean, 0, 1), rtol=1e-5, atol=1e-6)


def test_color_jitter_uint8_truncates_and_order_matters():
    jitter = T.ColorJitter(brightness=(1.7, 1.7))
    out = jitter(UINT8)
    np.testing.assert_array_equal(out, np.clip(np.float32(1.7) * UINT8, 0, 255).astype(np.uint8))
    x = np.full((2, 1, 2, 2), 0.8, np.float32)
    x[:, :, 0] = 0.2
    both = {"brightness": np.full(2, 1.5), "contrast": np.full(2, 1.5)}
    first_b = jitter.apply(x, {**both, "order": np.array([[0, 1, 2, 3]] * 2)})
    first_c = jitter.apply(x, {**both, "order": np.array([[1, 0, 2, 3]] * 2)})
    np.testing.assert_allclose(first_b[0, 0, 0], 0.125, rtol=1e-5)  # 1.5 * 0.3 - 0.5 * 0.65
    np.testing.assert_allclose(first_c[0, 0, 0], 0.075, rtol=1e-5)  # 1.5 * (0.3 - 0.25)


def test_color_jitter_saturation_and_hue_against_colorsys():
    import colorsys
    n = len(BATCH)
    order = np.tile([2, 3, 0, 1], (n, 1))
    jitter = T.ColorJitter(saturation=0.5, hue=0.3)
    sat, hue = np.linspace(0.5, 1.5, n), np.linspace(-0.3, 0.3, n)
    out = jitter.apply(BATCH.astype(np.float64), {"order": order, "saturation": sat,
                                                  "hue": hue})
    s = sat[:, None, None, None]
    blended = np.clip(s * BATCH + (1 - s) * _gray(BATCH).astype(np.float32), 0, 1)
    expected = np.empty_like(blended)
    for idx in np.ndindex(n, 9, 8):
        h, sv, v = colorsys.rgb_to_hsv(*blended[idx[0], :, idx[1], idx[2]])
        expected[idx[0], :, idx[1], idx[2]] = colorsys.hsv_to_rgb((h + hue[idx[0]]) % 1, sv, v)
    np.testing.assert_allclose(out, expected, atol=1e-6)
    np.testing.assert_array_equal(T.ColorJitter(saturation=0.9, hue=0.4)(BATCH[:, :1]),
                                  BATCH[:, :1])


def test_random_erasing_region_statistics():
    n, h, w = 3000, 20, 30
    erasing = T.RandomErasing(p=0.7, scale=(0.05, 0.2), ratio=(0.5, 2.0), value=(3.0,),
                              generator=dt.Generator().manual_seed(2))
    out = erasing(np.zeros((n, 1, h, w), np.float32))
    erased = out[:, 0] == 3.0
    rows, cols = erased.any(axis=2), erased.any(axis=1)
    heights, widths = rows.sum(1), cols.sum(1)
    hit = heights > 0
    assert abs(hit.mean() - 0.7) < 0.03
    np.testing.assert_array_equal(erased.sum((1, 2)), heights * widths)  # a full rectangle
    area = (heights * widths)[hit] / (h * w)
    assert area.min() >= 0.03 and area.max() <= 0.23  # scale, up to rounding of the sides
    aspect = heights[hit] / widths[hit]
    assert aspect.min() >= 0.5 * 0.7 and aspect.max() <= 2.0 / 0.7
    tops = rows[hit].argmax(1)
    assert tops.min() == 0 and (tops + heights[hit]).max() == h
    colored = T.RandomErasing(p=1.0, value=(1, 2, 3))(np.zeros((3, 10, 10), np.float32))
    assert set(np.unique(colored[1]).tolist()) == {0.0, 2.0}
    inplace = np.zeros((2, 1, 10, 10), np.float32)
    T.RandomErasing(p=1.0, value=1, inplace=True)(inplace)
    assert inplace.sum() > 0


def test_gaussian_noise_mean_std_and_clip():
    g = dt.Generator().manual_seed(4)
    x = np.full((64, 1, 32, 32), 0.5, np.float32)
    out = T.GaussianNoise(mean=0.05, sigma=0.1, clip=False, generator=g)(x)
    assert out.dtype == np.float32
    assert abs(out.mean() - 0.55) < 2e-3 and abs(out.std() - 0.1) < 2e-3
    clipped = T.GaussianNoise(sigma=1.0, generator=g)(x)
    assert clipped.min() == 0.0 and clipped.max() == 1.0
    with pytest.raises(TypeError, match="GaussianNoise: input should be a float array, got "
                                        "dtype uint8"):
        T.GaussianNoise()(UINT8)


def test_reprs_match_torchvision():
    assert repr(T.RandomCrop(28, padding=2)) == "RandomCrop(size=(28, 28), padding=2)"
    assert repr(T.RandomHorizontalFlip()) == "RandomHorizontalFlip(p=0.5)"
    assert repr(T.RandomVerticalFlip(0.2)) == "RandomVerticalFlip(p=0.2)"
    assert repr(T.RandomRotation(10)) == ("RandomRotation(degrees=[-10.0, 10.0], "
                                          "interpolation=nearest, expand=False, fill=0)")
    assert repr(T.RandomAffine(0, translate=(0.1, 0.1), scale=(0.9, 1.1))) == (
        "RandomAffine(degrees=[0.0, 0.0], translate=(0.1, 0.1), scale=(0.9, 1.1))")
    assert repr(T.ColorJitter(brightness=0.5)) == (
        "ColorJitter(brightness=[0.5, 1.5], contrast=None, saturation=None, hue=None)")
    assert repr(T.RandomErasing()) == ("RandomErasing(p=0.5, scale=(0.02, 0.33), "
                                       "ratio=(0.3, 3.3), value=0, inplace=False)")
    assert repr(T.GaussianNoise()) == "GaussianNoise(mean=0.0, sigma=0.1, clip=True)"
    assert repr(T.Compose([T.RandomHorizontalFlip(), T.GaussianNoise()])) == (
        "Compose(\n    RandomHorizontalFlip(p=0.5)\n"
        "    GaussianNoise(mean=0.0, sigma=0.1, clip=True)\n)")


@pytest.mark.parametrize("build, message", [
    (lambda: T.RandomHorizontalFlip(1.5), r"RandomHorizontalFlip: p should be a probability "
                                          r"in \[0, 1\], got 1.5"),
    (lambda: T.RandomCrop(0), r"RandomCrop: size should be a positive int or a pair"),
    (lambda: T.RandomCrop(4, padding=(1, 2, 3)), r"RandomCrop: padding should be a "
                                                 r"non-negative int or a sequence of 1, 2 or 4"),
    (lambda: T.RandomCrop(4, padding_mode="wrap"), r"RandomCrop: padding_mode should be one "
                                                   r"of .*got 'wrap'"),
    (lambda: T.RandomRotation(-3), r"RandomRotation: if degrees is a single number, it must "
                                   r"be non-negative, got -3"),
    (lambda: T.RandomRotation(3, interpolation="bicubic"), r"RandomRotation: interpolation "
                                                           r"should be 'nearest' or 'bilinear'"),
    (lambda: T.RandomAffine(0, translate=(0.5, 2)), r"RandomAffine: translate should be 2 "
                                                    r"fractions in \[0, 1\], got \(0.5, 2\)"),
    (lambda: T.RandomAffine(0, scale=(0, 1)), r"RandomAffine: scale should be a \(min, max\) "
                                              r"pair of positive numbers"),
    (lambda: T.ColorJitter(brightness=-1), r"ColorJitter: if brightness is a single number, "
                                           r"it must be non-negative, got -1"),
    (lambda: T.ColorJitter(hue=0.7), r"ColorJitter: hue values should be between "
                                     r"\(-0.5, 0.5\), got \[-0.7, 0.7\]"),
    (lambda: T.RandomErasing(scale=(0.5, 0.1)), r"RandomErasing: scale should be \(min, max\)"),
    (lambda: T.RandomErasing(value="noise"), r"RandomErasing: a str value should be 'random'"),
    (lambda: T.GaussianNoise(sigma=-1), r"GaussianNoise: sigma shouldn't be negative, got -1"),
])
def test_argument_errors(build, message):
    with pytest.raises(ValueError, match=message):
        build()


def test_input_errors():
    with pytest.raises(TypeError, match="RandomCrop: generator should be a dt.Generator or a "
                                        "numpy Generator, got int"):
        T.RandomCrop(3, generator=3)
    with pytest.raises(TypeError, match="RandomHorizontalFlip: expected a numpy array or a CPU "
                                        "Tensor, got list"):
        T.RandomHorizontalFlip()([[1.0]])
    with pytest.raises(ValueError, match=r"RandomVerticalFlip: expected a sample \(C, H, W\) or "
                                         r"\(H, W\), or a batch \(N, C, H, W\), got shape \(3,\)"):
        T.RandomVerticalFlip()(np.zeros(3))
    with pytest.raises(ValueError, match=r"ColorJitter: expected 1 or 3 channels, got 2"):
        T.ColorJitter(0.5)(np.zeros((2, 4, 4), np.float32))
    with pytest.raises(ValueError, match="RandomRotation: fill has 2 values but the input has 3 "
                                         "channels"):
        T.RandomRotation(5, fill=(1, 2))(BATCH)
    with pytest.raises(ValueError, match=r"RandomErasing: value should have 1 or 3 \(number of "
                                         r"input channels\) values, got 2"):
        T.RandomErasing(p=1.0, value=(1, 2))(BATCH)


def _augment():
    return T.Compose([T.RandomCrop(8, padding=2), T.RandomRotation(20), T.RandomErasing(),
                      T.ColorJitter(0.3, 0.3), T.GaussianNoise()])


def test_reseed_is_reproducible_per_rank_and_epoch():
    def run(rank, epoch):
        aug = _augment()
        aug.reseed(seed=11, rank=rank, epoch=epoch)
        return aug(BATCH)

    np.testing.assert_array_equal(run(0, 0), run(0, 0))
    assert not np.allclose(run(0, 0), run(1, 0))
    assert not np.allclose(run(0, 0), run(0, 1))
    assert float(T.seed_for(3, 1, 2).random()) != float(T.seed_for(3, 2, 1).random())
    with pytest.raises(ValueError, match="seed_for: rank must be >= 0, got -1"):
        T.seed_for(0, rank=-1)


def test_default_generator_follows_manual_seed():
    dt.manual_seed(123)
    first = _augment()(BATCH)
    dt.manual_seed(123)
    np.testing.assert_array_equal(_augment()(BATCH), first)


def _loader():
    images = np.arange(10 * 8 * 8, dtype=np.float32).reshape(10, 1, 8, 8) / 640
    return DataLoader(TensorDataset(images, np.arange(10)), batch_size=4, shuffle=True, seed=5)


def _epochs(train, epochs=2):
    return [[(x.numpy().copy(), y.numpy().copy()) for x, y in train] for _ in range(epochs)]


def test_batch_augment_same_run_same_batches_other_rank_other_batches():
    runs = {rank: _epochs(T.BatchAugment(_loader(), _augment(), seed=7, rank=rank))
            for rank in (0, 1)}
    again = _epochs(T.BatchAugment(_loader(), _augment(), seed=7, rank=0))
    for mine, other, repeat in zip(runs[0], runs[1], again, strict=True):
        for (x, y), (x1, y1), (x2, y2) in zip(mine, other, repeat, strict=True):
            np.testing.assert_array_equal(x, x2)
            np.testing.assert_array_equal(y, y1)  # NOTE: same samples, other augmentation
            np.testing.assert_array_equal(y, y2)
            assert not np.allclose(x, x1)
    (x, y), next_epoch = runs[0][0][0], runs[0][1]
    assert not np.allclose(x, _first_of_epoch(next_epoch, y))  # NOTE: epochs differ too


def _first_of_epoch(epoch_batches, labels):
    """The epoch's augmented images of the samples `labels` (to compare across epochs)."""
    by_label = {int(label): image for x, y in epoch_batches for image, label in zip(x, y)}
    return np.stack([by_label[int(label)] for label in labels])


def test_batch_augment_resumes_mid_epoch_and_keeps_the_loader_interface():
    full = T.BatchAugment(_loader(), _augment(), seed=3, rank=1)
    first_epoch = _epochs(full, 1)[0]
    partial = T.BatchAugment(_loader(), _augment(), seed=3, rank=1)
    iterator = iter(partial)
    next(iterator)
    state = partial.state_dict()
    assert state["epoch"] == 0 and state["batches_yielded"] == 1 and state["seed"] == 3
    resumed = T.BatchAugment(_loader(), _augment(), seed=99, rank=1)
    resumed.load_state_dict(state)
    rest = [x.numpy() for x, _ in resumed]
    for (x, _), y in zip(first_epoch[1:], rest, strict=True):
        np.testing.assert_array_equal(x, y)
    assert len(resumed) == 3 and resumed.dataset is resumed.loader.dataset
    assert resumed.batch_size == 4  # NOTE: the loader's, as torch's (was None before the fix)
    x = BATCH[:, :1]
    twice = T.BatchAugment([x], _augment(), seed=0)
    list(twice)
    at_epoch_1 = T.BatchAugment([x], _augment(), seed=0)
    at_epoch_1.set_epoch(1)
    np.testing.assert_array_equal(list(at_epoch_1)[0], list(twice)[0])
    assert "BatchAugment(Compose(" in repr(full)


def test_batch_augment_batch_kinds():
    aug = T.RandomHorizontalFlip(1.0)
    x = np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4)  # (N, H, W)
    (out,) = T.BatchAugment([x], aug, seed=0)
    np.testing.assert_array_equal(out, x[..., ::-1])
    (batch,) = T.BatchAugment([{"image": Tensor(x), "label": 1}], aug, seed=0, index="image")
    assert isinstance(batch["image"], Tensor) and batch["label"] == 1
    np.testing.assert_array_equal(batch["image"].numpy(), x[..., ::-1])
    ((label, image),) = T.BatchAugment([(np.ones(2), x)], aug, seed=0, index=1)
    np.testing.assert_array_equal(image, x[..., ::-1])
    with pytest.raises(ValueError, match=r"BatchAugment: batch element 0 should be "
                                         r"\(N, C, H, W\) or \(N, H, W\), got shape \(2,\)"):
        list(T.BatchAugment([(np.ones(2),)], aug, seed=0))
    with pytest.raises(TypeError, match="BatchAugment: expected batches that are Tensors, "
                                        "arrays, tuples, lists or dicts, got int"):
        list(T.BatchAugment([3], aug, seed=0))


@pytest.mark.parametrize("name", ["disttrain.data.augment", "disttrain.data.augment_geometry",
                                  "disttrain.data.augment_pixel", "disttrain.data.transforms",
                                  "disttrain.data.warp", "disttrain.nn.utils.penalties"])
def test_docstring_examples_run(name):
    import doctest
    import importlib
    result = doctest.testmod(importlib.import_module(name), extraglobs={"np": np, "dt": dt})
    assert result.attempted > 0 and result.failed == 0


def test_warps_in_threads_do_not_share_work_buffers():
    from concurrent.futures import ThreadPoolExecutor
    big = RNG.random((64, 2, 20, 20)).astype(np.float32)
    cases = [(T.RandomRotation(30, interpolation=mode, generator=dt.Generator().manual_seed(i)),
              big[:, :, :, :20 - i]) for i, mode in enumerate(["nearest", "bilinear"] * 2)]
    params = [t.make_params(x) for t, x in cases]
    expected = [t.apply(x, p) for (t, x), p in zip(cases, params, strict=True)]

    def work(k):
        (t, x), p = cases[k % 4], params[k % 4]
        return all(np.array_equal(t.apply(x, p), expected[k % 4]) for _ in range(10))

    with ThreadPoolExecutor(4) as pool:
        assert all(pool.map(work, range(16)))
