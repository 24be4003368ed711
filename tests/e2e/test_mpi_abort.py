"""One rank's uncaught exception ends a 2-rank job within seconds, naming the rank, while the
other rank waits in a collective: with `python -m mpi4py script.py` (mpi4py aborts) and with
plain `python script.py` (disttrain's excepthook, installed by dist.init(), aborts)."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
from test_mpi_suite import find_mpirun, kill_group, mpirun_prefix, skip_reason

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
def test_exception_on_one_rank_aborts_the_job(tmp_path, runner):
    reason = skip_reason()
    if reason is not None:
        pytest.skip(reason)
    script = tmp_path / "fail_on_rank1.py"
    script.write_text(SCRIPT)
    command = mpirun_prefix(find_mpirun(), 2) + [sys.executable, *runner, str(script)]
    start = time.perf_counter()
    proc = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        output, _ = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the job hung (killed after 60 s); output:\n{kill_group(proc)}")
    elapsed = time.perf_counter() - start

    assert elapsed < DEADLINE_S, output
    assert proc.returncode != 0, output
    assert "rank 1" in output, output
    assert "RuntimeError: deliberate failure on the second rank" in output, output
    assert "Traceback" in output, output
    assert "got past the collective" not in output, output
    if not runner:  # disttrain's own report: rank, host and pid, then the traceback
        assert "[disttrain] rank 1 (host " in output, output
