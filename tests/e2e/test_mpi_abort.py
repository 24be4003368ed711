"""One rank's uncaught exception ends a 2-rank job within seconds, naming the rank, while the
other rank waits in a collective: with `python -m mpi4py script.py` (mpi4py aborts) and with
plain `python script.py` (disttrain's excepthook, installed by dist.init(), aborts)."""

from __future__ import annotations

import sys

import pytest

SCRIPT = '''
import numpy
import disttrain.distributed as dist

comm = dist.init()
if comm.rank == 1:
    raise RuntimeError("deliberate failure on the second rank")
comm.allreduce_(numpy.zeros(4))  # rank 0 waits here for a rank that is gone
print("rank 0 got past the collective", flush=True)
'''
DEADLINE_S = 20


@pytest.mark.parametrize("runner", [["-m", "mpi4py"], []], ids=["mpi4py", "plain"])
def test_exception_on_one_rank_aborts_the_job(tmp_path, run_mpi_job, runner):
    script = tmp_path / "fail_on_rank1.py"
    script.write_text(SCRIPT)
    returncode, output, elapsed = run_mpi_job(2, [sys.executable, *runner, str(script)],
                                              tmp_path)

    assert elapsed < DEADLINE_S, output
    assert returncode != 0, output
    assert "rank 1" in output, output
    assert "RuntimeError: deliberate failure on the second rank" in output, output
    assert "Traceback" in output, output
    assert "got past the collective" not in output, output
    if not runner:  # disttrain's own report: rank, host and pid, then the traceback
        assert "[disttrain] rank 1 (host " in output, output
