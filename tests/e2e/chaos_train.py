"""The training job of tests/e2e/test_chaos.py: 2-rank DataParallel (SGD with momentum, StepLR,
a shuffled DistributedSampler over several epochs, dt.randn noise), a checkpoint every
CHAOS_EVERY steps in $DISTTRAIN_CHECKPOINT_DIR, rank 0 saves the final parameters to argv[2].

`python -m mpi4py chaos_train.py STEPS OUT` under disttrain-launch. A fault is injected from
inside when CHAOS_FAULT names one (the test injects the launcher's SIGKILL from outside):
    kill_rank        rank CHAOS_RANK SIGKILLs itself after step CHAOS_STEP
    stop_rank        rank CHAOS_RANK SIGSTOPs itself after step CHAOS_STEP (the watchdog's case)
    kill_in_save     rank CHAOS_RANK is SIGKILLed CHAOS_DELAY_S into the save of step CHAOS_STEP
    corrupt_shard    after the save of step CHAOS_STEP rank 0 flips a byte of the newest shard,
                     then SIGKILLs itself
    delete_manifest  the same, deleting the newest checkpoint's manifest.json
Each fault fires once per round, whatever the restarts: the firing rank first creates the file
CHAOS_MARKER (O_EXCL). CHAOS_STEP_SLEEP_S slows every step (so an outside fault lands mid-run).
"""

import os
import signal
import sys
import threading
import time
from pathlib import Path

import numpy

import disttrain as dt
import disttrain.distributed as dist
import disttrain.nn as nn
import disttrain.optim as optim
from disttrain import env
from disttrain.data import DataLoader, DistributedSampler, TensorDataset

FAULT = os.environ.get("CHAOS_FAULT", "")
FAULT_RANK = int(os.environ.get("CHAOS_RANK", "0"))
FAULT_STEP = int(os.environ.get("CHAOS_STEP", "-1"))
DELAY_S = float(os.environ.get("CHAOS_DELAY_S", "0"))
EVERY = int(os.environ.get("CHAOS_EVERY", "3"))
STEP_SLEEP_S = float(os.environ.get("CHAOS_STEP_SLEEP_S", "0"))


def fires(step: int, rank: int, kinds: tuple[str, ...], fault_rank: int) -> bool:
    """Whether this rank injects its fault now: the first time only, across restarts."""
    if FAULT not in kinds or step != FAULT_STEP or rank != fault_rank:
        return False
    try:
        os.close(os.open(os.environ["CHAOS_MARKER"], os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return False
    return True


def damage_newest(folder: Path) -> None:
    """corrupt_shard: flip one byte in the middle of the newest shard (same size, so only the
    sha256 check can tell); delete_manifest: remove the newest manifest."""
    newest = folder / (folder / "latest").read_text().strip()
    if FAULT == "delete_manifest":
        (newest / "manifest.json").unlink()
        return
    shard = newest / "shard-00000.safetensors"
    with open(shard, "r+b") as f:
        f.seek(shard.stat().st_size // 2)
        byte = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([byte[0] ^ 0xFF]))
        f.flush()
        os.fsync(f.fileno())


def kill_self() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def main() -> None:
    steps, out = int(sys.argv[1]), sys.argv[2]
    comm = dist.init()
    dt.manual_seed(0)
    model = dist.DataParallel(nn.Sequential(nn.Linear(6, 64), nn.Tanh(), nn.Linear(64, 3)), comm)
    opt = optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    sched = optim.lr_scheduler.StepLR(opt, 4, gamma=0.7)
    rng = numpy.random.default_rng(5)
    data = TensorDataset(dt.tensor(rng.standard_normal((64, 6)).astype(numpy.float32)),
                         dt.tensor(rng.integers(0, 3, 64)))
    sampler = DistributedSampler(data, comm.size, comm.rank, shuffle=True, seed=1)
    loader = DataLoader(data, batch_size=4, sampler=sampler)
    dt.manual_seed(10 + comm.rank)
    state = {"epoch": 0}
    folder = Path(env.checkpoint_dir())
    ckpt = dist.CheckpointManager(folder, comm)
    stateful = dict(model=model, optimizer=opt, scheduler=sched, loader=loader, state=state)
    step = ckpt.restore(**stateful)
    it = iter(loader)
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
        time.sleep(STEP_SLEEP_S)
        if step % EVERY == 0:
            if fires(step, comm.rank, ("kill_in_save",), FAULT_RANK):
                threading.Timer(DELAY_S, kill_self).start()
            ckpt.save(step, **stateful)
        if fires(step, comm.rank, ("kill_rank",), FAULT_RANK):
            kill_self()
        if fires(step, comm.rank, ("stop_rank",), FAULT_RANK):
            os.kill(os.getpid(), signal.SIGSTOP)
        if fires(step, comm.rank, ("corrupt_shard", "delete_manifest"), 0):
            damage_newest(folder)
            kill_self()
    if comm.rank == 0:
        dt.save(model.module.state_dict(), out)


if __name__ == "__main__":
    main()
