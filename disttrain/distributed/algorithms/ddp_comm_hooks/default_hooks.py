"""torch's `ddp_comm_hooks.default_hooks` names for disttrain's built-in comm hooks, so
`ddp.register_comm_hook(None, default_hooks.fp16_compress_hook)` ports unchanged.

NOTE: they are disttrain's hooks (`hook(state, bucket)` exchanging a pre-divided buffer in
place and returning None, see disttrain.distributed.comm_hooks), not torch's Future-returning
ones; a hook written against torch's GradBucket API needs porting.
"""

from disttrain.distributed.comm_hooks import allreduce_hook, fp16_compress_hook

__all__ = ["allreduce_hook", "fp16_compress_hook"]
