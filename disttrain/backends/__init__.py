"""`dt.backends`: torch.backends' flags and availability queries (cudnn, mps, cuda), answered
for disttrain (numpy on CPUs, cupy on NVIDIA GPUs). Each submodule loads on first use."""

from disttrain.lazy import attach as _attach

__getattr__, __dir__, __all__ = _attach(__name__, ("cuda", "cudnn", "mps"))
