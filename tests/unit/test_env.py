"""disttrain.env: the one module that reads DISTTRAIN_* variables (checked over the whole
package with ast), its settings read at call time, and the names users see in the docs."""

from __future__ import annotations

import ast
import pathlib

import pytest

from disttrain import env

PACKAGE = pathlib.Path(env.__file__).resolve().parent
PREFIX = "DISTTRAIN_"


def _docstrings(tree: ast.AST) -> set[int]:
    """ids of the string constants that are docstrings (documentation, not reads)."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                found.add(id(body[0].value))
    return found


def env_names_used(source: str) -> list[tuple[int, str]]:
    """(line, text) of every string literal outside docstrings that names a DISTTRAIN_*
    variable: whoever spells the name reads (or writes) the variable itself."""
    tree = ast.parse(source)
    skip = _docstrings(tree)
    return [(node.lineno, node.value) for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str)
            and PREFIX in node.value and id(node) not in skip]


def test_only_disttrain_env_names_disttrain_variables():
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path == PACKAGE / "env.py":
            continue
        offenders += [f"{path.relative_to(PACKAGE.parent)}:{line}: {text!r}"
                      for line, text in env_names_used(path.read_text(encoding="utf-8"))]
    assert offenders == [], "read DISTTRAIN_* through disttrain.env:\n" + "\n".join(offenders)


def test_env_module_is_where_the_names_are():
    assert len(env_names_used((PACKAGE / "env.py").read_text(encoding="utf-8"))) >= 6


@pytest.mark.parametrize("source, expected", [
    ('import os\nos.environ.get("DISTTRAIN_CUDA_AWARE")\n', 1),
    ('import os\nx = os.environ["DISTTRAIN_HEARTBEAT_DIR"]\n', 1),
    ('d = {"DISTTRAIN_LOG_DIR": "/l"}\n', 1),  # a writer spelling the name
    ('name = f"DISTTRAIN_{kind}"\n', 1),
    ('"""Reads DISTTRAIN_LOG_DIR (documentation only)."""\n', 0),
    ('def f():\n    """DISTTRAIN_X in a docstring."""\n    return env.LOG_DIR\n', 0),
    ('DISTTRAIN_FAIL = "[disttrain] rank"\n', 0),  # an identifier, not a variable name
])  # fmt: skip
def test_the_checker_itself(source, expected):
    assert len(env_names_used(source)) == expected


def test_documented_names():
    """The names README, launch scripts and users' scripts rely on."""
    assert (env.HEARTBEAT_DIR, env.CHECKPOINT_DIR, env.RESTART_COUNT, env.LOG_DIR) == (
        "DISTTRAIN_HEARTBEAT_DIR", "DISTTRAIN_CHECKPOINT_DIR", "DISTTRAIN_RESTART_COUNT",
        "DISTTRAIN_LOG_DIR")
    assert env.CUDA_AWARE == "DISTTRAIN_CUDA_AWARE"


def test_settings_are_read_at_call_time(monkeypatch):
    for name in (env.HEARTBEAT_DIR, env.CHECKPOINT_DIR, env.RESTART_COUNT, env.LOG_DIR,
                 env.CUDA_AWARE, env.HOSTS, env.SLOTS):
        monkeypatch.delenv(name, raising=False)
    assert (env.heartbeat_dir(), env.checkpoint_dir(), env.restart_count(), env.log_dir(),
            env.cuda_aware(), env.hosts(), env.slots()) == (
        None, None, 0, None, None, [], 1)
    assert env.checkpoint_dir("ckpt") == "ckpt"
    monkeypatch.delenv(env.TUNE_MALLOC, raising=False)
    assert env.tune_malloc() is False
    monkeypatch.setenv(env.TUNE_MALLOC, "1")
    assert env.tune_malloc() is True
    monkeypatch.setenv(env.HEARTBEAT_DIR, "/h")
    monkeypatch.setenv(env.CHECKPOINT_DIR, "/c")
    monkeypatch.setenv(env.RESTART_COUNT, "2")
    monkeypatch.setenv(env.CUDA_AWARE, "0")
    monkeypatch.setenv(env.HOSTS, "head, worker1 worker2")
    monkeypatch.setenv(env.SLOTS, "4")
    assert (env.heartbeat_dir(), env.checkpoint_dir("ckpt"), env.restart_count(),
            env.cuda_aware(), env.hosts(), env.slots()) == (
        "/h", "/c", 2, False, ["head", "worker1", "worker2"], 4)


def test_an_empty_directory_variable_means_unset():
    environ = {env.HEARTBEAT_DIR: "", env.CHECKPOINT_DIR: ""}
    assert env.heartbeat_dir(environ) is None and env.checkpoint_dir("d", environ) == "d"


@pytest.mark.parametrize("fn, name, value, match", [
    (env.cuda_aware, env.CUDA_AWARE, "yes",
     r"DISTTRAIN_CUDA_AWARE: expected '0' or '1', got 'yes'"),
    (env.slots, env.SLOTS, "two", r"DISTTRAIN_SLOTS: expected an integer, got 'two'"),
])  # fmt: skip
def test_bad_values_name_the_variable(fn, name, value, match):
    with pytest.raises(ValueError, match=match):
        fn(environ={name: value})


def test_ring_reduce_scatter_switch():
    assert env.ring_reduce_scatter({}) is True
    assert env.ring_reduce_scatter({env.RING_REDUCE_SCATTER: "1"}) is True
    assert env.ring_reduce_scatter({env.RING_REDUCE_SCATTER: "0"}) is False
    with pytest.raises(ValueError, match="DISTTRAIN_RING_REDUCE_SCATTER: expected '0' or '1', "
                                         "got 'no'"):
        env.ring_reduce_scatter({env.RING_REDUCE_SCATTER: "no"})
