"""Pipeline schedules as plain data (GPipe, 1F1B), a simulator of blocking send/recv that proves
they complete, and a grid printer. Pure: imports neither mpi4py nor the pipeline runtime.

A schedule is `list[list[Action]]`, indexed by stage. The runtime executes each stage's list
literally, in order, with BLOCKING point-to-point calls that may be rendezvous (a send returns
only once the matching receive is posted). `simulate` models exactly that, so a schedule it
accepts cannot deadlock at run time, whatever MPI buffers.

Communication actions name the stage that executes them; the peer is implied by the kind:
SEND_F goes to stage + 1, RECV_F comes from stage - 1, SEND_B goes to stage - 1, RECV_B comes
from stage + 1. Each message is identified by (direction, microbatch).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from disttrain.checks import check_int

COMPUTE_KINDS = ("F", "B")
COMM_KINDS = ("SEND_F", "RECV_F", "SEND_B", "RECV_B")
KINDS = COMPUTE_KINDS + COMM_KINDS
# kind -> (offset of the peer stage, the kind the peer must execute to match it)
_PEER = {"SEND_F": (1, "RECV_F"), "RECV_F": (-1, "SEND_F"),
         "SEND_B": (-1, "RECV_B"), "RECV_B": (1, "SEND_B")}


class ScheduleError(ValueError):
    """A schedule that is malformed, breaks causality, or deadlocks under blocking send/recv.
    The message includes the action grid (`format_schedule(..., include_comm=True)`)."""


@dataclass(frozen=True)
class Action:
    """One step of one stage: compute ("F", "B") or a blocking message ("SEND_F", "RECV_F",
    "SEND_B", "RECV_B") of activations (F) or gradients (B) of micro-batch `microbatch`.

    Prints as stage, kind, micro-batch: `str(Action("F", 1, 0)) == "1F0"`,
    `str(Action("RECV_B", 1, 2)) == "1RECV_B2"`.
    """

    kind: str
    stage: int
    microbatch: int

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"Action: kind must be one of {KINDS}, got {self.kind!r}")

    def __str__(self) -> str:
        return f"{self.stage}{self.kind}{self.microbatch}"

    @property
    def is_compute(self) -> bool:
        return self.kind in COMPUTE_KINDS

    @property
    def peer(self) -> int | None:
        """The stage at the other end of a send/recv (None for compute)."""
        return None if self.is_compute else self.stage + _PEER[self.kind][0]

    def matching(self) -> Action | None:
        """The action the peer stage executes to complete this send/recv (None for compute)."""
        return None if self.is_compute else Action(_PEER[self.kind][1], self.peer, self.microbatch)


Schedule = list[list[Action]]


# ---------------------------------------------------------------- builders
def _check_sizes(where: str, num_stages, n_microbatches) -> tuple[int, int]:
    """(num_stages, n_microbatches) as Python ints, after checking both are >= 1."""
    return (check_int(where, "num_stages", num_stages, minimum=1),
            check_int(where, "n_microbatches", n_microbatches, minimum=1))


def _actions(stage: int, num_stages: int, steps) -> list[Action]:
    """Actions from (kind, microbatch) steps, dropping the messages to a stage that does not
    exist (nothing is received before stage 0 or sent past the last stage)."""
    first, last = stage == 0, stage == num_stages - 1
    absent = ({"RECV_F", "SEND_B"} if first else set()) | ({"SEND_F", "RECV_B"} if last else set())
    return [Action(kind, stage, m) for kind, m in steps if kind not in absent]


def _forward(m: int):
    return [("RECV_F", m), ("F", m), ("SEND_F", m)]


def _backward(m: int):
    return [("RECV_B", m), ("B", m), ("SEND_B", m)]


def gpipe(num_stages: int, n_microbatches: int) -> Schedule:
    """GPipe: every stage runs all forwards, then all backwards, micro-batches in order.

    Each F(m) is preceded by RECV_F(m) and followed by SEND_F(m); each B(m) by RECV_B(m) and
    SEND_B(m). Backwards run in increasing micro-batch order on every stage, so both ends of each
    link see the same message order (F0..F(M-1), B0..B(M-1)) and nothing can deadlock. Every
    stage keeps all M micro-batches' activations alive. Bubble: (K-1)/(M+K-1).

    - Paper: https://arxiv.org/abs/1811.06965

    Args:
        num_stages: K >= 1.
        n_microbatches: M >= 1.

    Returns:
        One list of actions per stage.

    Example:
        >>> [str(a) for a in gpipe(2, 2)[0]]
        ['0F0', '0SEND_F0', '0F1', '0SEND_F1', '0RECV_B0', '0B0', '0RECV_B1', '0B1']
    """
    num_stages, n_microbatches = _check_sizes("gpipe", num_stages, n_microbatches)
    microbatches = range(n_microbatches)
    return [_actions(stage, num_stages, [s for m in microbatches for s in _forward(m)]
                     + [s for m in microbatches for s in _backward(m)])
            for stage in range(num_stages)]


def one_f_one_b(num_stages: int, n_microbatches: int) -> Schedule:
    """1F1B (PipeDream-Flush): warm-up forwards, then one forward / one backward, then cool-down.

    Stage s runs w = min(K - s - 1, M) warm-up forwards, then M - w steady pairs F(w + i), B(i),
    then the remaining w backwards; so it holds at most min(K - s, M) micro-batches' activations.
    Any K >= 1 and M >= 1 work, including M < K (the steady phase is then empty on the early
    stages). Bubble: (K-1)/(M+K-1), as GPipe, with far less activation memory.

    NOTE: in a steady pair the gradient RECV_B(i) is received BEFORE the activation SEND_F(w + i)
    is sent, because stage s + 1 sends B(i) before it receives F(w + i) (its warm-up is one
    shorter). Both ends of every link then see the same message order, so blocking (rendezvous)
    send/recv cannot deadlock; the naive order (SEND_F right after F) deadlocks at once.
    A steady pair on stage s is: RECV_F(w+i), F(w+i), RECV_B(i), SEND_F(w+i), B(i), SEND_B(i).

    - Paper: https://arxiv.org/abs/2006.09503 (PipeDream-2BW/Flush); Megatron-LM's schedule.

    Args:
        num_stages: K >= 1.
        n_microbatches: M >= 1.

    Returns:
        One list of actions per stage.

    Example:
        >>> [str(a) for a in one_f_one_b(2, 3)[0] if a.is_compute]
        ['0F0', '0F1', '0B0', '0F2', '0B1', '0B2']
    """
    num_stages, n_microbatches = _check_sizes("one_f_one_b", num_stages, n_microbatches)
    schedule = []
    for stage in range(num_stages):
        warmup = min(num_stages - stage - 1, n_microbatches)
        steps = [s for m in range(warmup) for s in _forward(m)]
        for i in range(n_microbatches - warmup):
            m = warmup + i
            steps += [("RECV_F", m), ("F", m), ("RECV_B", i), ("SEND_F", m), ("B", i),
                      ("SEND_B", i)]
        steps += [s for i in range(n_microbatches - warmup, n_microbatches)
                  for s in _backward(i)]
        schedule.append(_actions(stage, num_stages, steps))
    return schedule


SCHEDULES = {"gpipe": gpipe, "1f1b": one_f_one_b}


def make_schedule(name: str, num_stages: int, n_microbatches: int) -> Schedule:
    """The schedule called `name` ("gpipe" or "1f1b", any case) for K stages and M micro-batches.

    Example:
        >>> len(make_schedule("1f1b", 4, 8))
        4
    """
    key = name.lower() if isinstance(name, str) else name
    if key not in SCHEDULES:
        raise ValueError(f"make_schedule: unknown schedule {name!r}; expected one of "
                         f"{sorted(SCHEDULES)}")
    return SCHEDULES[key](num_stages, n_microbatches)


def theoretical_bubble(num_stages: int, n_microbatches: int) -> float:
    """The idle fraction (K-1)/(M+K-1) of GPipe and 1F1B with balanced stages and free messages.

    Example:
        >>> theoretical_bubble(4, 12)
        0.2
    """
    num_stages, n_microbatches = _check_sizes("theoretical_bubble", num_stages, n_microbatches)
    return (num_stages - 1) / (n_microbatches + num_stages - 1)


# ---------------------------------------------------------------- printing
def format_schedule(schedule: Schedule, include_comm: bool = False, _marked=()) -> str:
    """The schedule as a grid: one row per stage, its actions in execution order left to right
    (as torch's `_format_pipeline_order`, transposed). Only compute actions unless
    `include_comm`. Step numbers count a stage's own actions, not time: use `simulate` for times.

    Example:
        >>> print(format_schedule(gpipe(2, 2)))
        step     0    1    2    3
        stage 0  0F0  0F1  0B0  0B1
        stage 1  1F0  1F1  1B0  1B1
    """
    rows = [[f"[{a}]" if (s, i) in _marked else str(a)
             for i, a in enumerate(actions) if include_comm or a.is_compute]
            for s, actions in enumerate(schedule)]
    labels = [f"stage {s}" for s in range(len(schedule))]
    steps = max((len(row) for row in rows), default=0)
    width = max([len(cell) for row in rows for cell in row] + [len(str(steps - 1))])
    label_width = max([len(label) for label in labels] + [4])
    lines = ["step".ljust(label_width) + "".join(f"  {i:<{width}}" for i in range(steps))]
    lines += [label.ljust(label_width) + "".join(f"  {cell:<{width}}" for cell in row)
              for label, row in zip(labels, rows)]
    return "\n".join(line.rstrip() for line in lines)


# ---------------------------------------------------------------- validation
def _fail(problems: list[str], schedule: Schedule, marked=()) -> None:
    grid = format_schedule(schedule, include_comm=True, _marked=marked)
    raise ScheduleError("\n".join(problems) + "\nschedule (one row per stage):\n" + grid)


def _validate(schedule: Schedule) -> int:
    """Raises ScheduleError listing every structural problem; returns n_microbatches."""
    if not isinstance(schedule, (list, tuple)) or not schedule:
        raise ScheduleError(f"a schedule is a non-empty list of per-stage lists, got {schedule!r}")
    num_stages = len(schedule)
    problems = [f"stage {s}: {a!r} is not an Action" for s, actions in enumerate(schedule)
                for a in actions if not isinstance(a, Action)]
    if problems:
        raise ScheduleError("\n".join(problems))
    everything = [a for actions in schedule for a in actions]
    n_microbatches = 1 + max((a.microbatch for a in everything), default=-1)
    for s, actions in enumerate(schedule):
        problems += [f"stage {s}'s list holds {a}, an action of stage {a.stage}"
                     for a in actions if a.stage != s]
        problems += [f"stage {s}: {a} has a negative micro-batch" for a in actions
                     if a.microbatch < 0]
        problems += [f"stage {s}: {a} talks to stage {a.peer}, which does not exist"
                     for a in actions if a.peer is not None and not 0 <= a.peer < num_stages]
        problems += _stage_problems(s, actions, num_stages, n_microbatches)
    if n_microbatches == 0:
        problems.append("the schedule holds no actions")
    if problems:
        _fail(problems, schedule)
    return n_microbatches


def _stage_problems(stage: int, actions: list[Action], num_stages: int, n_microbatches: int):
    """Each needed action exactly once, and in dependency order. Because every stage has each
    message to an existing neighbour exactly once, sends and receives pair up exactly."""
    wanted = _actions(stage, num_stages, [s for m in range(n_microbatches)
                                          for s in _forward(m) + _backward(m)])
    counts = Counter(actions)
    problems = [f"stage {stage}: {a} appears {counts[a]} times" for a in wanted if counts[a] > 1]
    problems += [f"stage {stage}: {a} is missing" for a in wanted if counts[a] == 0]
    position = {a: i for i, a in enumerate(actions)}
    for m in range(n_microbatches):
        # NOTE: each chain is an order the data forces: receive, compute, send; F before B
        chains = [("RECV_F", "F", "SEND_F"), ("RECV_B", "B", "SEND_B"), ("F", "B")]
        for chain in chains:
            present = [Action(k, stage, m) for k in chain if Action(k, stage, m) in position]
            problems += [f"stage {stage}: {a} must come after {b}"
                         for b, a in zip(present, present[1:]) if position[a] < position[b]]
    return problems


# ---------------------------------------------------------------- simulation
@dataclass
class SimulationResult:
    """What `simulate` measured. Times are in the units of the costs.

    Attributes:
        makespan: when the last stage finishes.
        busy_time: per stage, time spent computing.
        wait_time: per stage, time blocked in send/recv beyond `comm_cost` per message.
        bubble_fraction: 1 - sum(busy_time) / (num_stages * makespan).
        peak_live_activations: per stage, the most micro-batches with F done and B not yet.
        timeline: per stage, (action, start, end) in execution order; a message starts when
            its stage reaches it and ends when both ends have reached it, plus `comm_cost`.
    """

    num_stages: int
    n_microbatches: int
    makespan: float
    busy_time: list[float]
    wait_time: list[float]
    bubble_fraction: float
    peak_live_activations: list[int]
    timeline: list[list[tuple[Action, float, float]]]


def _per_stage(cost, num_stages: int, name: str) -> list[float]:
    costs = [float(c) for c in cost] if hasattr(cost, "__len__") else [float(cost)] * num_stages
    if len(costs) != num_stages or any(c < 0 for c in costs):
        raise ValueError(f"simulate: {name} must be >= 0, one number or one per stage "
                         f"({num_stages}), got {cost!r}")
    return costs


def simulate(schedule: Schedule, f_cost=1.0, b_cost=2.0, comm_cost: float = 0.0
             ) -> SimulationResult:
    """Runs a schedule with blocking rendezvous send/recv; proves it completes and is causal.

    A compute action takes its cost. A send and its matching receive (adjacent stages, same
    direction and micro-batch) complete together, `comm_cost` after the later of the two stages
    reaches it. Raises ScheduleError, with the action grid, if the schedule is malformed (an F or
    B missing or repeated, a message without its match, a receive after the compute needing it,
    B before F) or deadlocks (the stuck actions are named and bracketed in the grid).

    Args:
        schedule: one list of actions per stage, as `gpipe` / `one_f_one_b` return.
        f_cost, b_cost: time of one forward / backward; a number, or a list with one per stage.
        comm_cost: time of one message once both ends are ready.

    Example:
        >>> result = simulate(gpipe(4, 12), f_cost=1.0, b_cost=1.0)
        >>> result.makespan, round(result.bubble_fraction, 6), result.peak_live_activations
        (30.0, 0.2, [12, 12, 12, 12])
    """
    n_microbatches = _validate(schedule)
    num_stages = len(schedule)
    costs = {"F": _per_stage(f_cost, num_stages, "f_cost"),
             "B": _per_stage(b_cost, num_stages, "b_cost")}
    if comm_cost < 0:
        raise ValueError(f"simulate: comm_cost must be >= 0, got {comm_cost}")
    timeline = _run(schedule, costs, float(comm_cost))
    _check_causality(schedule, timeline)
    makespan = max((end for events in timeline for _, _, end in events), default=0.0)
    busy = [sum(end - start for a, start, end in events if a.is_compute) for events in timeline]
    wait = [sum(end - start - comm_cost for a, start, end in events if not a.is_compute)
            for events in timeline]
    bubble = 1.0 - sum(busy) / (num_stages * makespan) if makespan > 0 else 0.0
    return SimulationResult(num_stages, n_microbatches, makespan, busy, wait, bubble,
                            [_peak_live(actions) for actions in schedule], timeline)


def _run(schedule: Schedule, costs: dict, comm_cost: float):
    """Advances every stage as far as it can until all finish or none can move (deadlock).
    The result does not depend on the order stages are visited: a blocked action only waits."""
    num_stages = len(schedule)
    pc, clock = [0] * num_stages, [0.0] * num_stages
    timeline: list[list] = [[] for _ in range(num_stages)]

    def head(s):
        return schedule[s][pc[s]] if pc[s] < len(schedule[s]) else None

    moved = True
    while moved:
        moved = False
        for s in range(num_stages):
            while (action := head(s)) is not None:
                if action.is_compute:
                    end = clock[s] + costs[action.kind][s]
                    timeline[s].append((action, clock[s], end))
                    clock[s], pc[s] = end, pc[s] + 1
                elif head(action.peer) == action.matching():
                    p = action.peer
                    end = max(clock[s], clock[p]) + comm_cost
                    timeline[s].append((action, clock[s], end))
                    timeline[p].append((head(p), clock[p], end))
                    clock[s], clock[p], pc[s], pc[p] = end, end, pc[s] + 1, pc[p] + 1
                else:
                    break
                moved = True
    stuck = [s for s in range(num_stages) if head(s) is not None]
    if stuck:
        problems = ["schedule deadlocks under blocking send/recv; stuck actions:"]
        for s in stuck:
            action, peer_head = head(s), head(head(s).peer)
            where = "has finished" if peer_head is None else f"is at {peer_head}"
            problems.append(f"  stage {s} waits in {action} for {action.matching()}, but stage "
                            f"{action.peer} {where}")
        _fail(problems, schedule, marked={(s, pc[s]) for s in stuck})
    return timeline


def _check_causality(schedule: Schedule, timeline) -> None:
    """F(m) on stage s starts after F(m) on stage s - 1 ended; B(m) after B(m) on stage s + 1.
    Implied by the validated order and the paired messages; checked on the times as a proof."""
    end = {a: e for events in timeline for a, _, e in events}
    start = {a: b for events in timeline for a, b, _ in events}
    problems = []
    for a in start:
        upstream = {"F": a.stage - 1, "B": a.stage + 1}.get(a.kind)
        if upstream is not None and 0 <= upstream < len(schedule):
            before = Action(a.kind, upstream, a.microbatch)
            if start[a] < end[before]:
                problems.append(f"{a} starts at {start[a]} before {before} ends at {end[before]}")
    if problems:
        _fail(problems, schedule)


def _peak_live(actions: list[Action]) -> int:
    live = peak = 0
    for a in actions:
        live += {"F": 1, "B": -1}.get(a.kind, 0)
        peak = max(peak, live)
    return peak
