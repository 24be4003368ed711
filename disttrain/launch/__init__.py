"""disttrain-launch: starts a script on N ranks with mpirun (Open MPI or MPICH/Hydra), writes
per-rank logs, reports a failed or stalled rank, kills the whole job and restarts it.

Stdlib only at run time: of disttrain it imports only disttrain.env (stdlib only itself), and
disttrain/__init__.py imports nothing eagerly, so `disttrain-launch` and
`python -m disttrain.launch` load neither numpy nor mpi4py (tests/unit/test_layering.py
checks both). Names here load on first use (disttrain.lazy).
"""

from disttrain.lazy import attach as _attach

__getattr__, __dir__, __all__ = _attach(__name__, ("commands", "process", "reports"), {
    "build_command": "disttrain.launch.commands", "detect_mpi": "disttrain.launch.commands",
    "Failure": "disttrain.launch.reports", "find_failure": "disttrain.launch.reports",
    "stale_ranks": "disttrain.launch.reports",
})
