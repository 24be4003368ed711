"""The dp x pp process grid: rank <-> (stage_index, dp_rank) tables with the data axis innermost,
round trips, errors, and ProcessGrid's sub-communicator splits on a fake communicator. No MPI."""

from __future__ import annotations

import pytest

from disttrain.distributed.grid import ProcessGrid, format_grid, grid_coords, grid_rank

# rank -> (stage_index, dp_rank); "dp x pp"
TABLES = {
    (2, 2): {0: (0, 0), 1: (0, 1), 2: (1, 0), 3: (1, 1)},
    (2, 4): {0: (0, 0), 1: (0, 1), 2: (1, 0), 3: (1, 1),
             4: (2, 0), 5: (2, 1), 6: (3, 0), 7: (3, 1)},
    (4, 2): {0: (0, 0), 1: (0, 1), 2: (0, 2), 3: (0, 3),
             4: (1, 0), 5: (1, 1), 6: (1, 2), 7: (1, 3)},
}  # fmt: skip


@pytest.mark.parametrize("dp, pp", list(TABLES), ids=lambda v: str(v))
def test_mapping_tables(dp, pp):
    table = TABLES[(dp, pp)]
    assert {rank: grid_coords(rank, dp, pp) for rank in range(dp * pp)} == table
    assert {grid_rank(s, d, dp, pp): (s, d) for s in range(pp) for d in range(dp)} == table


@pytest.mark.parametrize("dp", [1, 2, 3, 5])
@pytest.mark.parametrize("pp", [1, 2, 3, 4])
def test_round_trips(dp, pp):
    assert [grid_rank(*grid_coords(r, dp, pp), dp, pp) for r in range(dp * pp)] == \
        list(range(dp * pp))
    coords = [(s, d) for s in range(pp) for d in range(dp)]
    assert [grid_coords(grid_rank(s, d, dp, pp), dp, pp) for s, d in coords] == coords


@pytest.mark.parametrize("call, error, match", [
    (lambda: grid_coords(4, 2, 2), ValueError, r"grid_coords: rank must be in \[0, 4\) for "
                                               r"dp=2 x pp=2, got 4"),
    (lambda: grid_coords(-1, 2, 2), ValueError, r"got -1"),
    (lambda: grid_coords(0, 0, 2), ValueError, r"grid_coords: dp must be >= 1, got 0"),
    (lambda: grid_coords(0, 2, "2"), TypeError, r"grid_coords: pp must be an int, got str"),
    (lambda: grid_rank(2, 0, 2, 2), ValueError, r"grid_rank: stage_index must be in \[0, 2\) "
                                                r"for dp=2 x pp=2, got 2"),
    (lambda: grid_rank(0, 3, 3, 1), ValueError, r"grid_rank: dp_rank must be in \[0, 3\)"),
    (lambda: grid_rank(0, 0, 1, -2), ValueError, r"grid_rank: pp must be >= 1, got -2"),
])  # fmt: skip
def test_mapping_errors(call, error, match):
    with pytest.raises(error, match=match):
        call()


# ---------------------------------------------------------------- ProcessGrid, fake comm
class FakeComm:
    """What ProcessGrid uses of a Communicator; `split` records its arguments."""

    def __init__(self, rank: int, size: int):
        self.rank, self.size, self.splits = rank, size, []

    def split(self, color: int, key: int):
        self.splits.append((color, key))
        return ("sub", color, key)


def make_grids(dp: int, pp: int) -> list[ProcessGrid]:
    """One ProcessGrid per rank of a dp * pp world, as every rank would build it."""
    return [ProcessGrid(dp=dp, pp=pp, comm=FakeComm(r, dp * pp)) for r in range(dp * pp)]


def groups(grids, which: int) -> dict:
    """color -> the world ranks of that split, ordered by key (as MPI_Comm_split orders them)."""
    found: dict = {}
    for g in grids:
        color, key = g.comm.splits[which]
        found.setdefault(color, []).append((key, g.rank))
    return {color: [rank for _, rank in sorted(members)] for color, members in found.items()}


@pytest.mark.parametrize("dp, pp", list(TABLES), ids=lambda v: str(v))
def test_process_grid_coordinates_and_neighbours(dp, pp):
    for g in make_grids(dp, pp):
        assert (g.stage_index, g.dp_rank) == TABLES[(dp, pp)][g.rank]
        assert (g.dp, g.pp, g.num_stages) == (dp, pp, pp)
        assert g.is_first_stage == (g.stage_index == 0)
        assert g.is_last_stage == (g.stage_index == pp - 1)
        assert g.prev_rank == (None if g.is_first_stage else g.rank - dp)
        assert g.next_rank == (None if g.is_last_stage else g.rank + dp)
        assert all(g.coords(r) == TABLES[(dp, pp)][r] for r in range(dp * pp))
        assert all(g.rank_of(*g.coords(r)) == r for r in range(dp * pp))


@pytest.mark.parametrize("dp, pp", list(TABLES), ids=lambda v: str(v))
def test_process_grid_sub_communicators(dp, pp):
    grids = make_grids(dp, pp)
    # dp_comm: the replicas of each stage, in dp_rank order (its rank is dp_rank)
    assert groups(grids, 0) == {s: [s * dp + d for d in range(dp)] for s in range(pp)}
    # pp_comm: each replica's pipeline in stage order, so its rank IS the stage_index
    assert groups(grids, 1) == {d: [s * dp + d for s in range(pp)] for d in range(dp)}
    for g in grids:
        assert g.dp_comm == ("sub", g.stage_index, g.dp_rank)
        assert g.pp_comm == ("sub", g.dp_rank, g.stage_index)


def test_process_grid_size_mismatch_raises_on_every_rank_before_splitting():
    for rank in range(6):
        comm = FakeComm(rank, 6)
        with pytest.raises(ValueError, match=r"^ProcessGrid: dp \* pp = 4 must equal the world "
                                             r"size 6"):
            ProcessGrid(dp=2, pp=2, comm=comm)
        assert comm.splits == []
    with pytest.raises(ValueError, match=r"ProcessGrid: pp must be >= 1, got 0"):
        ProcessGrid(dp=2, pp=0, comm=FakeComm(0, 2))


def test_describe_and_repr():
    g = ProcessGrid(dp=2, pp=4, comm=FakeComm(5, 8))
    assert repr(g) == "ProcessGrid(dp=2, pp=4, rank=5, stage_index=2, dp_rank=1)"
    assert g.describe() == (
        "ProcessGrid(dp=2, pp=4, rank=5, stage_index=2, dp_rank=1)\n"
        "         dp_rank 0  dp_rank 1\n"
        "stage 0  0          1\n"
        "stage 1  2          3\n"
        "stage 2  4          5*\n"
        "stage 3  6          7")
    assert format_grid(dp=3, pp=1) == (
        "         dp_rank 0  dp_rank 1  dp_rank 2\n"
        "stage 0  0          1          2")
