"""Rank and world size from the launcher's environment (Open MPI, MPICH/Hydra, PMIx, Slurm),
readable before MPI starts. Pure functions of an environ mapping; no mpi4py."""

from __future__ import annotations

import os

# (rank, size, local_rank, local_size) variables, in order of preference
_LAUNCHERS = (
    ("OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK",
     "OMPI_COMM_WORLD_LOCAL_SIZE"),
    ("PMIX_RANK", "PMIX_SIZE", "PMIX_LOCAL_RANK", "PMIX_LOCAL_SIZE"),
    ("PMI_RANK", "PMI_SIZE", "MPI_LOCALRANKID", "MPI_LOCALNRANKS"),
    ("SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID", "SLURM_NTASKS_PER_NODE"),
)


def rank_env(environ=None) -> tuple[int, int, int, int]:
    """(rank, size, local_rank, local_size) as the launcher exported them; (0, 1, 0, 1) when
    the process was not started by an MPI launcher or Slurm.

    Example:
        >>> rank_env({"PMI_RANK": "3", "PMI_SIZE": "4"})
        (3, 4, 3, 4)
    """
    environ = os.environ if environ is None else environ
    for rank_var, size_var, local_rank_var, local_size_var in _LAUNCHERS:
        if rank_var in environ and size_var in environ:
            rank, size = int(environ[rank_var]), int(environ[size_var])
            local_rank = int(environ.get(local_rank_var, rank))
            # NOTE: SLURM_NTASKS_PER_NODE may read "2(x3)"; the count is before the "("
            local_size = int(str(environ.get(local_size_var, size)).split("(")[0].split(",")[0])
            if not 0 <= rank < size:
                raise ValueError(f"{rank_var}={rank} is outside [0, {size_var}={size})")
            return rank, size, local_rank, local_size
    return 0, 1, 0, 1


def launched_with_mpi(environ=None) -> bool:
    """True when an MPI launcher (or srun) started more than one rank."""
    return rank_env(environ)[1] > 1
