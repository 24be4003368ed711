"""Crash safety end to end: a rank SIGKILLed at a random step under `disttrain-launch
--max-restarts 2` resumes from its checkpoint and ends bit-identical to an uninterrupted run;
20 kills during `save` never leave `latest` pointing at an incomplete checkpoint; a planted
pickle payload is never executed."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy
import pytest
from test_mpi_suite import mpirun_prefix

TRAIN = '''
import os, signal, sys
import numpy
import disttrain as dt, disttrain.nn as nn, disttrain.optim as optim
import disttrain.distributed as dist
from disttrain import env
from disttrain.data import DataLoader, DistributedSampler, TensorDataset

steps, kill_rank, kill_step, out = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
comm = dist.init()
dt.manual_seed(0)
model = dist.DataParallel(nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 3)), comm)
opt = optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
sched = optim.lr_scheduler.StepLR(opt, 4, gamma=0.7)
rng = numpy.random.default_rng(5)
data = TensorDataset(dt.tensor(rng.standard_normal((64, 6)).astype(numpy.float32)),
                     dt.tensor(rng.integers(0, 3, 64)))
sampler = DistributedSampler(data, comm.size, comm.rank, shuffle=True, seed=1)
loader = DataLoader(data, batch_size=4, sampler=sampler)
dt.manual_seed(10 + comm.rank)
state = {"epoch": 0}
ckpt = dist.CheckpointManager(env.checkpoint_dir(out + ".ckpt"), comm)
step = ckpt.restore(model=model, optimizer=opt, scheduler=sched, loader=loader, state=state)
it = iter(loader)
first_attempt = env.restart_count() == 0
while step < steps:
    try:
        x, y = next(it)
    except StopIteration:
        state["epoch"] += 1
        sampler.set_epoch(state["epoch"])
        it = iter(loader)
        x, y = next(it)
    opt.zero_grad()
    nn.functional.cross_entropy(model(x + dt.randn(*x.shape) * 0.01), y).backward()
    opt.step()
    sched.step()
    step += 1
    if step % 3 == 0:
        ckpt.save(step, model=model, optimizer=opt, scheduler=sched, loader=loader, state=state)
    if first_attempt and comm.rank == kill_rank and step == kill_step:
        os.kill(os.getpid(), signal.SIGKILL)
if comm.rank == 0:
    dt.save(model.module.state_dict(), out)
'''


def test_sigkilled_rank_resumes_bit_identical(tmp_path, mpirun):
    script = tmp_path / "train.py"
    script.write_text(TRAIN)
    steps = 14
    rng = random.Random()
    kill_rank, kill_step = rng.randrange(2), rng.randrange(2, steps)
    plain = tmp_path / "uninterrupted.safetensors"
    subprocess.run(mpirun_prefix(mpirun, 2) + [sys.executable, str(script), str(steps),
                   "-1", "-1", str(plain)], cwd=tmp_path, check=True, timeout=120,
                   capture_output=True)
    resumed = tmp_path / "resumed.safetensors"
    launched = subprocess.run(
        [sys.executable, "-m", "disttrain.launch", "-n", "2", "--checkpoint-dir",
         str(tmp_path / "ckpt"), "--max-restarts", "2", str(script), str(steps), str(kill_rank),
         str(kill_step), str(resumed)], cwd=tmp_path, timeout=180, capture_output=True,
        text=True)
    report = launched.stdout + launched.stderr
    import disttrain as dt

    assert launched.returncode == 0, report
    assert f"rank {kill_rank}" in report and "signal 9" in report, report
    a, b = dt.load(plain), dt.load(resumed)
    assert a.keys() == b.keys()
    assert all(numpy.array_equal(a[k], b[k]) for k in a), (kill_rank, kill_step)


SAVE_LOOP = '''
import sys
import disttrain as dt, disttrain.nn as nn, disttrain.optim as optim
import disttrain.distributed as dist

comm = dist.init()
model = nn.Sequential(nn.Linear(512, 512), nn.Linear(512, 512))
opt = optim.Adam(model.parameters())
ckpt = dist.CheckpointManager(sys.argv[1], comm, keep_last=2)
step = ckpt.restore(model=model, optimizer=opt)
print("ready", flush=True)
while True:
    step += 1
    ckpt.save(step, model=model, optimizer=opt)
'''


def _verify_latest(folder: Path) -> int | None:
    """The step `latest` points to, after checking every file of it; None if no `latest`."""
    latest = folder / "latest"
    if not latest.exists():
        return None
    target = folder / latest.read_text().strip()
    manifest = json.loads((target / "manifest.json").read_text())
    for name, entry in manifest["files"].items():
        data = (target / name).read_bytes()
        assert len(data) == entry["size"], name
        assert hashlib.sha256(data).hexdigest() == entry["sha256"], name
    return manifest["step"]


def test_kills_during_save_never_break_latest(tmp_path, mpirun):
    script = tmp_path / "save_loop.py"
    script.write_text(SAVE_LOOP)
    folder = tmp_path / "ckpt"
    rng, seen = random.Random(0), []
    for _ in range(20):
        proc = subprocess.Popen([sys.executable, str(script), str(folder)], cwd=tmp_path,
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.0, 0.3))
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        proc.stdout.close()
        seen.append(_verify_latest(folder))
    steps = [s for s in seen if s is not None]
    assert steps, "no checkpoint was ever committed"
    assert steps == sorted(steps)  # every restart resumed from the previous one


def test_planted_pickle_is_never_executed(tmp_path, mpirun):
    import disttrain.distributed as dist
    import disttrain.nn as nn

    folder = tmp_path / "ckpt"
    model = nn.Linear(3, 2)
    ckpt = dist.CheckpointManager(folder, dist.init())
    ckpt.save(1, model=model)
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    shard = folder / "step-00000001" / "shard-00000.safetensors"
    shard.write_bytes(pickle.dumps(Payload()))
    manifest = json.loads((folder / "step-00000001" / "manifest.json").read_text())
    manifest["files"][shard.name] = {"size": shard.stat().st_size, "rank": 0,
                                     "sha256": hashlib.sha256(shard.read_bytes()).hexdigest()}
    (folder / "step-00000001" / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match=r"shard-00000.safetensors: not a valid safetensors"):
        ckpt.restore(model=model)
    assert not marker.exists()
    assert os.path.exists(folder / "latest")
