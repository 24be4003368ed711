"""Chaos: a 2-rank DataParallel job (tests/e2e/chaos_train.py) under `disttrain-launch
--max-restarts R --timeout T --checkpoint-dir D`, hit by one randomly chosen fault a round,
ends with parameters bit-identical to an uninterrupted run, or refuses with a clear message
where refusing is the right answer (the only checkpoint was damaged); and no process of the job
outlives it (a /proc scan for the round's own script path).

Faults: SIGKILL of a random rank at a random step, SIGKILL during a save, SIGSTOP of a rank
(the launcher's --timeout must catch it), a corrupted newest shard, a deleted newest manifest
(all injected by the script, see chaos_train.py), and SIGKILL of the launcher (injected here
once a random checkpoint is committed; the test then reruns the same command, as a user would).

Round i uses seed S+i (S: --chaos-seed, default random), its fault kind is KINDS[seed % 6] and
the rest comes from random.Random(seed). Replay a failed round with
    pytest tests/e2e/test_chaos.py --chaos-seed SEED --chaos-rounds 1
and run N rounds (tallied as JSON with --chaos-report PATH) with --chaos-rounds N.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy
import pytest
from test_mpi_suite import skip_reason

HERE = Path(__file__).resolve().parent
KINDS = ("kill_rank", "kill_in_save", "stop_rank", "kill_launcher", "corrupt_shard",
         "delete_manifest")
STEPS, EVERY, RESTARTS, TIMEOUT_S = 24, 3, 3, 5
SAVE_STEPS = list(range(EVERY, STEPS + 1, EVERY))
RUN_LIMIT_S = 120  # one launcher invocation; past it the round failed (hung)
# NOTE: kill_launcher rounds sleep LAUNCHER_KILL_STEP_SLEEP_S a step and kill the launcher at
# step 3 or 6, so a job not tied to its launcher would train >= 3.6 s more: it is still running
# after ORPHAN_GRACE_S (the ranks' launcher watcher checks every second) and gets caught
LAUNCHER_KILL_STEP_SLEEP_S = 0.2
ORPHAN_GRACE_S = 3.0


@dataclasses.dataclass(frozen=True)
class Plan:
    """One round: the fault and where it strikes."""

    seed: int
    kind: str
    rank: int
    step: int  # the step after which (kill/stop), or whose save during which, it fires
    delay_s: float

    @property
    def expected(self) -> str:
        """"refused" when the fault damaged the only checkpoint (starting over at step 0 would
        silently discard saved work); "bit-identical" for every other round."""
        damages = self.kind in ("corrupt_shard", "delete_manifest")
        return "refused" if damages and self.step == SAVE_STEPS[0] else "bit-identical"


def plan_round(seed: int) -> Plan:
    """The round of `seed` (a pure function: the same seed replays the same round)."""
    rng, kind = random.Random(seed), KINDS[seed % len(KINDS)]
    rank = rng.randrange(2)
    if kind in ("kill_rank", "stop_rank"):
        return Plan(seed, kind, rank, rng.randint(1, STEPS), 0.0)
    if kind == "kill_in_save":  # NOTE: a save of this job takes 5-10 ms on a 2-core machine
        return Plan(seed, kind, rank, rng.choice(SAVE_STEPS), rng.uniform(0.0, 0.008))
    if kind == "kill_launcher":
        return Plan(seed, kind, 0, rng.choice(SAVE_STEPS[:2]), rng.uniform(0.0, 0.1))
    return Plan(seed, kind, 0, rng.choice(SAVE_STEPS), 0.0)


def pytest_generate_tests(metafunc):
    if "chaos_seed" in metafunc.fixturenames:
        rounds = metafunc.config.getoption("--chaos-rounds", 6)
        base = metafunc.config.getoption("--chaos-seed", None)
        base = random.SystemRandom().randrange(10**6) if base is None else base
        seeds = [base + i for i in range(rounds)]
        metafunc.parametrize("chaos_seed", seeds,
                             ids=[f"seed={s}-{KINDS[s % len(KINDS)]}" for s in seeds])


# ------------------------------------------------------------------ processes
def job_processes(script: Path) -> dict[int, str]:
    """{pid: command line} of every live process whose command line names `script`."""
    needle, found = str(script).encode(), {}
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == os.getpid():
            continue
        try:
            with open(f"/proc/{name}/cmdline", "rb") as f:
                cmdline = f.read()
        except OSError:
            continue
        if needle in cmdline:  # NOTE: a zombie's cmdline is empty: it is dead already
            found[int(name)] = cmdline.replace(b"\0", b" ").decode(errors="replace").strip()
    return found


def wait_gone(script: Path, grace_s: float) -> dict[int, str]:
    """Processes naming `script` still alive after `grace_s` (then SIGKILLed, so a failed round
    leaves nothing behind); {} when the job ended in time."""
    deadline = time.monotonic() + grace_s
    while (left := job_processes(script)) and time.monotonic() < deadline:
        time.sleep(0.1)
    for pid in left:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return left


# ------------------------------------------------------------------ one round
@dataclasses.dataclass
class Round:
    folder: Path
    plan: Plan | None

    @property
    def script(self) -> Path:
        return self.folder / "chaos_train.py"

    @property
    def checkpoint_dir(self) -> Path:
        return self.folder / "ckpt"

    @property
    def out(self) -> Path:
        return self.folder / "final.safetensors"

    def command(self) -> list[str]:
        return [sys.executable, "-m", "disttrain.launch", "-n", "2", "--max-restarts",
                str(RESTARTS), "--timeout", str(TIMEOUT_S), "--checkpoint-dir",
                str(self.checkpoint_dir), str(self.script), str(STEPS), str(self.out)]

    def environ(self) -> dict[str, str]:
        environ = {**os.environ, "CHAOS_EVERY": str(EVERY),
                   "CHAOS_MARKER": str(self.folder / "fired")}
        plan = self.plan
        if plan is not None and plan.kind == "kill_launcher":
            environ["CHAOS_STEP_SLEEP_S"] = str(LAUNCHER_KILL_STEP_SLEEP_S)
        elif plan is not None:
            environ.update(CHAOS_FAULT=plan.kind, CHAOS_RANK=str(plan.rank),
                           CHAOS_STEP=str(plan.step), CHAOS_DELAY_S=str(plan.delay_s))
        return environ

    def launch(self, attempt: int) -> tuple[subprocess.Popen, Path]:
        log = self.folder / f"launcher-{attempt}.log"
        with open(log, "w") as f:
            proc = subprocess.Popen(self.command(), cwd=self.folder, env=self.environ(),
                                    stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.STDOUT,
                                    start_new_session=True)
        return proc, log


def _latest_step(folder: Path) -> int:
    try:
        return int((folder / "latest").read_text().strip().split("-")[1])
    except (OSError, IndexError, ValueError):
        return 0


def _finish(proc: subprocess.Popen, limit_s: float) -> int | None:
    """The launcher's exit code, or None when it hung (then it is killed)."""
    try:
        return proc.wait(timeout=limit_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return None


def kill_launcher_when_committed(run: Round, proc: subprocess.Popen) -> bool:
    """SIGKILLs the launcher `delay_s` after checkpoint `step` is committed; False when the job
    ended first (the fault never fired)."""
    deadline = time.monotonic() + RUN_LIMIT_S
    while _latest_step(run.checkpoint_dir) < run.plan.step:
        if proc.poll() is not None or time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    time.sleep(run.plan.delay_s)
    if proc.poll() is not None:
        return False
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    (run.folder / "fired").touch()
    return True


def run_round(run: Round) -> dict:
    """Runs the job (twice when the launcher is killed) and returns what happened: exit code,
    console text, leftover processes, whether the fault fired."""
    shutil.copy(HERE / "chaos_train.py", run.script)
    result = {"orphans": {}, "console": ""}
    proc, log = run.launch(0)
    if run.plan is not None and run.plan.kind == "kill_launcher":
        killed = kill_launcher_when_committed(run, proc)
        result["orphans"].update(wait_gone(run.script, ORPHAN_GRACE_S))
        result["console"] += log.read_text(errors="replace")
        if killed:  # NOTE: rerun the same command, as the README tells users to
            proc, log = run.launch(1)
    code = _finish(proc, RUN_LIMIT_S)
    result["orphans"].update(wait_gone(run.script, 5.0))
    result["console"] += log.read_text(errors="replace")
    result["code"] = code
    result["fired"] = run.plan is None or (run.folder / "fired").exists()
    return result


# ------------------------------------------------------------------ verdicts
def refusal_is_clear(console: str, run: Round) -> list[str]:
    """What a refusal's console output fails to say (empty when it is clear): that it refuses,
    which directory and checkpoint, and how to start fresh on purpose."""
    step_dir = f"step-{run.plan.step:08d}"
    wanted = {"says it refuses": "refusing" in console,
              f"names {run.checkpoint_dir}": str(run.checkpoint_dir) in console,
              f"names the damaged checkpoint ({step_dir} or step {run.plan.step})":
                  step_dir in console or f"step {run.plan.step}:" in console,
              "names the way out (--start-fresh)": "--start-fresh" in console}
    return [what for what, ok in wanted.items() if not ok]


def outcome(result: dict, run: Round, reference: dict) -> tuple[str, str]:
    """("bit-identical" | "refused" | "failed", why)."""
    if result["code"] is None:
        return "failed", f"the launcher hung (killed after {RUN_LIMIT_S} s)"
    if result["code"] == 0:
        if not run.out.exists():
            return "failed", "exit code 0 but no final parameters were written"
        import disttrain as dt

        final = dt.load(run.out)
        differ = sorted(k for k in reference if k not in final
                        or not numpy.array_equal(reference[k], final[k]))
        if differ or final.keys() != reference.keys():
            return "failed", f"final parameters differ from the uninterrupted run: {differ}"
        return "bit-identical", ""
    unclear = refusal_is_clear(result["console"], run) if run.plan else ["no fault planned"]
    if unclear:
        return "failed", (f"exit code {result['code']} without a clear refusal (it does not: "
                          + "; ".join(unclear) + ")")
    return "refused", ""


def _names_stalled_rank(console: str, rank: int) -> bool:
    """Whether the launcher's --timeout caught the SIGSTOPped rank and said which it was."""
    return any("watchdog timeout" in line and f"rank {rank} " in line
               for line in console.splitlines())


def check_round(run: Round, result: dict, reference: dict) -> tuple[str, list[str]]:
    """(outcome, problems): problems empty when the round went as it must."""
    got, why = outcome(result, run, reference)
    problems = [f"outcome {got} ({why})"] if got == "failed" else []
    if got != "failed" and got != run.plan.expected:
        problems.append(f"expected {run.plan.expected}, got {got}"
                        + (" (started over silently at step 0?)" if got == "bit-identical"
                           else ""))
    if not result["fired"]:
        problems.append("the fault never fired (the job ended first)")
    if result["orphans"]:
        problems.append("processes of the job outlived it: " + "; ".join(
            f"pid {pid}: {cmd}" for pid, cmd in sorted(result["orphans"].items())))
    if run.plan.kind == "stop_rank" and not _names_stalled_rank(result["console"], run.plan.rank):
        problems.append(f"no watchdog report naming the stopped rank {run.plan.rank}")
    if got == "bit-identical" and run.plan.kind in ("corrupt_shard", "delete_manifest"):
        step_dir = f"step-{run.plan.step:08d}"
        if step_dir not in result["console"]:
            problems.append(f"fell back from the damaged {step_dir} without a warning naming it")
    return got, problems


# ------------------------------------------------------------------ fixtures and the test
@pytest.fixture(scope="module")
def reference(tmp_path_factory, request) -> dict:
    """The parameters of the uninterrupted run (same launcher command, no fault)."""
    reason = skip_reason()
    if reason is not None:
        pytest.skip(reason)
    run = Round(tmp_path_factory.mktemp("uninterrupted"), None)
    result = run_round(run)
    assert result["code"] == 0 and not result["orphans"], result
    import disttrain as dt

    return dt.load(run.out)


@pytest.fixture(scope="module")
def tally(request):
    """Collects every round's outcome; writes --chaos-report PATH at the end of the module."""
    rounds, start = [], time.perf_counter()
    yield rounds
    path = request.config.getoption("--chaos-report", None)
    if path:
        Path(path).write_text(json.dumps(summarise(rounds, time.perf_counter() - start),
                                         indent=1))


def summarise(rounds: list[dict], wall_s: float) -> dict:
    by_kind = collections.defaultdict(collections.Counter)
    for r in rounds:
        by_kind[r["kind"]][r["outcome"]] += 1
    seconds = collections.defaultdict(list)
    for r in rounds:
        seconds[r["kind"]].append(r["s"])
    return {"rounds": len(rounds), "wall_s": round(wall_s, 1),
            "mean_s_by_kind": {k: round(sum(v) / len(v), 1) for k, v in sorted(seconds.items())},
            "outcomes": dict(collections.Counter(r["outcome"] for r in rounds)),
            "by_kind": {k: dict(v) for k, v in sorted(by_kind.items())},
            "failed": [r for r in rounds if r["problems"]],
            "command": " ".join(Round(Path("D"), None).command()[1:])}


def test_fault_round(chaos_seed, reference, tally, tmp_path, mpirun):
    run = Round(tmp_path, plan_round(chaos_seed))
    start = time.perf_counter()
    result = run_round(run)
    got, problems = check_round(run, result, reference)
    tally.append({"seed": chaos_seed, "kind": run.plan.kind,
                  "outcome": "failed" if problems else got,
                  "problems": problems, "s": round(time.perf_counter() - start, 1),
                  "plan": dataclasses.asdict(run.plan)})
    assert not problems, (
        f"chaos round seed {chaos_seed} ({run.plan}) went wrong:\n  " + "\n  ".join(problems)
        + f"\nreplay: pytest tests/e2e/test_chaos.py --chaos-seed {chaos_seed} "
          f"--chaos-rounds 1\nlauncher output (last 4000 characters):\n"
        + result["console"][-4000:])
