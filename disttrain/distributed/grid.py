"""The 2-D (pipeline x data) process grid: pure rank <-> coordinate maps, and ProcessGrid, which
adds the sub-communicators. Imports the comm layer (and so mpi4py) only inside ProcessGrid."""

from __future__ import annotations

from disttrain.checks import check_int


def _check_grid(where: str, dp, pp) -> tuple[int, int]:
    """(dp, pp) as Python ints, after checking both are >= 1."""
    return check_int(where, "dp", dp, minimum=1), check_int(where, "pp", pp, minimum=1)


def grid_coords(rank: int, dp: int, pp: int) -> tuple[int, int]:
    """(stage_index, dp_rank) of world rank `rank` in a dp x pp grid, data axis innermost:
    rank = stage_index * dp + dp_rank, so a stage's data-parallel replicas are neighbours.

    Example:
        >>> grid_coords(5, dp=2, pp=4)
        (2, 1)
    """
    dp, pp = _check_grid("grid_coords", dp, pp)
    if isinstance(rank, bool) or not isinstance(rank, int) or not 0 <= rank < dp * pp:
        raise ValueError(f"grid_coords: rank must be in [0, {dp * pp}) for dp={dp} x pp={pp}, "
                         f"got {rank!r}")
    return rank // dp, rank % dp


def grid_rank(stage_index: int, dp_rank: int, dp: int, pp: int) -> int:
    """The world rank at (stage_index, dp_rank) in a dp x pp grid: stage_index * dp + dp_rank.

    Example:
        >>> grid_rank(2, 1, dp=2, pp=4)
        5
    """
    dp, pp = _check_grid("grid_rank", dp, pp)
    for name, value, bound in (("stage_index", stage_index, pp), ("dp_rank", dp_rank, dp)):
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < bound:
            raise ValueError(f"grid_rank: {name} must be in [0, {bound}) for dp={dp} x pp={pp}, "
                             f"got {value!r}")
    return stage_index * dp + dp_rank


def format_grid(dp: int, pp: int, marked_rank: int | None = None) -> str:
    """The layout as a table: one row per stage, one column per dp_rank, world ranks in the
    cells (`marked_rank` starred).

    Example:
        >>> print(format_grid(dp=2, pp=2, marked_rank=3))
                 dp_rank 0  dp_rank 1
        stage 0  0          1
        stage 1  2          3*
    """
    dp, pp = _check_grid("format_grid", dp, pp)
    header = [f"dp_rank {d}" for d in range(dp)]
    width = max(len(h) for h in header)
    label_width = len(f"stage {pp - 1}")
    lines = [" " * label_width + "".join(f"  {h:<{width}}" for h in header)]
    for stage in range(pp):
        cells = [f"{r}*" if r == marked_rank else str(r)
                 for r in (grid_rank(stage, d, dp, pp) for d in range(dp))]
        lines.append(f"stage {stage}".ljust(label_width)
                     + "".join(f"  {c:<{width}}" for c in cells))
    return "\n".join(line.rstrip() for line in lines)


class ProcessGrid:
    """World ranks arranged as pp pipeline stages x dp data-parallel replicas (data innermost).

    Rank r is stage r // dp, replica r % dp. Every rank must construct it, with the same dp and
    pp, at the same point (the two `split`s are collective).

    Attributes:
        dp, pp: the grid's sizes (pp is also `num_stages`).
        rank, stage_index, dp_rank: this process's world rank and coordinates.
        comm: the world Communicator.
        dp_comm: the ranks holding this stage (size dp; its rank is dp_rank): for averaging the
            stage's gradients.
        pp_comm: this replica's pipeline (size pp; its rank IS the stage_index): for the
            point-to-point activations and gradients between stages.

    Args:
        dp: number of data-parallel replicas of each stage.
        pp: number of pipeline stages.
        comm: the world Communicator (default: `disttrain.distributed.init()`).

    Example (under `mpirun -n 4`, as printed on rank 1):
        >>> grid = ProcessGrid(dp=2, pp=2)  # doctest: +SKIP
        >>> grid.stage_index, grid.dp_rank, grid.prev_rank, grid.next_rank  # doctest: +SKIP
        (0, 1, None, 3)
    """

    def __init__(self, dp: int, pp: int, comm=None):
        dp, pp = _check_grid("ProcessGrid", dp, pp)
        if comm is None:
            from disttrain.distributed.comm import init

            comm = init()
        # NOTE: the same numbers on every rank, so every rank raises; none waits in split
        if dp * pp != comm.size:
            raise ValueError(f"ProcessGrid: dp * pp = {dp * pp} must equal the world size "
                             f"{comm.size} (dp={dp}, pp={pp})")
        self.dp, self.pp, self.num_stages = dp, pp, pp
        self.comm, self.rank = comm, comm.rank
        self.stage_index, self.dp_rank = grid_coords(comm.rank, dp, pp)
        self.dp_comm = comm.split(color=self.stage_index, key=self.dp_rank)
        self.pp_comm = comm.split(color=self.dp_rank, key=self.stage_index)

    def coords(self, rank: int) -> tuple[int, int]:
        """(stage_index, dp_rank) of any world rank."""
        return grid_coords(rank, self.dp, self.pp)

    def rank_of(self, stage_index: int, dp_rank: int) -> int:
        """The world rank at (stage_index, dp_rank)."""
        return grid_rank(stage_index, dp_rank, self.dp, self.pp)

    @property
    def is_first_stage(self) -> bool:
        return self.stage_index == 0

    @property
    def is_last_stage(self) -> bool:
        return self.stage_index == self.pp - 1

    @property
    def prev_rank(self) -> int | None:
        """World rank of the previous stage in this replica's pipeline (None on the first)."""
        return None if self.is_first_stage else self.rank_of(self.stage_index - 1, self.dp_rank)

    @property
    def next_rank(self) -> int | None:
        """World rank of the next stage in this replica's pipeline (None on the last)."""
        return None if self.is_last_stage else self.rank_of(self.stage_index + 1, self.dp_rank)

    def describe(self) -> str:
        """repr, then the layout table with this rank starred."""
        return f"{self!r}\n{format_grid(self.dp, self.pp, marked_rank=self.rank)}"

    def __repr__(self) -> str:
        return (f"ProcessGrid(dp={self.dp}, pp={self.pp}, rank={self.rank}, "
                f"stage_index={self.stage_index}, dp_rank={self.dp_rank})")
