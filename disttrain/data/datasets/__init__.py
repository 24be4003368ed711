"""Datasets: MNIST from local IDX files and the embedded offline Digits, plus the IDX reader."""

from disttrain.data.datasets.digits import Digits
from disttrain.data.datasets.idx import read_idx, write_idx
from disttrain.data.datasets.mnist import MNIST

__all__ = ["MNIST", "Digits", "read_idx", "write_idx"]
