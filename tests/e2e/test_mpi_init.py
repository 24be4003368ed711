"""MPI starts in dist.init() (never at import) and is finalized at exit: a 2-rank job that
imports every part of disttrain, then initializes and communicates, exits 0 without Open MPI's
"exited improperly" report, run as `python -m mpi4py script.py` and as plain `python
script.py`; and a single process without mpirun (MPI's singleton mode) does the same."""

from __future__ import annotations

import subprocess
import sys

import pytest

SCRIPT = '''
import sys
runner_loaded_mpi = "mpi4py.MPI" in sys.modules  # python -m mpi4py loads (and starts) it
import numpy
import disttrain, disttrain.distributed as dist, disttrain.launch, disttrain.nn
from disttrain.distributed import checkpoint, comm as comm_module, data_parallel, pipeline

assert ("mpi4py.MPI" in sys.modules) == runner_loaded_mpi, "importing disttrain loaded MPI"
comm = dist.init()
from mpi4py import MPI
assert MPI.Is_initialized() and MPI.Query_thread() == MPI.THREAD_MULTIPLE
total = comm.allreduce_(numpy.ones(3))
assert total.tolist() == [comm.size] * 3, total
print(f"rank {comm.rank} of {comm.size} done", flush=True)
'''


@pytest.mark.parametrize("runner", [["-m", "mpi4py"], []], ids=["mpi4py", "plain"])
def test_a_two_rank_job_exits_cleanly(tmp_path, run_mpi_job, runner):
    script = tmp_path / "init_and_exit.py"
    script.write_text(SCRIPT)
    returncode, output, _ = run_mpi_job(2, [sys.executable, *runner, str(script)], tmp_path)
    assert returncode == 0, output
    assert "rank 0 of 2 done" in output and "rank 1 of 2 done" in output, output
    assert "improperly" not in output and "finalize" not in output.lower(), output


def test_a_single_process_without_mpirun(tmp_path, mpirun):
    script = tmp_path / "init_and_exit.py"
    script.write_text(SCRIPT)
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          cwd=tmp_path, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "rank 0 of 1 done" in done.stdout
