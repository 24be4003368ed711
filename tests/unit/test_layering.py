"""The import layering of disttrain (DESIGN.md "Layout", STYLE.md C1), checked with `ast`.

- only disttrain/backend.py imports cupy / cupyx;
- only disttrain/distributed/comm.py imports mpi4py;
- the core (everything outside distributed/ and launch/) never imports disttrain.distributed;
- disttrain/launch/ imports no other part of disttrain except the stdlib-only modules below
  (it runs without numpy, works in a broken env);
- the stdlib-only modules (STDLIB_ONLY: env, files, lazy, the lazy package __init__s, the
  heartbeat writer and launch/) import nothing outside the standard library but each other;
- nothing imports pickle / cloudpickle / dill, or calls numpy's load with allow_pickle=True.
"""

from __future__ import annotations

import ast
import pathlib
import sys

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[2] / "disttrain"
PICKLERS = {"pickle", "cPickle", "_pickle", "cloudpickle", "dill", "joblib"}
# NOTE: importing disttrain.launch runs disttrain/__init__.py, and importing the heartbeat runs
# disttrain/distributed/__init__.py: those must import nothing heavy either
STDLIB_ONLY = {"disttrain.__init__", "disttrain.env", "disttrain.files", "disttrain.lazy",
               "disttrain.distributed.__init__", "disttrain.distributed.pipeline.__init__",
               "disttrain.distributed.watchdog"}


def imported_modules(tree: ast.AST, module: str) -> list[tuple[int, str]]:
    """(line, absolute dotted name) of every import in `tree`, relative ones resolved
    against `module` (the dotted name of the file, e.g. "disttrain.nn.layers")."""
    found = []
    package = module.split(".")[:-1] if not module.endswith("__init__") else module.split(".")
    package = [p for p in package if p != "__init__"]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package[: len(package) - node.level + 1]
                base = ".".join(parent + ([base] if base else []))
            found.append((node.lineno, base))
            # `from disttrain import distributed` imports the sub-package itself
            found += [(node.lineno, f"{base}.{alias.name}") for alias in node.names
                      if alias.name != "*"]
        elif isinstance(node, ast.Call) and _dynamic_import_name(node):
            found.append((node.lineno, _dynamic_import_name(node)))
    return found


def _dynamic_import_name(call: ast.Call) -> str | None:
    """The literal name of `importlib.import_module("x")` or `__import__("x")`, else None."""
    func = call.func
    name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
    if name in ("import_module", "__import__") and call.args and isinstance(
            call.args[0], ast.Constant) and isinstance(call.args[0].value, str):
        return call.args[0].value
    return None


def pickle_loads(tree: ast.AST) -> list[int]:
    """Lines that call `<anything>.load(..., allow_pickle=True)` or `load(..., allow_pickle=True)`
    (numpy.load, np.load, xp.load ...), or pass allow_pickle=<not False> anywhere."""
    lines = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        for kw in node.keywords:
            if kw.arg == "allow_pickle" and not (isinstance(kw.value, ast.Constant)
                                                 and kw.value.value is False):
                lines.append(node.lineno)
    return lines


def _matches(name: str, top: str) -> bool:
    return name == top or name.startswith(top + ".")


def _is_stdlib_only(module: str) -> bool:
    return module in STDLIB_ONLY or _matches(module, "disttrain.launch")


def _is_module(name: str) -> bool:
    """Whether dotted `name` is a module or package of disttrain (not a name inside one)."""
    path = PACKAGE.parent.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def _stdlib_only_may_import(name: str) -> bool:
    """Whether a stdlib-only module may import `name` (a dotted module or package name)."""
    if name.split(".")[0] in sys.stdlib_module_names:
        return True
    if not _matches(name, "disttrain"):
        return False
    # NOTE: `from disttrain.lazy import attach` yields "disttrain.lazy" and
    # "disttrain.lazy.attach" (a name in it: the module it lives in decides); a package counts
    # as its __init__
    if not _is_module(name) and "." in name:
        name = name.rsplit(".", 1)[0]
    return _is_stdlib_only(name) or _is_stdlib_only(name + ".__init__")


def violations(source: str, relpath: str) -> list[str]:
    """Every layering rule that the file at `relpath` (e.g. "disttrain/nn/layers.py") breaks."""
    tree = ast.parse(source, filename=relpath)
    module = relpath[:-3].replace("/", ".")
    in_distributed = module.startswith("disttrain.distributed")
    in_launch = module.startswith("disttrain.launch")
    stdlib_only = _is_stdlib_only(module)
    problems = []
    for line, name in imported_modules(tree, module):
        where = f"{relpath}:{line} imports {name}"
        is_cupy = _matches(name, "cupy") or _matches(name, "cupyx")
        if is_cupy and relpath != "disttrain/backend.py":
            problems.append(f"{where}: only disttrain/backend.py may import cupy")
        if _matches(name, "mpi4py") and relpath != "disttrain/distributed/comm.py":
            problems.append(f"{where}: only disttrain/distributed/comm.py may import mpi4py")
        if _matches(name, "disttrain.distributed") and not (in_distributed or in_launch):
            problems.append(f"{where}: core modules must not import disttrain.distributed")
        if in_launch and _matches(name, "disttrain") and not _stdlib_only_may_import(name):
            problems.append(f"{where}: disttrain/launch imports nothing else of disttrain "
                            "but the stdlib-only modules")
        elif stdlib_only and not _stdlib_only_may_import(name):
            problems.append(f"{where}: {relpath} is stdlib only (STDLIB_ONLY)")
        if name.split(".")[0] in PICKLERS:
            problems.append(f"{where}: disttrain never pickles (use safetensors / JSON)")
    problems += [f"{relpath}:{line}: allow_pickle must stay False" for line in pickle_loads(tree)]
    return problems


def package_files() -> list[pathlib.Path]:
    return sorted(PACKAGE.rglob("*.py"))


def test_the_package_is_found():
    names = {p.relative_to(PACKAGE.parent).as_posix() for p in package_files()}
    assert {"disttrain/backend.py", "disttrain/tensor.py", "disttrain/nn/module.py"} <= names


@pytest.mark.parametrize("path", package_files(),
                         ids=lambda p: p.relative_to(PACKAGE.parent).as_posix())
def test_module_respects_layering(path):
    relpath = path.relative_to(PACKAGE.parent).as_posix()
    assert violations(path.read_text(encoding="utf-8"), relpath) == []


def test_backend_is_where_cupy_is_imported():
    source = (PACKAGE / "backend.py").read_text(encoding="utf-8")
    assert any(_matches(n, "cupy") for _, n in imported_modules(ast.parse(source),
                                                                "disttrain.backend"))


# ---------------------------------------------------------------- the checker itself
@pytest.mark.parametrize("relpath, source, rule", [
    ("disttrain/tensor.py", "import cupy\n", "backend.py may import cupy"),
    ("disttrain/ops.py", "import cupyx.scipy.special as s\n", "backend.py may import cupy"),
    ("disttrain/nn/conv.py", "def f():\n    from cupy import asarray\n", "may import cupy"),
    ("disttrain/optim/sgd.py", "from mpi4py import MPI\n", "comm.py may import mpi4py"),
    ("disttrain/distributed/data_parallel.py", "import mpi4py.MPI\n", "may import mpi4py"),
    ("disttrain/nn/module.py", "import disttrain.distributed as dist\n", "core modules"),
    ("disttrain/optim/optimizer.py", "from disttrain import distributed\n", "core modules"),
    ("disttrain/data/sampler.py", "from disttrain.distributed.comm import X\n", "core modules"),
    ("disttrain/nn/layers.py", "from ..distributed import comm\n", "core modules"),
    ("disttrain/tensor.py", "import importlib\nimportlib.import_module('mpi4py')\n", "mpi4py"),
    ("disttrain/launch/__main__.py", "import disttrain.nn\n", "launch imports nothing"),
    ("disttrain/launch/cli.py", "from .. import tensor\n", "launch imports nothing"),
    ("disttrain/launch/cli.py", "from disttrain.distributed import comm\n", "launch imports"),
    ("disttrain/launch/cli.py", "from disttrain import backend\n", "launch imports nothing"),
    ("disttrain/launch/cli.py", "import numpy\n", "stdlib only"),
    ("disttrain/env.py", "import numpy\n", "stdlib only"),
    ("disttrain/files.py", "from disttrain.backend import asnumpy\n", "stdlib only"),
    ("disttrain/__init__.py", "from disttrain.tensor import Tensor\n", "stdlib only"),
    ("disttrain/distributed/__init__.py", "from . import comm\n", "stdlib only"),
    ("disttrain/distributed/watchdog.py", "import numpy\n", "stdlib only"),
    ("disttrain/serialization.py", "import pickle\n", "never pickles"),
    ("disttrain/distributed/comm.py", "import cloudpickle\n", "never pickles"),
    ("disttrain/data/loader.py", "from dill import loads\n", "never pickles"),
    ("disttrain/data/datasets/idx.py", "import numpy as np\nnp.load(f, allow_pickle=True)\n",
     "allow_pickle"),
    ("disttrain/serialization.py", "import numpy\nx = numpy.load(f, allow_pickle=flag)\n",
     "allow_pickle"),
])  # fmt: skip
def test_checker_catches_each_violation(relpath, source, rule):
    problems = violations(source, relpath)
    assert len(problems) >= 1 and any(rule in p for p in problems), problems


@pytest.mark.parametrize("relpath, source", [
    ("disttrain/backend.py", "import cupy\nimport cupyx\n"),
    ("disttrain/distributed/comm.py", "from mpi4py import MPI\n"),
    ("disttrain/distributed/data_parallel.py", "from disttrain.distributed import comm\n"),
    ("disttrain/distributed/checkpoint.py", "from .. import serialization\n"),
    ("disttrain/launch/cli.py", "import subprocess\nfrom disttrain.launch import argv\n"),
    ("disttrain/launch/cli.py", "from . import argv\n"),
    ("disttrain/launch/commands.py", "from disttrain import env\nimport shlex\n"),
    ("disttrain/launch/__init__.py", "from disttrain.lazy import attach\n"),
    ("disttrain/distributed/watchdog.py", "from disttrain.files import atomic_write\n"),
    ("disttrain/__init__.py", "from __future__ import annotations\nimport importlib\n"),
    ("disttrain/tensor.py", "from disttrain import ops\nimport numpy\n"),
    ("disttrain/serialization.py", "import numpy\nnumpy.load(f, allow_pickle=False)\n"),
    ("disttrain/nn/module.py", "# import pickle\ntext = 'import mpi4py'\n"),
])  # fmt: skip
def test_checker_accepts_allowed_imports(relpath, source):
    assert violations(source, relpath) == []


def test_checker_resolves_relative_imports():
    tree = ast.parse("from ..distributed import comm\nfrom . import init\n")
    names = [n for _, n in imported_modules(tree, "disttrain.nn.layers")]
    assert "disttrain.distributed" in names and "disttrain.nn.init" in names
    tree = ast.parse("from . import grid\n")
    names = [n for _, n in imported_modules(tree, "disttrain.distributed.__init__")]
    assert "disttrain.distributed.grid" in names
