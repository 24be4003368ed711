"""Pipeline schedules (GPipe, 1F1B) as data: the simulator proofs (every schedule for 2..8 stages
and 1..4x stages micro-batches completes under blocking rendezvous send/recv), the invariants
checked here independently of the simulator, bubbles, memory, printing and errors. No MPI."""

from __future__ import annotations

import pytest

from disttrain.distributed.pipeline.schedule import (
    Action,
    ScheduleError,
    format_schedule,
    gpipe,
    make_schedule,
    one_f_one_b,
    simulate,
    theoretical_bubble,
)

SIZES = [(k, m) for k in range(2, 9) for m in range(1, 4 * k + 1)]


def check_invariants(schedule, num_stages, n_microbatches):
    """Every rule a runtime relies on, written out again without the simulator's helpers."""
    assert len(schedule) == num_stages
    for s, actions in enumerate(schedule):
        assert all(a.stage == s for a in actions)
        at = {a: i for i, a in enumerate(actions)}
        assert len(at) == len(actions), f"stage {s} repeats an action"
        first, last = s == 0, s == num_stages - 1
        for m in range(n_microbatches):
            f, b = at[Action("F", s, m)], at[Action("B", s, m)]
            assert f < b
            assert (Action("RECV_F", s, m) in at) == (not first)
            assert (Action("SEND_B", s, m) in at) == (not first)
            assert (Action("SEND_F", s, m) in at) == (not last)
            assert (Action("RECV_B", s, m) in at) == (not last)
            if not first:
                assert at[Action("RECV_F", s, m)] < f and b < at[Action("SEND_B", s, m)]
            if not last:
                assert f < at[Action("SEND_F", s, m)] and at[Action("RECV_B", s, m)] < b
        assert len(actions) == n_microbatches * (2 + 2 * (not first) + 2 * (not last))
    # sends and receives pair up exactly, and each link sees one message order at both ends
    for s in range(num_stages - 1):
        down = [(a.kind[-1], a.microbatch) for a in schedule[s] if a.kind in ("SEND_F", "RECV_B")]
        up = [(a.kind[-1], a.microbatch) for a in schedule[s + 1]
              if a.kind in ("RECV_F", "SEND_B")]
        assert down == up, f"link {s}-{s + 1}: {down} vs {up}"


def check_causality(result, num_stages):
    start = {a: t for events in result.timeline for a, t, _ in events}
    end = {a: t for events in result.timeline for a, _, t in events}
    for a in start:
        if a.kind == "F" and a.stage > 0:
            assert start[a] >= end[Action("F", a.stage - 1, a.microbatch)]
        if a.kind == "B" and a.stage < num_stages - 1:
            assert start[a] >= end[Action("B", a.stage + 1, a.microbatch)]
        if a.kind == "B":
            assert start[a] >= end[Action("F", a.stage, a.microbatch)]


# ---------------------------------------------------------------- the simulator proofs
@pytest.mark.parametrize("name", ["gpipe", "1f1b"])
@pytest.mark.parametrize("num_stages", range(2, 9))
def test_schedule_completes_and_keeps_every_invariant(name, num_stages):
    for n_microbatches in range(1, 4 * num_stages + 1):
        schedule = make_schedule(name, num_stages, n_microbatches)
        check_invariants(schedule, num_stages, n_microbatches)
        result = simulate(schedule, f_cost=1.0, b_cost=2.0)
        check_causality(result, num_stages)
        assert result.num_stages == num_stages and result.n_microbatches == n_microbatches
        assert result.busy_time == [3.0 * n_microbatches] * num_stages
        expected_live = ([n_microbatches] * num_stages if name == "gpipe" else
                         [min(num_stages - s, n_microbatches) for s in range(num_stages)])
        assert result.peak_live_activations == expected_live


@pytest.mark.parametrize("name", ["gpipe", "1f1b"])
@pytest.mark.parametrize("f_cost, b_cost", [(1.0, 1.0), (1.0, 2.0), (2.0, 1.0)])
def test_simulated_bubble_equals_the_theory(name, f_cost, b_cost):
    # NOTE: exact (up to float rounding), not just close: with balanced stages and free messages
    # both schedules finish at (M + K - 1) * (f + b), whatever the ratio of f to b.
    for num_stages, n_microbatches in SIZES:
        result = simulate(make_schedule(name, num_stages, n_microbatches), f_cost, b_cost)
        assert result.makespan == pytest.approx((n_microbatches + num_stages - 1)
                                                * (f_cost + b_cost), abs=1e-9)
        assert result.bubble_fraction == pytest.approx(
            theoretical_bubble(num_stages, n_microbatches), abs=1e-12)


@pytest.mark.parametrize("name", ["gpipe", "1f1b"])
def test_one_stage(name):
    schedule = make_schedule(name, 1, 3)
    assert all(a.is_compute for a in schedule[0])
    result = simulate(schedule)
    assert result.makespan == 9.0 and result.bubble_fraction == 0.0
    assert result.peak_live_activations == ([3] if name == "gpipe" else [1])
    assert [str(a) for a in one_f_one_b(1, 2)[0]] == ["0F0", "0B0", "0F1", "0B1"]


def test_fewer_microbatches_than_stages():
    schedule = one_f_one_b(4, 2)
    compute = [[str(a) for a in actions if a.is_compute] for actions in schedule]
    assert compute == [["0F0", "0F1", "0B0", "0B1"], ["1F0", "1F1", "1B0", "1B1"],
                       ["2F0", "2F1", "2B0", "2B1"], ["3F0", "3B0", "3F1", "3B1"]]
    assert simulate(schedule).peak_live_activations == [2, 2, 2, 1]


def test_steady_state_receives_the_gradient_before_sending_the_activation():
    # stage 1 of 3 with 3 micro-batches: warm-up 1, then pairs F(1+i)/B(i), as documented
    assert [str(a) for a in one_f_one_b(3, 3)[1]] == [
        "1RECV_F0", "1F0", "1SEND_F0",
        "1RECV_F1", "1F1", "1RECV_B0", "1SEND_F1", "1B0", "1SEND_B0",
        "1RECV_F2", "1F2", "1RECV_B1", "1SEND_F2", "1B1", "1SEND_B1",
        "1RECV_B2", "1B2", "1SEND_B2"]


def test_communication_cost_and_per_stage_costs():
    free, costly = simulate(one_f_one_b(4, 8)), simulate(one_f_one_b(4, 8), comm_cost=0.5)
    assert costly.makespan > free.makespan and costly.bubble_fraction > free.bubble_fraction
    # a slow last stage sets the pace: the others wait for it
    slow = simulate(gpipe(3, 4), f_cost=[1, 1, 3], b_cost=[1, 1, 3])
    assert slow.busy_time == [8.0, 8.0, 24.0] and slow.wait_time[0] > 0
    assert slow.makespan == pytest.approx(2 + 24 + 2)
    with pytest.raises(ValueError, match=r"f_cost must be >= 0, one number or one per stage"):
        simulate(gpipe(3, 4), f_cost=[1, 1])


def test_theoretical_bubble():
    assert theoretical_bubble(1, 5) == 0.0
    assert theoretical_bubble(4, 12) == pytest.approx(0.2)
    assert theoretical_bubble(8, 1) == pytest.approx(7 / 8)


# ---------------------------------------------------------------- Action and names
def test_action_prints_and_knows_its_peer():
    assert str(Action("F", 1, 0)) == "1F0" and str(Action("RECV_B", 1, 2)) == "1RECV_B2"
    assert Action("SEND_F", 1, 3).matching() == Action("RECV_F", 2, 3)
    assert Action("RECV_F", 1, 3).matching() == Action("SEND_F", 0, 3)
    assert Action("SEND_B", 1, 3).matching() == Action("RECV_B", 0, 3)
    assert Action("RECV_B", 1, 3).matching() == Action("SEND_B", 2, 3)
    assert Action("B", 1, 3).peer is None and Action("B", 1, 3).matching() is None
    with pytest.raises(ValueError, match=r"kind must be one of .* got 'X'"):
        Action("X", 0, 0)


@pytest.mark.parametrize("args, error, match", [
    (("pipedream", 2, 2), ValueError, r"unknown schedule 'pipedream'; expected one of"),
    (("1f1b", 0, 2), ValueError, r"one_f_one_b: num_stages must be >= 1, got 0"),
    (("gpipe", 2, -1), ValueError, r"gpipe: n_microbatches must be >= 1, got -1"),
    (("gpipe", 2.0, 2), TypeError, r"gpipe: num_stages must be an int, got float"),
])  # fmt: skip
def test_make_schedule_errors(args, error, match):
    with pytest.raises(error, match=match):
        make_schedule(*args)


def test_make_schedule_names():
    assert make_schedule("GPipe", 2, 3) == gpipe(2, 3)
    assert make_schedule("1F1B", 2, 3) == one_f_one_b(2, 3)


# ---------------------------------------------------------------- printing
def test_format_schedule_2_stages_3_microbatches():
    assert format_schedule(one_f_one_b(2, 3)) == (
        "step     0    1    2    3    4    5\n"
        "stage 0  0F0  0F1  0B0  0F2  0B1  0B2\n"
        "stage 1  1F0  1B0  1F1  1B1  1F2  1B2")
    assert format_schedule(gpipe(2, 3)) == (
        "step     0    1    2    3    4    5\n"
        "stage 0  0F0  0F1  0F2  0B0  0B1  0B2\n"
        "stage 1  1F0  1F1  1F2  1B0  1B1  1B2")


def test_format_schedule_with_communication():
    assert format_schedule(gpipe(2, 1), include_comm=True) == (
        "step     0         1         2         3\n"
        "stage 0  0F0       0SEND_F0  0RECV_B0  0B0\n"
        "stage 1  1RECV_F0  1F0       1B0       1SEND_B0")


# ---------------------------------------------------------------- broken schedules
def swapped(schedule, stage, first, second):
    broken = [list(actions) for actions in schedule]
    i, j = broken[stage].index(first), broken[stage].index(second)
    broken[stage][i], broken[stage][j] = broken[stage][j], broken[stage][i]
    return broken


def test_deadlock_is_reported_with_the_grid():
    # stage 0 sends F1 before taking B0, while stage 1 sends B0 before taking F1: a cycle
    broken = swapped(one_f_one_b(2, 2), 0, Action("RECV_B", 0, 0), Action("SEND_F", 0, 1))
    with pytest.raises(ScheduleError) as info:
        simulate(broken)
    message = str(info.value)
    assert "deadlocks under blocking send/recv" in message
    assert "stage 0 waits in 0SEND_F1 for 1RECV_F1, but stage 1 is at 1SEND_B0" in message
    assert "stage 1 waits in 1SEND_B0 for 0RECV_B0, but stage 0 is at 0SEND_F1" in message
    assert "stage 0  0F0" in message and "[0SEND_F1]" in message and "[1SEND_B0]" in message


def test_deadlock_when_the_peer_has_finished():
    broken = [list(actions) for actions in gpipe(2, 1)]
    broken[0] = [Action("F", 0, 0), Action("RECV_B", 0, 0), Action("SEND_F", 0, 0),
                 Action("B", 0, 0)]
    with pytest.raises(ScheduleError, match=r"stage 0 waits in 0RECV_B0 for 1SEND_B0"):
        simulate(broken)


@pytest.mark.parametrize("edit, match", [
    (lambda s: s[1].remove(Action("RECV_F", 1, 0)), r"stage 1: 1RECV_F0 is missing"),
    (lambda s: s[0].append(Action("F", 0, 1)), r"stage 0: 0F1 appears 2 times"),
    (lambda s: s[1].append(Action("SEND_F", 1, 0)), r"1SEND_F0 talks to stage 2, which does"),
    (lambda s: s[0].insert(0, Action("F", 1, 0)), r"stage 0's list holds 1F0, an action of"),
    (lambda s: s[0].append(Action("F", 0, -1)), r"0F-1 has a negative micro-batch"),
    (lambda s: s.__setitem__(1, [a for a in s[1] if a.kind != "F"] + [Action("F", 1, 0),
                                                                      Action("F", 1, 1)]),
     r"stage 1: 1B0 must come after 1F0"),
    (lambda s: s.__setitem__(0, s[0][1:2] + s[0][:1] + s[0][2:]),
     r"stage 0: 0SEND_F0 must come after 0F0"),
])  # fmt: skip
def test_malformed_schedules_are_rejected_with_the_grid(edit, match):
    schedule = [list(actions) for actions in gpipe(2, 2)]
    edit(schedule)
    with pytest.raises(ScheduleError, match=match) as info:
        simulate(schedule)
    assert "schedule (one row per stage):\nstep" in str(info.value)


@pytest.mark.parametrize("schedule", [[], "1F0", [["1F0"]]])
def test_not_a_schedule(schedule):
    with pytest.raises(ScheduleError):
        simulate(schedule)
