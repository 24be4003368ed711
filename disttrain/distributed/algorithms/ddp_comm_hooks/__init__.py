"""torch.distributed.algorithms.ddp_comm_hooks' module path: `default_hooks` holds disttrain's
built-in comm hooks (disttrain.distributed.comm_hooks) under torch's names."""

from disttrain.lazy import attach as _attach

__getattr__, __dir__, __all__ = _attach(__name__, ("default_hooks",))
