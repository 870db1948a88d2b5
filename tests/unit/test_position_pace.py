"""The ambulance reports its position every second while a case is under way,
every 20 s otherwise (edge_agent/position_reporter.py)."""

from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace

from edge_agent.agent import EdgeAgent
from edge_agent.position_reporter import PositionPace
from edge_agent.settings import load_edge_settings
from shared import topics
from shared.mqtt import InMemoryBroker, InMemoryCommunicator
from tests.images import chest_like_png
from tests.services import wait_until


def _record(case_id: str, age_s: float = 0.0, status: str | None = None,
            decision: str | None = None) -> SimpleNamespace:
    return SimpleNamespace(
        case_id=case_id, queued_at=time.monotonic() - age_s,
        status=SimpleNamespace(state=status) if status else None,
        decision=SimpleNamespace(status=decision) if decision else None)


def test_the_pace_follows_the_cases() -> None:
    settings = load_edge_settings(model="placeholder")
    records: list[SimpleNamespace] = []
    docs: dict[str, dict[str, str]] = {}
    pace = PositionPace(settings, lambda: records, lambda c: docs.get(c, {}))  # type: ignore[arg-type]
    assert pace.interval() == settings.position_interval_s == 20.0
    records.append(_record("a"))  # queued, no word from the hub yet
    assert pace.interval() == settings.position_interval_active_s == 1.0
    records[0] = _record("a", status="accepted")  # driving to the ER
    assert pace.active()
    docs["a"] = {"update:handover": "{}"}
    assert not pace.active()
    records.append(_record("b", decision="no_er_available"))
    records.append(_record("c", age_s=3 * 3600, status="offered"))  # too old to count
    assert pace.interval() == 20.0


def test_a_new_case_makes_the_agent_report_every_second(tmp_path: Path) -> None:
    broker = InMemoryBroker()
    agent = EdgeAgent(load_edge_settings(ambulance_id="amb-pace", model="placeholder",
                                         position_interval_s=30, position_interval_active_s=0.1,
                                         state_dir=tmp_path),
                      communicator=InMemoryCommunicator(broker))
    reports: list[float] = []
    listener = InMemoryCommunicator(broker)
    listener.start()
    listener.subscribe(topics.AMBULANCE_POSITION.subscription(),
                       lambda topic, data: reports.append(time.monotonic()))
    agent.start()
    try:
        time.sleep(0.5)
        assert reports == []  # idle: the first report is 30 s away
        record = agent.submit(chest_like_png(tmp_path / "synthetic.png"))
        assert wait_until(lambda: len(reports) >= 5, timeout=5)
        agent.update(record.case_id, "handover", handover={"note": "handed over"})
        time.sleep(0.3)  # the report in flight may still come
        settled = len(reports)
        time.sleep(0.6)
        assert len(reports) == settled  # back to every 30 s
    finally:
        agent.stop()
