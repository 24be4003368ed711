"""One job per checkpoint directory, end to end: a second job (2 ranks under mpirun) on a
directory a live job holds is refused on every rank, naming the holder, and ends instead of
hanging; once the holder is SIGKILLed, a job on the directory starts and resumes the holder's
checkpoint (a crash never blocks a restart).
"""

from __future__ import annotations

import signal
import subprocess
import sys

from disttrain import env

JOB = '''
import sys
import disttrain.distributed as dist
import disttrain.nn as nn

comm = dist.init()
ckpt = dist.CheckpointManager(sys.argv[1], comm)
step = ckpt.restore(model=nn.Linear(2, 2))
ckpt.save(step + 1, model=nn.Linear(2, 2))
print(f"rank {comm.rank} saved step {step + 1}", flush=True)
if sys.argv[2] == "hold":
    sys.stdin.read()
'''


def test_a_second_job_is_refused_until_the_holder_dies(tmp_path, run_mpi_job):
    script, folder = tmp_path / "job.py", tmp_path / "ckpt"
    script.write_text(JOB)
    holder = subprocess.Popen([sys.executable, str(script), str(folder), "hold"], cwd=tmp_path,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        ready = holder.stdout.readline().strip()
        refused, refused_output, _ = run_mpi_job(2, [sys.executable, "-m", "mpi4py", str(script),
                                                     str(folder), "exit"], tmp_path)
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.communicate(timeout=30)
    # NOTE: one rank, as the holder had: its checkpoint is then this job's to resume
    started, output, _ = run_mpi_job(1, [sys.executable, "-m", "mpi4py", str(script),
                                         str(folder), "exit"], tmp_path)
    assert ready == "rank 0 saved step 1"
    assert refused == env.NO_RESTART_EXIT, refused_output  # a restart would fail the same way
    for rank in (0, 1):
        assert (f"CheckpointRefusedError: CheckpointManager: rank {rank}: {folder} is in use by "
                f"another job: pid {holder.pid} on host ") in refused_output, refused_output
    assert f"{script} {folder} hold" in refused_output  # the holder's command line
    assert started == 0, output
    assert "rank 0 saved step 2" in output, output
