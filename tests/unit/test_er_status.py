"""An ER whose console or gateway is offline gets no new offers; after the grace
its open offers pass to the next ERs (hub logic over the in-memory broker)."""

from __future__ import annotations

from typing import Literal

from shared import topics
from shared.ids import new_case_id
from shared.messages import StatusV1
from tests.hub_world import World


def _status(world: World, hospital_id: str, state: Literal["online", "offline"]) -> None:
    world.er(hospital_id).send(topics.ER_STATUS,
                               StatusV1(role="er", state=state, software_version="test"),
                               hospital_id=hospital_id)


def _open(world: World, case_id: str) -> list[str]:
    return [o.hospital_id for o in world.offers(case_id) if o.state == "open"]


def test_an_offline_er_is_ranked_out_until_it_is_back(world: World) -> None:
    first = new_case_id()
    world.send_case(first)
    favourite = _open(world, first)[0]
    _status(world, favourite, "offline")
    second = new_case_id()
    world.send_case(second)
    assert favourite not in _open(world, second) and len(_open(world, second)) == 3
    _status(world, favourite, "online")
    third = new_case_id()
    world.send_case(third)
    assert favourite in _open(world, third)


def test_after_the_grace_its_open_offers_pass_to_the_next_er(world: World) -> None:
    case_id = new_case_id()
    world.send_case(case_id)
    gone = _open(world, case_id)[0]
    _status(world, gone, "offline")
    world.hub.tick()  # within the 30 s grace: the offer stands
    assert gone in _open(world, case_id)
    world.hub.settings.er_offline_grace_s = 0.0
    world.hub.tick()
    still_open = _open(world, case_id)
    assert gone not in still_open and len(still_open) == 3
    told = [p for _, p in world.published(topics.ER_OFFER)
            if p.hospital_id == gone and p.state == "withdrawn"]
    assert told and "offline" in told[-1].summary
    assert "offline" in world.published(topics.CASE_STATUS)[-1][1].message
    world.hub.tick()  # nothing more to pass on
    assert _open(world, case_id) == still_open


def test_an_er_that_never_said_anything_is_offered_as_before(world: World) -> None:
    world.send_case()
    assert len(_open(world, world.offers()[0].case_id)) == 3
    assert world.hub.presence.offline() == set()
