"""The launchers' rank variables (disttrain.env): rank and size from Open MPI, PMIx,
MPICH/Hydra and Slurm environments, and whether an MPI launcher started the process (pure)."""

import pytest

import disttrain.distributed as dist
from disttrain.env import RANK_VARIABLES, launched_with_mpi, rank_env, under_mpi_launcher


@pytest.mark.parametrize("environ, expected", [
    ({}, (0, 1, 0, 1)),
    ({"OMPI_COMM_WORLD_RANK": "2", "OMPI_COMM_WORLD_SIZE": "4",
      "OMPI_COMM_WORLD_LOCAL_RANK": "0", "OMPI_COMM_WORLD_LOCAL_SIZE": "2"}, (2, 4, 0, 2)),
    ({"PMIX_RANK": "1", "PMIX_SIZE": "3"}, (1, 3, 1, 3)),
    ({"PMI_RANK": "5", "PMI_SIZE": "8", "MPI_LOCALRANKID": "1", "MPI_LOCALNRANKS": "4"},
     (5, 8, 1, 4)),
    ({"SLURM_PROCID": "3", "SLURM_NTASKS": "6", "SLURM_LOCALID": "1",
      "SLURM_NTASKS_PER_NODE": "2(x3)"}, (3, 6, 1, 2)),
    ({"SLURM_PROCID": "0", "SLURM_NTASKS": "4", "SLURM_LOCALID": "0",
      "SLURM_NTASKS_PER_NODE": "3,1"}, (0, 4, 0, 3)),
    # Open MPI wins over a surrounding Slurm allocation
    ({"OMPI_COMM_WORLD_RANK": "1", "OMPI_COMM_WORLD_SIZE": "2", "SLURM_PROCID": "0",
      "SLURM_NTASKS": "1"}, (1, 2, 1, 2)),
])
def test_rank_env(environ, expected):
    assert rank_env(environ) == expected


def test_launched_with_mpi():
    assert not launched_with_mpi({})
    assert not launched_with_mpi({"PMI_RANK": "0", "PMI_SIZE": "1"})
    assert launched_with_mpi({"PMI_RANK": "0", "PMI_SIZE": "2"})


def test_rank_outside_size_is_an_error():
    with pytest.raises(ValueError, match=r"PMI_RANK=4 is outside \[0, PMI_SIZE=4\)"):
        rank_env({"PMI_RANK": "4", "PMI_SIZE": "4"})


@pytest.mark.parametrize("environ, expected", [
    ({}, False),
    ({"OMPI_COMM_WORLD_SIZE": "1", "OMPI_COMM_WORLD_RANK": "0"}, True),  # mpirun -n 1
    ({"PMIX_RANK": "0", "PMIX_SIZE": "1"}, True),
    ({"PMI_SIZE": "2", "PMI_RANK": "1"}, True),
    ({"SLURM_PROCID": "0", "SLURM_NTASKS": "4"}, False),  # an sbatch script, not a rank
])
def test_under_mpi_launcher(environ, expected):
    assert under_mpi_launcher(environ) is expected


def test_one_table_for_every_reader():
    """The launcher's rank wrapper, the heartbeat writer and dist all read RANK_VARIABLES."""
    assert [row.launcher for row in RANK_VARIABLES] == ["Open MPI", "PMIx", "MPICH/Hydra",
                                                        "Slurm"]
    assert dist.rank_env is rank_env and dist.launched_with_mpi is launched_with_mpi
