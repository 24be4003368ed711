"""MNIST from the standard IDX files (raw or .gz), laid out flat or as torchvision does.

Imports numpy and disttrain.data only.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from disttrain.data.dataset import Dataset
from disttrain.data.datasets.idx import read_idx

_FILES = {
    True: ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    False: ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


class MNIST(Dataset):
    """The MNIST handwritten digits, read from local IDX files (never downloaded).

    Files are looked up in `root` and in `root/MNIST/raw` (torchvision's layout), each as
    `train-images-idx3-ubyte`, `train-labels-idx1-ubyte`, `t10k-images-idx3-ubyte` and
    `t10k-labels-idx1-ubyte`, raw or with a `.gz` suffix.

    `data` is uint8 (N, 28, 28) and `targets` int64 (N,), as in torchvision. A sample is
    `(transform(data[i]), target_transform(int(targets[i])))`; without transform the image is
    float32 (1, 28, 28) in [0, 1]. Without transforms `arrays()` returns the whole split as
    float32 (N, 1, 28, 28) images and int64 labels (converted once, then cached), which
    DataLoader batches with one fancy-indexing op per batch.

    Args:
        root: the data directory (what examples call --data-dir).
        train: the 60k training split if True, else the 10k test split.
        transform: applied to each uint8 (28, 28) image, e.g. ToTensor() then Normalize.
        target_transform: applied to each int label.
        download: accepted for torchvision compatibility; disttrain never downloads.

    Example:
        >>> ds = MNIST("data/", train=False)  # doctest: +SKIP
        >>> x, y = ds[0]; x.shape, x.dtype, y  # doctest: +SKIP
        ((1, 28, 28), dtype('float32'), 7)
    """

    classes = ["0 - zero", "1 - one", "2 - two", "3 - three", "4 - four", "5 - five", "6 - six",
               "7 - seven", "8 - eight", "9 - nine"]

    def __init__(self, root: str | os.PathLike, train: bool = True,
                 transform: Callable | None = None, target_transform: Callable | None = None,
                 download: bool = False) -> None:
        self.root, self.train = Path(root), train
        self.transform, self.target_transform = transform, target_transform
        images_path, labels_path = (self._find(name, download) for name in _FILES[bool(train)])
        images, labels = read_idx(images_path), read_idx(labels_path)
        if images.ndim != 3 or images.dtype != np.uint8:
            raise ValueError(f"{type(self).__name__}: images file {images_path} should hold uint8 "
                             f"(N, H, W) images, got dtype {images.dtype} shape {images.shape}")
        if labels.ndim != 1:
            raise ValueError(f"{type(self).__name__}: labels file {labels_path} should hold a 1-d "
                             f"array of labels, got shape {labels.shape}")
        if len(images) != len(labels):
            raise ValueError(f"{type(self).__name__}: images file {images_path} has "
                             f"{len(images)} images but labels file {labels_path} has "
                             f"{len(labels)} labels")
        self.data, self.targets = images, labels.astype(np.int64)
        self._arrays: tuple | None = None

    def _find(self, name: str, download: bool) -> Path:
        dirs = [self.root, self.root / type(self).__name__ / "raw"]
        candidates = [d / (name + suffix) for d in dirs for suffix in ("", ".gz")]
        for path in candidates:
            if path.is_file():
                return path
        expected = ", ".join(f"{n}[.gz]" for pair in _FILES.values() for n in pair)
        hint = " disttrain never downloads (download=True is ignored);" if download else ""
        raise FileNotFoundError(
            f"{type(self).__name__}: {name} not found; looked for "
            f"{', '.join(str(p) for p in candidates)}.{hint} --data-dir (root) expects the IDX "
            f"files {expected} in it or in its {type(self).__name__}/raw/ subdirectory.")

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int):
        image, target = self.data[index], int(self.targets[index])
        if self.transform is not None:
            x = self.transform(image)
        else:
            x = image[None].astype(np.float32) / np.float32(255)
        if self.target_transform is not None:
            target = self.target_transform(target)
        return x, target

    def arrays(self) -> tuple[np.ndarray, np.ndarray] | None:
        """(float32 (N, 1, 28, 28) images in [0, 1], int64 labels), or None with transforms."""
        if self.transform is not None or self.target_transform is not None:
            return None
        if self._arrays is None:
            images = self.data[:, None].astype(np.float32) / np.float32(255)
            self._arrays = (images, self.targets)
        return self._arrays
