"""tests/run_outcomes.py: the skip-reason summary, reading pytest's JUnit XML, and the
cross-size rule of the multi-rank runner (a test skipped at every world size it ran at fails
the suite)."""

from __future__ import annotations

import pathlib
import subprocess
import sys
import textwrap

import pytest
from run_outcomes import format_never_ran, read_junit, skipped_at_every_size

TESTS = pathlib.Path(__file__).resolve().parents[1]

SAMPLE_TESTS = '''
import pytest

def test_passes():
    pass

@pytest.mark.parametrize("n", [2, 8])
def test_skips(n):
    pytest.skip(f"needs {n} ranks <&>")

@pytest.mark.parametrize("i", range(3))
def test_no_gpu(i):
    pytest.skip("no GPU")

@pytest.mark.xfail(reason="known")
def test_xfails():
    assert False

def test_fails():
    assert False

@pytest.fixture
def broken():
    raise RuntimeError("boom")

def test_errors(broken):
    pass

@pytest.fixture
def broken_teardown():
    yield
    raise RuntimeError("teardown")

def test_skipped_then_teardown_error(broken_teardown):
    pytest.skip("skip")
'''


# NOTE: the hook as tests/conftest.py has it, in a conftest of its own: the sample run must not
# pick up the real test tree
SAMPLE_CONFTEST = f'''
import sys
sys.path.insert(0, {str(TESTS)!r})
from run_outcomes import write_skip_reasons

def pytest_terminal_summary(terminalreporter):
    write_skip_reasons(terminalreporter)
'''


@pytest.fixture(scope="module")
def sample_run(tmp_path_factory) -> tuple[str, pathlib.Path]:
    """(terminal output, JUnit XML path) of pytest run on SAMPLE_TESTS in a subprocess."""
    root = tmp_path_factory.mktemp("sample")
    (root / "test_sample.py").write_text(SAMPLE_TESTS)
    (root / "conftest.py").write_text(SAMPLE_CONFTEST)
    xml = root / "out.xml"
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           f"--junitxml={xml}", "test_sample.py"], cwd=root,
                          capture_output=True, text=True, check=False, timeout=60)
    return done.stdout, xml


def test_summary_has_one_line_per_skip_reason_with_counts(sample_run):
    output, _ = sample_run
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if " skip reasons " in line)
    assert lines[start + 1:start + 5] == [
        "skipped 3: no GPU",  # NOTE: most frequent first, ties in the order first seen
        "skipped 1: needs 2 ranks <&>",
        "skipped 1: needs 8 ranks <&>",
        "skipped 1: skip",
    ]


def test_read_junit_of_a_real_pytest_run(sample_run):
    _, xml = sample_run
    assert read_junit(xml) == {
        "test_sample::test_passes": ("passed", ""),
        "test_sample::test_skips[2]": ("skipped", "needs 2 ranks <&>"),
        "test_sample::test_skips[8]": ("skipped", "needs 8 ranks <&>"),
        **{f"test_sample::test_no_gpu[{i}]": ("skipped", "no GPU") for i in range(3)},
        "test_sample::test_xfails": ("xfailed", ""),
        "test_sample::test_fails": ("failed", ""),
        "test_sample::test_errors": ("error", ""),
        "test_sample::test_skipped_then_teardown_error": ("error", ""),
    }


def test_skipped_at_every_size_names_only_tests_that_never_ran():
    outcomes = {
        2: {"a": ("skipped", "needs 4"), "b": ("skipped", "needs 3"), "c": ("skipped", "gpu"),
            "d": ("passed", "")},
        3: {"a": ("skipped", "needs 4"), "b": ("passed", ""), "c": ("skipped", "gpu"),
            "d": ("failed", "")},
        4: {"a": ("passed", ""), "b": ("passed", ""), "c": ("skipped", "gpu")},
    }
    assert skipped_at_every_size(outcomes) == {"c": {2: "gpu", 3: "gpu", 4: "gpu"}}


def test_sizes_a_test_is_absent_from_do_not_count():
    """A job that died before a test (no result at that size) neither runs nor skips it."""
    outcomes = {2: {"a": ("skipped", "needs 8"), "b": ("error", "")}, 4: {"b": ("passed", "")}}
    assert skipped_at_every_size(outcomes) == {"a": {2: "needs 8"}}


def test_xfail_and_failures_count_as_ran():
    outcomes = {2: {"x": ("xfailed", ""), "f": ("failed", ""), "e": ("error", "")}}
    assert skipped_at_every_size(outcomes) == {}
    assert skipped_at_every_size({}) == {}


def test_format_never_ran_gives_every_size_and_reason():
    text = format_never_ran({"t::a": {2: "needs 8 ranks", 4: "needs 8 ranks"},
                             "t::b": {3: "no GPU"}})
    assert text == textwrap.dedent("""\
        t::a: -n 2: needs 8 ranks; -n 4: needs 8 ranks
        t::b: -n 3: no GPU""")
