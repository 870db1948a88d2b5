"""Regression tests for bugs that the fuzz suite found outside the files it owned:
a capacity beyond 64 bits (now refused by the contract) and a future-dated
report that froze an ER's capacity (report times are now capped at "now")."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import pytest
from sqlmodel import Session

from hospital_hub.models import Hospital
from shared import topics
from shared.messages import CapacityV1, Envelope, encode
from tests.hub_world import World


def _capacity(world: World, beds: int, sent_at: datetime | None = None) -> None:
    # model_construct skips validation: a hostile or buggy sender is not bound by it.
    payload = CapacityV1.model_construct(er_beds_free=beds, icu_beds_free=0, accepting=True)
    envelope = Envelope.wrap(payload, sender="bos-mgh", sent_at=sent_at)
    world.er("bos-mgh").communicator.publish(topics.ER_CAPACITY.topic(hospital_id="bos-mgh"),
                                             encode(envelope))


def _beds(world: World) -> int | None:
    with Session(world.hub.engine) as session:
        hospital = session.get(Hospital, "bos-mgh")
        assert hospital is not None
        return hospital.er_beds_free


def test_capacity_beyond_64_bits_is_rejected_or_dead_lettered(
        world: World, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO):
        _capacity(world, 2**63)
    escaped = [r for r in caplog.records if r.exc_info is not None]
    assert not escaped, escaped[0].exc_info
    assert world.hub.messenger.rejected["MalformedMessage"] == 1
    _capacity(world, 4)
    assert _beds(world) == 4


def test_future_dated_capacity_does_not_freeze_the_er(world: World) -> None:
    _capacity(world, 0, sent_at=datetime.now(UTC) + timedelta(days=3650))
    _capacity(world, 5)
    world.hub.live.set_capacity("bos-mgh", er_beds_free=6, icu_beds_free=0, accepting=True,
                                source="console")
    assert _beds(world) == 6
