"""The position lane's fast decode agrees with the contract's full check, and
the newest report per ambulance wins."""

from __future__ import annotations

import math
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlmodel import Session

from hospital_hub.db import make_engine, migrate
from hospital_hub.live import LiveState
from hospital_hub.models import Ambulance
from hospital_hub.position_lane import LaneStats, PositionLane, read_position
from shared import topics
from shared.errors import ContractError
from shared.mqtt import Messenger

T0 = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)


def _wire(**changes: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {"schema": "position", "version": 1, "message_id": uuid.uuid4().bytes,
                           "case_id": None, "sender": "amb-1", "sent_at": T0,
                           "payload": {"position": {"lat": 42.35, "lon": -71.06}}}
    raw.update(changes)
    return raw


def _pack(raw: Any) -> bytes:
    return msgpack.packb(raw, datetime=True, use_bin_type=True)


TOPIC = topics.AMBULANCE_POSITION.topic(ambulance_id="amb-1")


def _full(topic: str, data: bytes) -> tuple[str, float, float, datetime] | type[ContractError]:
    try:
        envelope, ids = Messenger.check(topics.AMBULANCE_POSITION, topic, data)
    except ContractError:
        return ContractError
    position = envelope.payload.position
    return ids["ambulance_id"], position.lat, position.lon, envelope.sent_at


def _fast(topic: str, data: bytes) -> tuple[str, float, float, datetime] | type[ContractError]:
    try:
        return read_position(topic, data)
    except ContractError:
        return ContractError


NUMBERS = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-400, 400),
                    st.booleans(), st.text(max_size=5), st.none())


@settings(max_examples=500, deadline=None)
@given(lat=NUMBERS, lon=NUMBERS, sender=st.sampled_from(["amb-1", "amb-2", "", "a/b"]),
       case_id=st.sampled_from([None, "case-1", 3]), version=st.sampled_from([1, 2, True, "1"]),
       schema=st.sampled_from(["position", "status"]),
       message_id=st.sampled_from([b"x" * 16, b"short", "text" * 4]),
       extra=st.sampled_from([{}, {"speed_kmh": 40.0}, {"speed_kmh": -1.0}, {"junk": 1}]))
def test_fast_path_gives_the_full_checks_verdict(lat: Any, lon: Any, sender: str, case_id: Any,
                                                 version: Any, schema: str, message_id: Any,
                                                 extra: dict[str, Any]) -> None:
    data = _pack(_wire(sender=sender, case_id=case_id, version=version, schema=schema,
                       message_id=message_id,
                       payload={"position": {"lat": lat, "lon": lon}, **extra}))
    expected, got = _full(TOPIC, data), _fast(TOPIC, data)
    if expected is ContractError or got is ContractError:
        assert got is expected
    else:
        assert isinstance(got, tuple) and isinstance(expected, tuple)
        assert got[0] == expected[0] and got[3] == expected[3]
        assert math.isclose(got[1], expected[1]) and math.isclose(got[2], expected[2])


@pytest.mark.parametrize("data", [b"", b"\xc1", _pack([1, 2]), _pack(_wire(extra=1)),
                                  _pack(_wire(sent_at="yesterday")), b"\x00" * 70_000])
def test_broken_bytes_are_refused(data: bytes) -> None:
    with pytest.raises(ContractError):
        read_position(TOPIC, data)


def test_a_topic_outside_the_contract_is_refused() -> None:
    with pytest.raises(ContractError):
        read_position("goldenhour/v1/ambulance/+/position", _pack(_wire()))


def test_newest_report_wins_and_is_stored_once(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'hub.db'}")
    migrate(engine)
    stats = LaneStats()
    lane = PositionLane(LiveState(engine), stats)
    for minutes, lat in ((1, 10.0), (3, 30.0), (2, 20.0)):  # the last one is older
        lane.receive(TOPIC, _pack(_wire(sent_at=T0 + timedelta(minutes=minutes),
                                        payload={"position": {"lat": lat, "lon": 1.0}})))
    lane.receive(TOPIC, b"junk")
    assert lane.flush() == 1
    assert (stats.get("received"), stats.get("superseded"), stats.get("stored"),
            stats.get("rejected")) == (3, 2, 1, 1)
    with Session(engine) as session:
        ambulance = session.get(Ambulance, "amb-1")
        assert ambulance is not None and ambulance.lat == 30.0
    lane.receive(TOPIC, _pack(_wire(payload={"position": {"lat": 5.0, "lon": 1.0}})))
    lane.flush()  # older than the stored one: the upsert leaves the newer row
    with Session(engine) as session:
        assert session.get(Ambulance, "amb-1").lat == 30.0  # type: ignore[union-attr]


def test_a_failed_write_keeps_the_reports(tmp_path: Path) -> None:
    live = LiveState(make_engine(f"sqlite:///{tmp_path / 'missing' / 'hub.db'}"))
    live.note_position("amb-1", 1.0, 2.0, T0)
    with pytest.raises(Exception):  # noqa: B017 - no such database folder
        live.flush_positions()
    assert live.pending_positions() == 1
