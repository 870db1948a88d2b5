"""Options of the fuzz suite: ``--fuzz-long`` raises every budget to >= 100,000 examples.

pytest reads this option only when ``tests/fuzz`` is named on the command line
(``pytest --fuzz-long tests/fuzz``); for a run of the whole suite set
``GOLDENHOUR_FUZZ_LONG=1`` instead.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fuzz import budget

HERE = Path(__file__).parent


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--fuzz-long", action="store_true", default=False,
        help=f"run every fuzz test with at least {budget.LONG_EXAMPLES:,} examples "
             "(hours, not seconds; no per-test timeout)",
    )


def pytest_configure(config: pytest.Config) -> None:
    budget.LONG = bool(config.getoption("--fuzz-long", default=False)) or budget.long_from_env()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not budget.LONG:
        return
    for item in items:
        if HERE in Path(str(item.path)).parents:
            item.add_marker(pytest.mark.timeout(0))


_SUMMARY: dict[str, dict[str, object]] = {}


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Note each fuzz test's budget and outcome for docs/reliability.md."""
    if report.when != "call" or "tests/fuzz/" not in report.nodeid:
        return
    row = _SUMMARY.setdefault(report.nodeid.split("::", 1)[1],
                              {"examples": _BUDGETS.get(report.nodeid, "see docs/fuzzing.md"),
                               "failures": 0})
    if report.failed:
        row["failures"] = int(row["failures"]) + 1  # type: ignore[call-overload]


_BUDGETS: dict[str, object] = {}


def pytest_runtest_setup(item: pytest.Item) -> None:
    function = getattr(item, "obj", None)
    chosen = getattr(function, "_hypothesis_internal_use_settings", None)
    if chosen is not None:
        _BUDGETS[item.nodeid] = f"up to {chosen.max_examples:,}"


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _SUMMARY:
        import json

        Path(session.config.rootpath, ".fuzz-summary.json").write_text(
            json.dumps(_SUMMARY, indent=1))
