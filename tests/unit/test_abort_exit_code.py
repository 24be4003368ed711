"""dist.init()'s abort hook ends the job with env.NO_RESTART_EXIT for an error that says a
restart would fail the same way (restartable = False), and with 1 for anything else."""

from __future__ import annotations

import disttrain.distributed as dist
from disttrain import env
from disttrain.distributed import comm


def test_exit_code_follows_the_errors_restartable_flag():
    class Flaky(RuntimeError):
        restartable = True

    assert comm._exit_code(ValueError("x")) == 1
    assert comm._exit_code(Flaky("x")) == 1
    assert comm._exit_code(dist.CheckpointRefusedError("x")) == env.NO_RESTART_EXIT == 78
    assert isinstance(dist.CheckpointRefusedError("x"), RuntimeError)
