"""RandomRotation / RandomAffine against torchvision's tensor path rebuilt on torch (torchvision
itself is not a dependency): its inverse affine matrix, its affine grid (normalised by the
input size) and torch.nn.functional.grid_sample with the appended-ones mask for `fill`.
One line per case."""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from disttrain.data import transforms as T  # noqa: E402


def torchvision_inverse_matrix(center, angle, translate, scale, shear):
    """torchvision.transforms.functional._get_inverse_affine_matrix, written out again."""
    rot, sx, sy = math.radians(angle), math.radians(shear[0]), math.radians(shear[1])
    (cx, cy), (tx, ty) = center, translate
    a = math.cos(rot - sy) / math.cos(sy)
    b = -math.cos(rot - sy) * math.tan(sx) / math.cos(sy) - math.sin(rot)
    c = math.sin(rot - sy) / math.cos(sy)
    d = -math.sin(rot - sy) * math.tan(sx) / math.cos(sy) + math.cos(rot)
    m = [x / scale for x in (d, -b, 0.0, -c, a, 0.0)]
    m[2] += m[0] * (-cx - tx) + m[1] * (-cy - ty) + cx
    m[5] += m[3] * (-cx - tx) + m[4] * (-cy - ty) + cy
    return m


def torchvision_warp(img, matrix, mode, fill):
    """torchvision's _gen_affine_grid + _apply_grid_transform for one (C, H, W) image."""
    c, h, w = img.shape
    theta = torch.tensor(matrix, dtype=torch.float32).reshape(1, 2, 3)
    xs = torch.linspace(-w * 0.5 + 0.5, w * 0.5 - 0.5, w)
    ys = torch.linspace(-h * 0.5 + 0.5, h * 0.5 - 0.5, h)
    base = torch.stack([xs.expand(h, w), ys[:, None].expand(h, w), torch.ones(h, w)], -1)
    grid = base.reshape(1, h * w, 3).bmm(theta.transpose(1, 2) / torch.tensor([0.5 * w, 0.5 * h]))
    x = torch.cat([torch.from_numpy(img)[None], torch.ones(1, 1, h, w)], 1)
    out = torch.nn.functional.grid_sample(x, grid.reshape(1, h, w, 2), mode=mode,
                                          padding_mode="zeros", align_corners=False)[0]
    out, mask = out[:-1], out[-1:].expand(c, h, w)
    fill_img = torch.tensor(fill, dtype=torch.float32).reshape(-1, 1, 1).expand(c, h, w)
    if mode == "nearest":
        return torch.where(mask < 0.5, fill_img, out).numpy()
    return (out * mask + (1.0 - mask) * fill_img).numpy()


IMAGES = np.random.default_rng(9).random((3, 3, 11, 14)).astype(np.float32)
CENTER = (0.0, 0.0)


@pytest.mark.parametrize("mode, fill, angles, center", [
    ("nearest", [0.0], (7.5, -33.0, 61.0), None),
    ("bilinear", [0.0], (7.5, -33.0, 61.0), None),
    ("bilinear", [0.2, 0.5, 1.0], (12.0, 150.0, -95.0), None),
    # NOTE: not 45 degrees about (2, 9): sources land on exact .5 ties, which float32 rounding
    # sends either way (in torch too)
    ("nearest", [0.7], (3.0, 47.0, -170.0), (2.0, 9.0)),
    ("bilinear", [0.3], (3.0, 45.0, -170.0), (2.0, 9.0)),
])
def test_rotation_matches_torchvision(mode, fill, angles, center):
    rot = T.RandomRotation(180, interpolation=mode, fill=fill, center=center)
    out = rot.apply(IMAGES, {"angle": np.array(angles)})
    offset = CENTER if center is None else (center[0] - 7.0, center[1] - 5.5)
    for n, angle in enumerate(angles):
        matrix = torchvision_inverse_matrix(offset, -angle, (0.0, 0.0), 1.0, (0.0, 0.0))
        expected = torchvision_warp(IMAGES[n], matrix, mode, fill)
        np.testing.assert_allclose(out[n], expected, rtol=1e-5, atol=2e-5)


@pytest.mark.parametrize("mode, angle, translate, scale, shear", [
    ("bilinear", (10.0, -25.0, 40.0), ((2, -1), (0, 3), (-4, 0)), (1.0, 0.8, 1.3),
     ((0, 0), (10, 0), (-8, 5))),
    ("nearest", (0.0, 0.0, 0.0), ((2, -1), (0, 3), (-4, 0)), (1.0, 1.0, 1.0),
     ((0, 0), (0, 0), (0, 0))),
    ("nearest", (33.0, -12.0, 5.0), ((1, 1), (-2, 0), (0, -3)), (0.9, 1.1, 1.5),
     ((4, -3), (0, 12), (20, 0))),
])
def test_affine_matches_torchvision(mode, angle, translate, scale, shear):
    aff = T.RandomAffine(0, interpolation=mode, fill=0.25)
    params = {"angle": np.array(angle), "translate": np.array(translate, float),
              "scale": np.array(scale), "shear": np.array(shear, float)}
    out = aff.apply(IMAGES, params)
    for n in range(3):
        matrix = torchvision_inverse_matrix(CENTER, angle[n], translate[n], scale[n], shear[n])
        expected = torchvision_warp(IMAGES[n], matrix, mode, [0.25])
        np.testing.assert_allclose(out[n], expected, rtol=1e-5, atol=2e-5)


def test_expanded_rotation_size_matches_torchvision():
    for angle, (h, w) in ((30.0, (11, 14)), (90.0, (4, 6)), (45.0, (10, 10)), (-75.0, (7, 3))):
        matrix = torchvision_inverse_matrix(CENTER, -angle, (0.0, 0.0), 1.0, (0.0, 0.0))
        pts = torch.tensor([[-0.5 * w, -0.5 * h, 1.0], [-0.5 * w, 0.5 * h, 1.0],
                            [0.5 * w, 0.5 * h, 1.0], [0.5 * w, -0.5 * h, 1.0]])
        new = pts @ torch.tensor(matrix, dtype=torch.float).view(2, 3).T
        low, high = new.min(0).values + torch.tensor([w * 0.5, h * 0.5]), new.max(0).values + \
            torch.tensor([w * 0.5, h * 0.5])
        size = torch.ceil((high / 1e-4).trunc() * 1e-4) - torch.floor((low / 1e-4).trunc() * 1e-4)
        out = T.RandomRotation(90, expand=True).apply(np.ones((1, h, w), np.float32),
                                                      {"angle": np.array([angle])})
        assert out.shape[1:] == (int(size[1]), int(size[0])), angle
