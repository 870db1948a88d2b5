"""Structured log formats."""

from __future__ import annotations

import json
import logging

from shared.logs import JsonFormatter, KeyValueFormatter


def _record() -> logging.LogRecord:
    record = logging.LogRecord("goldenhour.test", logging.INFO, __file__, 1, "case received",
                               (), None)
    record.case_id = "c-1"
    record.triage_level = 2
    return record


def test_json_lines_carry_the_extra_fields() -> None:
    entry = json.loads(JsonFormatter().format(_record()))
    assert entry["event"] == "case received" and entry["level"] == "info"
    assert entry["case_id"] == "c-1" and entry["triage_level"] == 2
    assert entry["ts"].endswith("+00:00")


def test_key_value_lines_for_people() -> None:
    line = KeyValueFormatter().format(_record())
    assert line.endswith("goldenhour.test: case received case_id=c-1 triage_level=2")
