"""disttrain-launch: starts a script on N ranks with mpirun (Open MPI or MPICH/Hydra), writes
per-rank logs, reports a failed or stalled rank, kills the whole job and restarts it.

Stdlib only: it imports no other part of disttrain (running `python -m disttrain.launch`
still executes disttrain/__init__.py, which imports numpy; the `disttrain-launch` script does
too, as it imports disttrain.launch.__main__).
"""

from disttrain.launch.commands import build_command, detect_mpi
from disttrain.launch.reports import Failure, find_failure, stale_ranks
