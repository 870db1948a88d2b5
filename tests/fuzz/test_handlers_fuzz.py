"""Every MQTT handler of the hub and the edge, fed hostile messages through the
real subscription path.

The in-memory broker delivers in the publisher's thread and logs any exception
that escapes a handler (``message handler failed``, ERROR). The documented
outcomes are: a ``ContractError`` rejection (counted in ``Messenger.rejected``),
a refusal logged as ``message not applied``, a dead letter, or the message
applied. Anything else fails the test, and after each family a valid case must
still go from diagnosis to acceptance.
"""

from __future__ import annotations

import hashlib
import logging
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import event, given
from hypothesis import strategies as st
from PIL import Image
from sqlmodel import Session, select

from edge_agent.agent import EdgeAgent
from edge_agent.settings import load_edge_settings
from hospital_hub import handlers
from hospital_hub.models import CaseStatus, Hospital
from shared import topics
from shared.ids import new_case_id
from shared.messages import (
    CapacityV1,
    CaseDecisionV1,
    CaseStatusV1,
    CaseUpdateV1,
    ErDecisionV1,
    ImageChunkV1,
    IntakeV1,
    ModelIntake,
    OfferSummary,
    Patient,
    Payload,
    Position,
    PositionV1,
    StatusV1,
)
from shared.mqtt import InMemoryCommunicator, Messenger
from shared.mqtt.communicator import strip_share
from tests import samples
from tests.fuzz.budget import fuzz_settings
from tests.fuzz.envelopes import Family, Hostile, hostile_messages, valid_ids
from tests.hub_world import World
from tests.images import chest_like

HUB_EXAMPLES = 500
"""Per hub handler (8 handlers: 4,000 in all) in the normal run; ``--fuzz-long``: 100,000 each."""
EDGE_EXAMPLES = 750
"""Per edge handler (2 handlers: 1,500 in all)."""
EDGE_ID = "amb-7"


def _escaped(record: logging.LogRecord) -> str | None:
    """``Type: message`` of the exception a record carries, if any."""
    if record.exc_info is None or record.exc_info[1] is None:
        return None
    return f"{type(record.exc_info[1]).__name__}: {record.exc_info[1]}"


def _is_failure(record: logging.LogRecord) -> bool:
    """An exception that escaped (logged with its traceback), or any error of
    the messaging layer; deliberate ERROR lines (a dead letter, an image that
    failed verification) are outcomes, not failures."""
    return _escaped(record) is not None or (
        record.levelno >= logging.ERROR and record.name.startswith("shared.mqtt"))


@dataclass
class Arena:
    """A hub (in-memory broker, SQLite), the ambulances and ERs that talk to it,
    and one real edge agent."""

    world: World
    agent: EdgeAgent
    hospitals: list[str]
    hub_cases: list[str]
    edge_cases: list[str]


def _chest_png(path: Path, seed: int) -> Path:
    Image.fromarray(chest_like(256, seed=seed)).save(path)
    return path


@pytest.fixture(scope="module")
def arena(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Arena]:
    folder = tmp_path_factory.mktemp("fuzz-hub")
    with pytest.MonkeyPatch.context() as patch:
        # Messages for unknown cases wait ~3 s for their diagnosis, transient
        # database errors ~8 s: the same code paths, without the waiting.
        patch.setattr(handlers, "CASE_WAIT_DELAYS_S", (0.0,))
        patch.setattr(handlers, "RETRY_DELAYS_S", (0.0,))
        world = World(folder)
        with Session(world.hub.engine) as session:
            hospitals = sorted(h.id for h in session.exec(select(Hospital)).all())
        hub_cases = [f"20260101T0000{i:02d}Z-0000ca{i:02d}" for i in range(12)]
        for case_id in hub_cases:
            world.send_case(case_id)
        agent = EdgeAgent(load_edge_settings(ambulance_id=EDGE_ID),
                          communicator=InMemoryCommunicator(world.broker), announce=False)
        agent.start()
        edge_cases = [agent.submit(_chest_png(folder / f"x{i}.png", i)).case_id for i in range(3)]
        yield Arena(world, agent, hospitals, hub_cases, edge_cases)
        agent.stop()
        world.hub.stop()


def _case_ids(known: Sequence[str]) -> st.SearchStrategy[str]:
    return st.one_of(st.sampled_from(list(known)), st.builds(new_case_id), valid_ids)


def _ambulances(*known: str) -> st.SearchStrategy[str]:
    return st.one_of(st.sampled_from(list(known)), valid_ids)


def _diagnoses(ids: dict[str, str]) -> list[Payload]:
    full = samples.diagnosis(ambulance_id=ids["ambulance_id"])
    return [full, full.model_copy(update={"patient": None, "vitals": None, "regions": []})]


def _decisions(ids: dict[str, str]) -> list[Payload]:
    hospital = ids["hospital_id"]
    return [ErDecisionV1(hospital_id=hospital, decision="accept", decided_by="Dr F"),
            ErDecisionV1(hospital_id=hospital, decision="decline", decided_by="Dr F",
                         reason="fuzz: no beds")]


def _updates(ids: dict[str, str]) -> list[Payload]:
    amb = ids["ambulance_id"]
    return [CaseUpdateV1(ambulance_id=amb, action="cancel", reason="fuzz"),
            CaseUpdateV1(ambulance_id=amb, action="divert", reason="fuzz"),
            CaseUpdateV1(ambulance_id=amb, action="patient",
                         patient=Patient(age_years=40, sex="M", name="Fuzz")),
            CaseUpdateV1(ambulance_id=amb, action="vitals", vitals=samples.VITALS),
            CaseUpdateV1(ambulance_id=amb, action="handover", handover={"A": "40", "M": "fall"})]


IMAGE = bytes(range(256)) * 3


def _chunks(ids: dict[str, str]) -> list[Payload]:
    """The three chunks of one small image, each valid."""
    parts = [IMAGE[i:i + 256] for i in range(0, len(IMAGE), 256)]
    return [ImageChunkV1(ambulance_id=ids["ambulance_id"],
                         image_sha256=hashlib.sha256(IMAGE).hexdigest(), media_type="image/png",
                         total_bytes=len(IMAGE), index=index, count=len(parts),
                         sha256=hashlib.sha256(part).hexdigest(), data=part)
            for index, part in enumerate(parts)]


def _case_decisions(ids: dict[str, str]) -> list[Payload]:
    return [CaseDecisionV1(status="accepted", hospital_id="bos-mgh", hospital_name="MGH",
                           destination=Position(lat=42.36, lon=-71.07), distance_km=3.2,
                           eta_min=4.5, message="MGH accepts"),
            CaseDecisionV1(status="no_er_available", message="none")]


def _case_statuses(ids: dict[str, str]) -> list[Payload]:
    offer = OfferSummary(hospital_id="bos-mgh", hospital_name="MGH", state="open", eta_min=4.5)
    return [CaseStatusV1(state="offered", offers=[offer] * 3, message="Offered to 3 ER(s)."),
            CaseStatusV1(state="cancelled", message="cancelled")]


def _hub_family(key: str, arena: Arena) -> Family:
    hospitals = st.one_of(st.sampled_from(arena.hospitals), valid_ids)
    cases = _case_ids(arena.hub_cases)
    amb = _ambulances("amb-1", EDGE_ID)
    families = {
        "case_diagnosis": Family(topics.CASE_DIAGNOSIS, _diagnoses,
                                 {"ambulance_id": amb, "case_id": cases}),
        "er_decision": Family(topics.ER_DECISION, _decisions,
                              {"hospital_id": hospitals, "case_id": cases}),
        "case_update": Family(topics.CASE_UPDATE, _updates, {"ambulance_id": amb, "case_id": cases}),
        "case_image": Family(topics.CASE_IMAGE, _chunks, {"ambulance_id": amb, "case_id": cases}),
        "ambulance_position": Family(
            topics.AMBULANCE_POSITION,
            lambda ids: [PositionV1(position=Position(lat=42.35, lon=-71.06), speed_kmh=40.0,
                                    heading_deg=90.0),
                         PositionV1(position=Position(lat=-90, lon=180))],
            {"ambulance_id": amb}),
        "ambulance_status": Family(
            topics.AMBULANCE_STATUS,
            lambda ids: [StatusV1(role="edge", state=state, software_version="0.1.0")
                         for state in ("online", "offline")],
            {"ambulance_id": amb}),
        "ambulance_intake": Family(
            topics.AMBULANCE_INTAKE,
            lambda ids: [IntakeV1(since=samples.T0, models=[ModelIntake(
                model_name="chest", model_version="1.0", diagnosed=9, refused_not_chest=1,
                refused_unreadable=0)]), IntakeV1(since=samples.T0, models=[])],
            {"ambulance_id": amb}),
        "er_capacity": Family(
            topics.ER_CAPACITY,
            lambda ids: [CapacityV1(er_beds_free=3, icu_beds_free=1),
                         CapacityV1(er_beds_free=0, icu_beds_free=0, accepting=False)],
            {"hospital_id": hospitals}),
    }
    return families[key]


def _edge_family(key: str, arena: Arena) -> Family:
    ids = {"ambulance_id": st.one_of(st.just(EDGE_ID), valid_ids),
           "case_id": _case_ids(arena.edge_cases)}
    bases = {"case_decision": (topics.CASE_DECISION, _case_decisions),
             "case_status": (topics.CASE_STATUS, _case_statuses)}
    spec, base = bases[key]
    return Family(spec, base, ids)


HUB_SPECS = [topics.CASE_DIAGNOSIS, topics.ER_DECISION, topics.CASE_UPDATE, topics.CASE_IMAGE,
             topics.AMBULANCE_POSITION, topics.AMBULANCE_STATUS, topics.AMBULANCE_INTAKE,
             topics.ER_CAPACITY]
EDGE_SPECS = [topics.CASE_DECISION, topics.CASE_STATUS]


def _subscribed(communicator: object, spec: topics.TopicSpec) -> bool:
    """Whether the in-memory client has a subscription for ``spec``'s topics."""
    filters = getattr(communicator, "_subscriptions", {})
    return any(strip_share(f) == spec.subscription() for f in filters)


def _outcome(messenger: Messenger, rejected_before: int, records: list[logging.LogRecord]) -> str:
    messages = {r.getMessage() for r in records}
    if any(_escaped(r) for r in records):
        return "known bug"
    if sum(messenger.rejected.values()) > rejected_before:
        return "rejected"
    if "message dead-lettered" in messages:
        return "dead letter"
    if "message not applied" in messages:
        return "not applied"
    return "applied"


def _fuzz(arena: Arena, family: Family, receiver: Messenger, publisher: InMemoryCommunicator,
          other_specs: list[topics.TopicSpec], caplog: pytest.LogCaptureFixture,
          examples: int) -> Counter[str]:
    """Publish hostile messages of ``family`` and check each one's outcome."""
    outcomes: Counter[str] = Counter()

    @fuzz_settings(examples)
    @given(message=hostile_messages(family, other_specs=other_specs,
                                    sender_role_ids=[*arena.hospitals[:2], "amb-1", EDGE_ID]))
    def run(message: Hostile) -> None:
        caplog.clear()
        before = sum(receiver.rejected.values())
        publisher.publish(message.topic, message.data, retain=message.retain)
        failures = [r for r in caplog.records if _is_failure(r)]
        assert not failures, (
            f"{message.how} on {message.topic}: "
            + "; ".join(f"{r.name}: {r.getMessage()} {r.exc_text or ''}" for r in failures))
        outcome = _outcome(receiver, before, caplog.records)
        outcomes[outcome] += 1
        event(outcome)

    with caplog.at_level(logging.INFO):
        run()
    if message_retained := [t for t in arena.world.broker.retained if family.spec.match(t)]:
        for topic in message_retained:  # leave no junk for later subscribers
            publisher.publish(topic, b"", retain=True)
    return outcomes


def _assert_hub_still_works(arena: Arena) -> None:
    """A fresh valid case is offered and accepted (or, if the fuzz left every ER
    full, answered with no_er_available); the ambulance hears the decision."""
    world = arena.world
    case_id = new_case_id()
    world.send_case(case_id)
    case = world.case(case_id)
    assert case is not None, "a valid case was not stored after the fuzzing"
    offers = world.offers(case_id)
    if offers:
        world.answer(offers[0].hospital_id, "accept", case_id)
        expected = ("accepted", CaseStatus.ACCEPTED)
    else:
        expected = ("no_er_available", CaseStatus.NO_ER_AVAILABLE)
    case = world.case(case_id)
    assert case is not None and case.status == expected[1]
    heard = [e.payload.status for e in world.decisions if e.case_id == case_id]
    assert heard == [expected[0]]


@pytest.mark.parametrize("key", [s.key for s in HUB_SPECS])
def test_hub_handler_survives_hostile_messages(arena: Arena, key: str,
                                               caplog: pytest.LogCaptureFixture) -> None:
    spec = next(s for s in HUB_SPECS if s.key == key)
    if not _subscribed(arena.world.hub.communicator, spec):
        pytest.skip(f"the hub does not subscribe to {spec.pattern} in this build")
    family = _hub_family(key, arena)
    others = [s for s in HUB_SPECS if s is not spec]
    outcomes = _fuzz(arena, family, arena.world.hub.messenger, arena.world.edge.communicator,
                     others, caplog, HUB_EXAMPLES)
    assert outcomes["rejected"] > 0, outcomes
    assert outcomes["applied"] + outcomes["not applied"] + outcomes["dead letter"] > 0, outcomes
    _assert_hub_still_works(arena)


@pytest.mark.parametrize("key", [s.key for s in EDGE_SPECS])
def test_edge_handler_survives_hostile_messages(arena: Arena, key: str,
                                                caplog: pytest.LogCaptureFixture) -> None:
    family = _edge_family(key, arena)
    hub_side = InMemoryCommunicator(arena.world.broker)
    hub_side.start()
    others = [s for s in EDGE_SPECS if s is not family.spec]
    outcomes = _fuzz(arena, family, arena.agent.messenger, hub_side, others, caplog, EDGE_EXAMPLES)
    assert outcomes["rejected"] > 0 and outcomes["applied"] > 0, outcomes
    # the edge still hears its own case's decision
    case_id = arena.edge_cases[0]
    record = arena.agent.cases[case_id]
    record.done.clear()
    Messenger(hub_side, sender="hub-1").send(
        topics.CASE_DECISION, _case_decisions({})[0], case_id=case_id, ambulance_id=EDGE_ID)
    assert arena.agent.wait_for_decision(case_id, timeout=1).decision == _case_decisions({})[0]
