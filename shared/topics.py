"""The MQTT topic contract: every topic, its payload schema, QoS and retain flag.

The major version of the contract is part of every topic (``goldenhour/v1/...``),
so a v2 can run beside v1 on one broker during a migration. ``docs/mqtt.md``
documents this table, and a test keeps the two in step.

Events (diagnoses, offers, decisions) are never retained: a retained event
comes back as a ghost case whenever a client subscribes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from shared.errors import TopicMismatch
from shared.ids import is_valid_id
from shared.messages.payloads import (
    CapacityV1,
    CaseDecisionV1,
    CaseStatusV1,
    CaseUpdateV1,
    DiagnosisV1,
    DispatchAlertV1,
    ErDecisionV1,
    ImageChunkV1,
    IntakeV1,
    OfferV1,
    Payload,
    PositionV1,
    StatusV1,
)

ROOT = "goldenhour/v1"


@dataclass(frozen=True)
class TopicSpec:
    """One topic of the contract."""

    key: str
    pattern: str
    """Topic with ``{placeholder}`` levels, relative to nothing (full topic)."""
    payload: type[Payload]
    qos: int
    retain: bool
    publisher: str
    subscriber: str
    description: str

    @property
    def placeholders(self) -> tuple[str, ...]:
        """The placeholder names in level order."""
        return tuple(re.findall(r"\{(\w+)\}", self.pattern))

    def topic(self, **ids: str) -> str:
        """Build a concrete topic; every placeholder must be a valid identifier."""
        if set(ids) != set(self.placeholders):
            raise TopicMismatch(f"{self.key} needs {self.placeholders}, got {sorted(ids)}")
        for name, value in ids.items():
            if not is_valid_id(value):
                raise TopicMismatch(f"{name} {value!r} is not a valid topic identifier")
        return self.pattern.format(**ids)

    def subscription(self, **ids: str) -> str:
        """A subscription filter: given placeholders fixed, the rest ``+``."""
        values = {name: ids.get(name, "+") for name in self.placeholders}
        for name, value in ids.items():
            if name not in values:
                raise TopicMismatch(f"{self.key} has no placeholder {name!r}")
            if not is_valid_id(value):
                raise TopicMismatch(f"{name} {value!r} is not a valid topic identifier")
        return self.pattern.format(**values)

    def match(self, topic: str) -> dict[str, str] | None:
        """Return the placeholder values if ``topic`` is an instance of this spec."""
        levels = topic.split("/")
        parts = self.pattern.split("/")
        if len(levels) != len(parts):
            return None
        values: dict[str, str] = {}
        for level, part in zip(levels, parts, strict=True):
            if part.startswith("{"):
                if not is_valid_id(level):
                    return None
                values[part[1:-1]] = level
            elif part != level:
                return None
        return values


def _spec(key: str, suffix: str, payload: type[Payload], qos: int, retain: bool,
          publisher: str, subscriber: str, description: str) -> TopicSpec:
    return TopicSpec(key, f"{ROOT}/{suffix}", payload, qos, retain, publisher, subscriber,
                     description)


AMBULANCE_STATUS = _spec(
    "ambulance_status", "ambulance/{ambulance_id}/status", StatusV1, 1, True, "edge", "hub",
    "online when connected; the broker publishes the retained last will 'offline' if the "
    "edge vanishes",
)
AMBULANCE_POSITION = _spec(
    "ambulance_position", "ambulance/{ambulance_id}/position", PositionV1, 0, False, "edge",
    "hub", "position every second with an active case, every 20 s otherwise; a lost one is "
    "replaced by the next, and the hub keeps only the newest",
)
AMBULANCE_INTAKE = _spec(
    "ambulance_intake", "ambulance/{ambulance_id}/intake", IntakeV1, 1, True, "edge", "hub",
    "images diagnosed and refused (not a chest X-ray, unusable file) per model, cumulative; "
    "retained, sent when the counts change",
)
CASE_DIAGNOSIS = _spec(
    "case_diagnosis", "ambulance/{ambulance_id}/case/{case_id}/diagnosis", DiagnosisV1, 1,
    False, "edge", "hub", "the AI result of one X-ray, with a thumbnail",
)
CASE_DECISION = _spec(
    "case_decision", "ambulance/{ambulance_id}/case/{case_id}/decision", CaseDecisionV1, 1,
    False, "hub", "edge", "which ER accepted the patient, or that none did",
)
CASE_IMAGE = _spec(
    "case_image", "ambulance/{ambulance_id}/case/{case_id}/image", ImageChunkV1, 1, False,
    "edge", "hub", "the full-resolution image in chunks of at most 256 KiB, after the diagnosis",
)
CASE_UPDATE = _spec(
    "case_update", "ambulance/{ambulance_id}/case/{case_id}/update", CaseUpdateV1, 1, False,
    "edge", "hub", "cancel or divert the case; new patient details, vitals or handover",
)
CASE_STATUS = _spec(
    "case_status", "ambulance/{ambulance_id}/case/{case_id}/status", CaseStatusV1, 1, False,
    "hub", "edge", "the case's state and its offers, after every change",
)
DISPATCH_ALERT = _spec(
    "dispatch_alert", "dispatch/alert/{case_id}", DispatchAlertV1, 1, False, "hub",
    "hub, dispatch", "something that needs a dispatcher: a case no ER accepted, or an "
    "ambulance's AI predictions drifting from the model's validation distribution; the "
    "hub's dispatch board shows them as they come",
)
ER_OFFER = _spec(
    "er_offer", "er/{hospital_id}/offer/{case_id}", OfferV1, 1, False, "hub", "er",
    "a case offered to this ER (state open), or the offer withdrawn",
)
ER_DECISION = _spec(
    "er_decision", "er/{hospital_id}/decision/{case_id}", ErDecisionV1, 1, False, "er", "hub",
    "the ER's accept or decline of an offer",
)
ER_CAPACITY = _spec(
    "er_capacity", "er/{hospital_id}/capacity", CapacityV1, 1, True, "er", "hub",
    "free ER and ICU beds; retained so the hub knows them at start-up",
)
ER_STATUS = _spec(
    "er_status", "er/{hospital_id}/status", StatusV1, 1, True, "er", "hub",
    "online/offline of an ER's console or gateway, with a last will; an offline ER gets no "
    "new offers, and its open ones pass on after a grace",
)
HUB_STATUS = _spec(
    "hub_status", "hub/{hub_id}/status", StatusV1, 1, True, "hub", "edge, er",
    "online/offline of a hub worker, with a last will; the crew page shows the hub's state",
)

TOPICS: tuple[TopicSpec, ...] = (
    AMBULANCE_STATUS,
    AMBULANCE_POSITION,
    AMBULANCE_INTAKE,
    CASE_DIAGNOSIS,
    CASE_DECISION,
    CASE_IMAGE,
    CASE_UPDATE,
    CASE_STATUS,
    DISPATCH_ALERT,
    ER_OFFER,
    ER_DECISION,
    ER_CAPACITY,
    ER_STATUS,
    HUB_STATUS,
)


def shared_subscription(group: str, topic_filter: str) -> str:
    """Wrap a filter as an MQTT 5 shared subscription so hub workers split the load."""
    if not is_valid_id(group):
        raise TopicMismatch(f"share group {group!r} is not a valid identifier")
    return f"$share/{group}/{topic_filter}"


def resolve(topic: str) -> tuple[TopicSpec, dict[str, str]]:
    """Find the spec that ``topic`` belongs to and its placeholder values.

    Raises:
        TopicMismatch: the topic is not part of the contract.
    """
    for spec in TOPICS:
        values = spec.match(topic)
        if values is not None:
            return spec, values
    raise TopicMismatch(f"topic {topic!r} is not part of the goldenhour/v1 contract")
