"""Overload detection, held capacity refreshes, ER presence and the bench's knee:
pure logic."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from hospital_hub import load
from hospital_hub.bench_figures import RateRun, figures, knee
from hospital_hub.er_presence import ErPresence
from hospital_hub.load import HeldCapacity, LoadMonitor
from shared.messages import Envelope, Position, PositionV1

T0 = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)


def _envelope(age_s: float) -> Envelope[Any]:
    return Envelope.wrap(PositionV1(position=Position(lat=1, lon=2)), sender="amb-1",
                         sent_at=datetime.now(UTC) - timedelta(seconds=age_s))


def test_a_busy_handler_is_overloaded_and_recovers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(load, "WINDOW_S", 0.2)
    monitor = LoadMonitor(lag_limit_s=1.0)
    handler = monitor.track(lambda envelope, ids: time.sleep(0.25))
    handler(_envelope(0.0), {})
    assert monitor.update() is True and monitor.episodes == 1
    time.sleep(0.3)
    assert monitor.update() is False


def test_old_messages_at_half_busy_are_overload(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(load, "WINDOW_S", 0.5)
    monitor = LoadMonitor(lag_limit_s=1.0)
    handler = monitor.track(lambda envelope, ids: time.sleep(0.3))
    handler(_envelope(5.0), {})  # waited 5 s, and the handler is 60 % busy
    assert monitor.figures()["lag_s"] >= 5.0
    assert monitor.update() is True


def test_one_late_clock_alone_is_not_overload() -> None:
    monitor = LoadMonitor(lag_limit_s=1.0)
    monitor.track(lambda envelope, ids: None)(_envelope(600.0), {})
    assert monitor.update() is False


def test_held_capacity_keeps_the_newest_and_applies_when_due(
        monkeypatch: pytest.MonkeyPatch) -> None:
    held, applied = HeldCapacity(), []
    held.hold("er-1", lambda: applied.append("old"))
    held.hold("er-1", lambda: applied.append("new"))
    held.hold("er-2", lambda: applied.append("other"))
    assert len(held) == 2 and held.due(everything=False) == []
    monkeypatch.setattr(load, "CAPACITY_MAX_HOLD_S", 0.0)
    for apply in held.due(everything=False):
        apply()
    assert sorted(applied) == ["new", "other"] and len(held) == 0


def test_presence_takes_the_latest_status_heard_and_times_the_grace() -> None:
    presence = ErPresence()
    assert presence.update("er-1", False, T0) is True
    assert presence.offline() == {"er-1"} and presence.offline_for(0) == {"er-1"}
    assert presence.offline_for(60) == set()
    assert presence.update("er-1", False, T0) is False  # no change
    # A reconnect republishes the online status built with the will: older, but latest.
    assert presence.update("er-1", True, T0 - timedelta(seconds=1)) is True
    assert presence.offline() == set()


def test_presence_is_thread_safe() -> None:
    presence = ErPresence()
    threads = [threading.Thread(target=lambda n=n: [
        presence.update(f"er-{n}", i % 2 == 0, T0 + timedelta(seconds=i)) for i in range(200)])
        for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert presence.offline() == {f"er-{n}" for n in range(4)}  # i = 199 last: offline


def _run(sent: dict[str, float], offer_after: float, accept_after: float,
         stored: set[str] | None = None) -> RateRun:
    offers, accepts, decisions = [], {}, {}
    for case_id, at in sent.items():
        for rank in (1, 2, 3):
            offers.append((case_id, f"er-{rank}", "open", rank, at + offer_after))
        accepts[case_id] = at + offer_after
        decisions[case_id] = ("accepted", at + offer_after + accept_after)
    return RateRun(cases_per_s=10, positions_per_s=0, duration_s=1, sent=sent, case_seconds=1,
                   positions_sent=0, position_seconds=1, offers=offers, accepts=accepts,
                   decisions=decisions, load_end=max(sent.values()) + 0.1,
                   stored=set(sent) if stored is None else stored)


def test_figures_keep_backlog_and_loss_apart() -> None:
    sent = {f"c{n}": 100.0 + n / 10 for n in range(10)}
    row = figures(_run(sent, offer_after=0.2, accept_after=0.05))
    assert row["publish_to_offer_ms_p95"] == pytest.approx(200, abs=1)
    assert row["accept_to_ambulance_ms_p95"] == pytest.approx(50, abs=1)
    assert (row["lost"], row["unfinished"], row["double_offered"]) == (0, 0, 0)
    assert row["backlog_at_load_end"] > 0  # answered after the load ended: backlog, not lost
    lost = figures(_run(sent, 0.2, 0.05, stored=set(list(sent)[:8])))
    assert lost["lost"] == 2


def test_the_knee_is_the_last_rate_before_the_first_miss() -> None:
    good = figures(_run({"a": 1.0, "b": 1.1}, 0.1, 0.05))
    slow = figures(_run({"a": 1.0, "b": 1.1}, 0.9, 0.05))
    assert knee([(0, slow), (25, good), (50, good), (100, slow), (200, good)]) == 50
    assert knee([(25, slow), (50, good)]) is None
