"""torch.nn.parallel's module path: `from disttrain.nn.parallel import DistributedDataParallel`.

NOTE: DistributedDataParallel lives in disttrain.distributed (it talks MPI), which core modules
must not import. This package names it in a lazy table instead (disttrain.lazy): nothing is
imported until a script asks for the name, and no numerical code of nn depends on it, so the
layering (core never imports distributed or mpi4py) still holds for everything nn computes.
"""

from disttrain.lazy import attach as _attach

__getattr__, __dir__, __all__ = _attach(
    __name__, attributes={"DistributedDataParallel": "disttrain.distributed.ddp"})
