"""torch.distributed.algorithms' module path, for ported scripts:
`from disttrain.distributed.algorithms.ddp_comm_hooks import default_hooks`."""

from disttrain.lazy import attach as _attach

__getattr__, __dir__, __all__ = _attach(__name__, ("ddp_comm_hooks",))
