"""Private helpers do not cross modules in the numerical core: what one module shares with
another has a public name in the module that owns it (STYLE.md, "what to avoid"). Checked with
`ast` on the core's files: no `from x import _name`, no `module._name` on an imported module."""

from __future__ import annotations

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2] / "disttrain"
CORE = sorted([*(ROOT / f"{n}.py" for n in (
                   "autograd", "dtypes", "factories", "functional", "functional_conv", "shapes",
                   "tensor", "tensor_math", "tensor_reduce", "tensor_shape")),
               *(ROOT / "ops").glob("*.py"),
               *(ROOT / "nn" / n for n in ("layers.py", "conv.py", "loss.py",
                                          "normalization.py", "functional.py"))])


def private_crossings(source: str) -> list[str]:
    """`from m import _x` and `alias._x` (alias bound by an import) in `source`."""
    tree = ast.parse(source)
    modules, found = set(), []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules |= {(a.asname or a.name).split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            for a in node.names:
                if a.name.startswith("_") and not a.name.startswith("__"):
                    found.append(f"line {node.lineno}: from {node.module} import {a.name}")
                modules.add(a.asname or a.name)
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                and node.value.id in modules and node.attr.startswith("_")
                and not node.attr.startswith("__")):
            found.append(f"line {node.lineno}: {node.value.id}.{node.attr}")
    return found


@pytest.mark.parametrize("path", CORE, ids=lambda p: str(p.relative_to(ROOT)))
def test_core_module_uses_no_private_name_of_another_module(path):
    assert private_crossings(path.read_text()) == []


@pytest.mark.parametrize("source, expected", [
    ("from disttrain.tensor import _shape_arg\n",
     ["line 1: from disttrain.tensor import _shape_arg"]),
    ("from disttrain import ops\nops._pad2d(x)\n", ["line 2: ops._pad2d"]),
    ("from disttrain.nn import functional as F\nF._pair(1)\n", ["line 2: F._pair"]),
    ("import numpy\nnumpy._core\n", ["line 2: numpy._core"]),
    ("from disttrain import ops\nself._make(x)\nops.Add.__name__\n", []),
])  # fmt: skip
def test_checker_finds_private_crossings(source, expected):
    assert private_crossings(source) == expected


def test_every_core_file_exists():
    assert all(p.exists() for p in CORE) and len(CORE) >= 15
