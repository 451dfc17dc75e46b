"""Prints each notebook's smoke run time (all its nbval cells, kernel start included) after a test run."""

from __future__ import annotations

from collections import defaultdict

NOTEBOOK_BUDGET_S = 20.0  # issue 16: each notebook runs in seconds under ARCLIB_SMOKE=1

_seconds: dict[str, float] = defaultdict(float)


def pytest_runtest_logreport(report):
    path = report.nodeid.split("::")[0]
    if path.endswith(".ipynb"):
        _seconds[path] += report.duration  # setup (kernel start), call and teardown of every cell


def notebook_times_lines(seconds: dict[str, float], budget: float = NOTEBOOK_BUDGET_S) -> list[str]:
    over = f"   OVER the {budget:.0f} s budget"
    lines = [f"{s:7.1f} s  {path}{over if s > budget else ''}" for path, s in sorted(seconds.items())]
    return lines + [f"{sum(seconds.values()):7.1f} s  all notebooks"]


def pytest_terminal_summary(terminalreporter):
    if _seconds:
        terminalreporter.section("notebook smoke run times")
        for line in notebook_times_lines(_seconds):
            terminalreporter.write_line(line)
