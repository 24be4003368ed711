"""What a test run did, for the people reading its end: skip reasons with their counts (the
summary tests/conftest.py prints), and the outcomes of the multi-rank suite read from pytest's
JUnit XML, with the rule the outer runner (tests/e2e/test_mpi_suite.py) enforces across world
sizes: a test skipped at every size it ran at never ran at all, which is a failure (e.g.
`mpi(min_size=8)` while the runner stops at 4).

Importable from every test directory: pytest puts tests/ on sys.path when it imports
tests/conftest.py (its default "prepend" import mode). Unit-tested in
tests/unit/test_run_outcomes.py.
"""

from __future__ import annotations

import collections
import xml.etree.ElementTree as ET

# test id -> (outcome, skip reason or "")
Outcomes = dict[str, tuple[str, str]]


def write_skip_reasons(terminalreporter) -> None:
    """Writes one line per skip reason, "skipped COUNT: REASON", most frequent first (`-rs`
    lists every test instead; with hundreds of cupy skips the reasons are what matter)."""
    counts = collections.Counter(skip_reason(report)
                                 for report in terminalreporter.stats.get("skipped", []))
    if not counts:
        return
    terminalreporter.write_sep("-", "skip reasons")
    for reason, count in counts.most_common():
        terminalreporter.write_line(f"skipped {count}: {reason}")


def skip_reason(report) -> str:
    """The reason of a skipped test's report, without pytest's "Skipped: " prefix."""
    longrepr = report.longrepr
    reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
    return reason.removeprefix("Skipped: ")


def read_junit(path) -> Outcomes:
    """{test id: (outcome, reason)} from a pytest `--junitxml` file.

    The id is "classname::name" (e.g. "tests.mpi.test_comm::test_objects[2]"); the outcome
    is "failed", "error", "skipped", "xfailed" or "passed"; the reason is the skip message.
    """
    outcomes = {}
    for case in ET.parse(path).getroot().iter("testcase"):
        test_id = f"{case.get('classname', '')}::{case.get('name', '')}"
        outcomes[test_id] = _outcome(case)
    return outcomes


def _outcome(case: ET.Element) -> tuple[str, str]:
    # NOTE: a failure or error wins over a skip: a skipped test can still error in teardown
    for tag, outcome in (("failure", "failed"), ("error", "error")):
        if case.find(tag) is not None:
            return outcome, ""
    skipped = case.find("skipped")
    if skipped is None:
        return "passed", ""
    if skipped.get("type") == "pytest.xfail":
        return "xfailed", ""
    return "skipped", skipped.get("message", "")


def skipped_at_every_size(outcomes_by_size: dict[int, Outcomes]) -> dict[str, dict[int, str]]:
    """{test id: {size: skip reason}} of the tests that were skipped at every world size in
    whose results they appear; tests that ran (passed, failed, ...) at any size are left out.

    Example:
        >>> skipped_at_every_size({2: {"t": ("skipped", "needs 8 ranks")},
        ...                        4: {"t": ("skipped", "needs 8 ranks"), "u": ("passed", "")}})
        {'t': {2: 'needs 8 ranks', 4: 'needs 8 ranks'}}
    """
    reasons: dict[str, dict[int, str]] = {}
    ran: set[str] = set()
    for size in sorted(outcomes_by_size):
        for test_id, (outcome, reason) in outcomes_by_size[size].items():
            if outcome == "skipped":
                reasons.setdefault(test_id, {})[size] = reason
            else:
                ran.add(test_id)
    return {test_id: by_size for test_id, by_size in sorted(reasons.items())
            if test_id not in ran}


def format_never_ran(never_ran: dict[str, dict[int, str]]) -> str:
    """One line per test: its id, then each size and the skip reason given there."""
    return "\n".join(
        f"{test_id}: " + "; ".join(f"-n {size}: {reason}" for size, reason in by_size.items())
        for test_id, by_size in never_ran.items())
