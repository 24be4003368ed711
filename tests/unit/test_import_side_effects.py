"""Importing disttrain changes nothing in the process: no module starts MPI, the launcher loads
no numpy, mpi4py or cupy, the allocator is tuned only on request, and dist.init() changes only
what its flags allow. Each check runs in a fresh interpreter (a subprocess)."""

from __future__ import annotations

import json
import os
import pathlib
import platform
import shutil
import subprocess
import sys

import pytest

import disttrain
from disttrain import env

REPO = pathlib.Path(disttrain.__file__).resolve().parents[1]
HEAVY = ("numpy", "mpi4py", "cupy")


def run_python(code: str, *args: str, env: dict | None = None) -> str:
    """stdout of `python -c code args` in a fresh interpreter; fails the test on exit != 0."""
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                          cwd=REPO, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


def heavy_modules(names) -> list[str]:
    return sorted(n for n in names if n.split(".")[0] in HEAVY)


# ---------------------------------------------------------------- MPI starts in dist.init() only
WALK = """
import importlib, json, pkgutil, sys
import disttrain
names = sorted(m.name for m in pkgutil.walk_packages(disttrain.__path__, "disttrain."))
for name in names:
    importlib.import_module(name)
import mpi4py
print(json.dumps({"modules": names, "mpi_loaded": "mpi4py.MPI" in sys.modules,
                  "rc": [mpi4py.rc.initialize, mpi4py.rc.finalize]}))
"""


def test_importing_every_module_does_not_start_or_configure_mpi():
    pytest.importorskip("mpi4py")
    result = json.loads(run_python(WALK))
    assert {"disttrain.distributed.comm", "disttrain.distributed.data_parallel",
            "disttrain.distributed.checkpoint", "disttrain.launch.__main__"} <= set(
        result["modules"])
    # NOTE: mpi4py.MPI not even loaded (loading it starts MPI), and mpi4py's settings untouched,
    # so a user's own `from mpi4py import MPI` behaves as without disttrain
    assert result["mpi_loaded"] is False
    assert result["rc"] == [True, None]


# ---------------------------------------------------------------- the launcher is stdlib only
MODULES_AT_EXIT = """
import atexit, json, runpy, sys
atexit.register(lambda: sys.__stdout__.write("\\nMODULES " + json.dumps(sorted(sys.modules))))
sys.argv = ["disttrain-launch", "--help"]
runpy.run_module("disttrain.launch", run_name="__main__", alter_sys=True)
"""


def test_importing_the_launcher_loads_no_numpy_mpi4py_or_cupy():
    loaded = json.loads(run_python("import json, sys, disttrain.launch;"
                                   "print(json.dumps(sorted(sys.modules)))"))
    assert "disttrain.launch.commands" not in loaded  # lazy: loaded on first use only
    assert heavy_modules(loaded) == []
    loaded = json.loads(run_python("import json, sys, disttrain.launch.__main__;"
                                   "print(json.dumps(sorted(sys.modules)))"))
    assert "disttrain.launch.commands" in loaded and heavy_modules(loaded) == []


def test_python_m_disttrain_launch_help_loads_no_numpy_mpi4py_or_cupy():
    out = run_python(MODULES_AT_EXIT)
    assert "usage: disttrain-launch" in out
    loaded = json.loads(out[out.index("\nMODULES ") + len("\nMODULES "):])
    assert "disttrain.launch.commands" in loaded and heavy_modules(loaded) == []


def test_disttrain_launch_script_help_loads_no_numpy_mpi4py_or_cupy():
    script = shutil.which("disttrain-launch", path=str(pathlib.Path(sys.executable).parent))
    if script is None:
        pytest.skip("the disttrain-launch console script is not installed next to this Python")
    done = subprocess.run([sys.executable, "-X", "importtime", script, "--help"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "usage: disttrain-launch" in done.stdout, done.stderr
    # NOTE: -X importtime lines end in "|   <indent><module name>"
    imported = [line.rsplit("|", 1)[1].strip() for line in done.stderr.splitlines()
                if line.startswith("import time:") and "|" in line]
    assert "disttrain.launch.__main__" in imported and heavy_modules(imported) == []


# ---------------------------------------------------------------- no allocator tuning on import
SPY_ON_MALLOPT = """
import ctypes, json
loaded = []
real_cdll = ctypes.CDLL
ctypes.CDLL = lambda name, *a, **k: loaded.append(str(name)) or real_cdll(name, *a, **k)
import disttrain as dt
import disttrain.backend, disttrain.nn, disttrain.optim, disttrain.tensor
x = dt.randn(4, 4)
at_import = [n for n in loaded if "libc" in n]
tuned = dt.tune_malloc()
print(json.dumps({"at_import": at_import, "tuned": tuned,
                  "after_call": [n for n in loaded if "libc" in n]}))
"""


def test_malloc_is_tuned_only_on_request():
    environ = {k: v for k, v in os.environ.items() if k != env.TUNE_MALLOC}
    result = json.loads(run_python(SPY_ON_MALLOPT, env=environ))
    assert result["at_import"] == []
    if sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc":
        assert result["tuned"] is True and result["after_call"] == ["libc.so.6"]


def test_the_environment_variable_asks_for_malloc_tuning_at_load():
    result = json.loads(run_python(SPY_ON_MALLOPT, env={**os.environ, env.TUNE_MALLOC: "1"}))
    if sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc":
        assert result["at_import"] == ["libc.so.6"]


# ---------------------------------------------------------------- dist.init()'s flags
INIT = """
import json, os, sys, threading
import disttrain.distributed as dist
hooks = (sys.excepthook, threading.excepthook)
comm = dist.init(abort_on_exception=sys.argv[1] == "1", set_blas_threads=sys.argv[2] == "1")
print(json.dumps({
    "hooks_kept": (sys.excepthook, threading.excepthook) == hooks,
    "blas": {v: os.environ.get(v) for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                                            "MKL_NUM_THREADS")},
    "size": comm.size, "same": dist.init() is comm}))
"""


def _init_in_subprocess(abort_on_exception: bool, set_blas_threads: bool) -> dict:
    pytest.importorskip("mpi4py")
    environ = {k: v for k, v in os.environ.items()
               if not k.startswith(("OMP_", "OPENBLAS_", "MKL_", "OMPI_", "PMIX_", "PMI_"))}
    out = run_python(INIT, str(int(abort_on_exception)), str(int(set_blas_threads)),
                     env=environ)
    return json.loads(out.strip().splitlines()[-1])


def test_init_with_flags_off_changes_neither_hooks_nor_blas_threads():
    result = _init_in_subprocess(abort_on_exception=False, set_blas_threads=False)
    assert result["size"] == 1 and result["same"]
    assert result["hooks_kept"] is True
    assert result["blas"] == {"OMP_NUM_THREADS": None, "OPENBLAS_NUM_THREADS": None,
                              "MKL_NUM_THREADS": None}


def test_init_defaults_install_the_abort_hooks_and_set_blas_threads():
    result = _init_in_subprocess(abort_on_exception=True, set_blas_threads=True)
    assert result["hooks_kept"] is False
    threads = str(max(1, os.cpu_count() or 1))  # one rank: every core of the node
    assert result["blas"] == dict.fromkeys(("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                                            "MKL_NUM_THREADS"), threads)
