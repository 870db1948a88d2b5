"""Log lines written while a case is handled carry its case_id (shared/logs.py)."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from edge_agent.agent import EdgeAgent
from edge_agent.settings import load_edge_settings
from shared import topics
from shared.logs import CaseIdFilter, JsonFormatter, case_context, configure_logging, current_case_id
from shared.messages import Envelope
from shared.mqtt import InMemoryBroker, InMemoryCommunicator, Messenger
from tests import samples
from tests.images import chest_like_png

CASE = "20261125T120000Z-0000beef"


@pytest.fixture
def json_lines() -> Iterator[io.StringIO]:
    """The root logger writing JSON lines, with the case filter, to a buffer."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(CaseIdFilter())
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield stream
    finally:
        root.removeHandler(handler)


def _entries(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_records_inside_a_case_context_carry_the_case_id(json_lines: io.StringIO) -> None:
    log = logging.getLogger("goldenhour.test.context")
    log.warning("before")
    with case_context(CASE):
        assert current_case_id() == CASE
        log.warning("inside", extra={"stage": "decode"})
        log.warning("explicit", extra={"case_id": "another-case"})  # an explicit id wins
    log.warning("after")
    entries = {e["event"]: e for e in _entries(json_lines)}
    assert entries["inside"]["case_id"] == CASE and entries["inside"]["stage"] == "decode"
    assert entries["explicit"]["case_id"] == "another-case"
    assert "case_id" not in entries["before"] and "case_id" not in entries["after"]
    assert current_case_id() is None


def test_configure_logging_installs_the_case_filter_in_json() -> None:
    root = logging.getLogger()
    saved, level = root.handlers[:], root.level
    try:
        configure_logging("INFO", "json", service="hub")
        (handler,) = root.handlers
        stream = io.StringIO()
        handler.setStream(stream)  # type: ignore[attr-defined]
        with case_context(CASE):
            logging.getLogger("goldenhour.test.configured").info("case received")
        entry = json.loads(stream.getvalue().strip())
        assert entry["case_id"] == CASE and entry["service"] == "hub"
        assert entry["event"] == "case received"
    finally:
        root.handlers[:] = saved
        root.setLevel(level)


def test_message_handlers_log_with_the_case_id(json_lines: io.StringIO) -> None:
    """The messenger sets the context around every handler, on the edge and the hub."""
    broker = InMemoryBroker()
    hub = Messenger(InMemoryCommunicator(broker), sender="hub-1")
    edge = Messenger(InMemoryCommunicator(broker), sender="amb-1")
    log = logging.getLogger("goldenhour.test.handler")

    def handler(envelope: Envelope[Any], ids: dict[str, str]) -> None:
        log.warning("diagnosis handled")

    hub.on(topics.CASE_DIAGNOSIS, handler)
    hub.communicator.start()
    edge.communicator.start()
    edge.send(topics.CASE_DIAGNOSIS, samples.diagnosis(ambulance_id="amb-1"), case_id=CASE,
              ambulance_id="amb-1")
    (entry,) = [e for e in _entries(json_lines) if e["event"] == "diagnosis handled"]
    assert entry["case_id"] == CASE
    assert current_case_id() is None


def test_the_edge_pipeline_logs_with_the_case_id(json_lines: io.StringIO, tmp_path: Path) -> None:
    """The pipeline's own 'diagnosed' line names the case the agent minted for it."""
    agent = EdgeAgent(load_edge_settings(ambulance_id="amb-log", model="placeholder"),
                      communicator=InMemoryCommunicator(InMemoryBroker()), announce=False)
    try:
        record = agent.submit(chest_like_png(tmp_path / "synthetic.png"))
    finally:
        agent.stop()
    (diagnosed,) = [e for e in _entries(json_lines) if e["event"] == "diagnosed"]
    assert diagnosed["case_id"] == record.case_id
    assert diagnosed["logger"] == "edge_agent.pipeline"
