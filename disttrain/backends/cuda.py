"""`dt.backends.cuda`: torch.backends.cuda's build query and matmul flag.

`matmul.allow_tf32` is settable and type-checked for ported scripts but changes nothing here:
cupy's float32 GEMMs use cuBLAS's default (full float32) math unless CUPY_TF32=1 is set in the
environment before cupy loads.
"""

from __future__ import annotations

import types

from disttrain import backend


def is_built() -> bool:
    """True when cupy (disttrain's CUDA backend) imports."""
    return backend.cupy is not None


class _MatmulFlags(types.SimpleNamespace):
    def __setattr__(self, name: str, value) -> None:
        if name == "allow_tf32" and not isinstance(value, bool):
            raise TypeError(f"backends.cuda.matmul.allow_tf32 expects a bool, got "
                            f"{value.__class__.__name__} ({value!r})")
        super().__setattr__(name, value)


matmul = _MatmulFlags(allow_tf32=False)
