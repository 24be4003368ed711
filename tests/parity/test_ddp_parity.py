"""DistributedDataParallel's state_dict names the model's state as torch's DDP does ("module."
keys), so checkpoints of ported DDP scripts load the same way. Each library runs in a fresh
interpreter of its own (torch: a one-rank gloo group over a file store on loopback; disttrain:
one MPI rank), so neither leaves a process group behind in the test process."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytest.importorskip("torch")
pytest.importorskip("mpi4py")

MODEL = "nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3), nn.ReLU(), nn.Linear(3, 2))"
TORCH = f"""
import json, sys, torch, torch.distributed as dist
from torch import nn
dist.init_process_group("gloo", init_method="file://" + sys.argv[1], rank=0, world_size=1)
print(json.dumps(list(nn.parallel.DistributedDataParallel({MODEL}).state_dict())))
dist.destroy_process_group()
"""
DISTTRAIN = f"""
import json, disttrain as torch, disttrain.distributed as dist
from disttrain import nn
dist.init_process_group("gloo")
print(json.dumps(list(nn.parallel.DistributedDataParallel({MODEL}).state_dict())))
dist.destroy_process_group()
"""


def _keys(code: str, *args: str) -> list[str]:
    environ = dict(os.environ, GLOO_SOCKET_IFNAME="lo", OMP_NUM_THREADS="1")
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                          timeout=120, env=environ)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_state_dict_keys_match_torch_ddp(tmp_path):
    theirs = _keys(TORCH, str(tmp_path / "store"))
    ours = _keys(DISTTRAIN)
    assert theirs[:2] == ["module.0.weight", "module.0.bias"]
    assert ours == theirs
