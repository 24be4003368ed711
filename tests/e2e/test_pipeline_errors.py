"""A pipeline whose stages disagree on a micro-batch's shape ends the job with an error naming
the stage, the micro-batch, the expected and the received shape — never a hang."""

from __future__ import annotations

import sys

SCRIPT = '''
import disttrain as dt, disttrain.nn as nn
import disttrain.distributed as dist

comm = dist.init()
dt.manual_seed(0)
model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3))
pipe = dist.Pipeline(model, comm, n_microbatches=2)
# the bug being caught: the ranks were given batches of different sizes (12 and 10)
batch = 12 if comm.rank == 0 else 10
x, y = dt.randn(batch, 4), dt.randint(0, 3, (batch,))
pipe.step(x, y, nn.CrossEntropyLoss())
print("step finished", flush=True)
'''


def test_shape_mismatch_between_stages_names_stage_and_shapes(tmp_path, run_mpi_job):
    script = tmp_path / "mismatch.py"
    script.write_text(SCRIPT)
    returncode, output, elapsed = run_mpi_job(2, [sys.executable, str(script)], tmp_path)
    assert elapsed < 20, output
    assert returncode != 0, output
    assert ("Pipeline stage 1, micro-batch 0: expected an activation with batch size 5 from "
            "stage 0, received shape (6, 8)") in output, output
    assert "[disttrain] rank 1 (host " in output, output
    assert "step finished" not in output, output
