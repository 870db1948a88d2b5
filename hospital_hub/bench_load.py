"""The load of ``goldenhour bench hub``: cases, positions, simulated ERs and ambulances.

Each runs in its own process on raw paho clients (no pydantic on the hot path),
so the load generators take as little of the machine as they can. Every event
is stamped with the wall clock, which all processes share.
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgpack
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from shared import topics
from shared.ids import new_case_id

AMBULANCES_WITH_CASES = 200
"""Cases come from this many ambulances in turn."""


def raw_client(settings: dict[str, Any], name: str,
               on_message: Any = None, subscribe: str | None = None) -> mqtt.Client:
    """A connected paho client (MQTT 5, clean start) with its network loop running."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-{name}-{os.getpid()}",
                         protocol=MQTTProtocolVersion.MQTTv5)
    client.max_queued_messages_set(0)
    client.max_inflight_messages_set(1000)
    connected = threading.Event()

    def on_connect(client: mqtt.Client, userdata: Any, flags: Any, reason: Any,
                   properties: Any) -> None:
        if subscribe:
            client.subscribe(subscribe, qos=1)
        connected.set()

    client.on_connect = on_connect
    if on_message is not None:
        client.on_message = on_message
    client.connect(settings["host"], settings["port"], 30, clean_start=True)
    client.loop_start()
    if not connected.wait(30):
        raise RuntimeError(f"bench client {name} could not connect")
    return client


def stop_client(client: mqtt.Client, drain_s: float = 10.0) -> None:
    """Wait (up to ``drain_s``) for unacknowledged publishes, then disconnect."""
    deadline = time.time() + drain_s
    # paho has no public count of what it has not written or had acknowledged yet
    while (client._out_messages or client._out_packet) and time.time() < deadline:  # noqa: SLF001
        time.sleep(0.05)
    client.disconnect()
    client.loop_stop()


def sample_diagnosis(ambulance_id: str) -> dict[str, Any]:
    """The payload of a realistic diagnosis (about 8 KB with its thumbnail)."""
    from shared.findings import FINDINGS
    from shared.messages import DiagnosisV1, FindingScore, ImageInfo, ModelInfo, Position, Triage

    probabilities = [0.05 * (i + 1) for i in range(len(FINDINGS))]
    diagnosis = DiagnosisV1(
        ambulance_id=ambulance_id, captured_at=datetime.now(UTC),
        position=Position(lat=42.35, lon=-71.06),
        image=ImageInfo(source="bench.dcm", format="dicom", width=2048, height=2048,
                        sha256="ab" * 32, thumbnail_jpeg=b"\xff\xd8" + os.urandom(8000)),
        model=ModelInfo(name="placeholder-not-a-model", version="0", placeholder=True),
        findings=[FindingScore(finding=f, probability=p, threshold=0.5)
                  for f, p in zip(FINDINGS, probabilities, strict=True)],
        top3=[FINDINGS[13], FINDINGS[12], FINDINGS[11]],
        triage=Triage(level=2, label="emergent", reasons=["bench"]),
    )
    return diagnosis.model_dump(mode="python", exclude_none=True)


def wire(schema: str, case_id: str | None, sender: str, payload: dict[str, Any]) -> bytes:
    """Pack an envelope directly (the load generator must not be the bottleneck)."""
    return msgpack.packb({"schema": schema, "version": 1, "message_id": uuid.uuid4().bytes,
                          "case_id": case_id, "sender": sender,
                          "sent_at": datetime.now(UTC), "payload": payload},
                         datetime=True, use_bin_type=True)


def _paced(rate: float, duration: float, send: Any) -> tuple[int, float]:
    """Call ``send(n)`` ``rate`` times a second for ``duration`` seconds."""
    start, number = time.time(), 0
    while (now := time.time()) - start < duration:
        due = int((now - start) * rate)
        while number < due:
            send(number)
            number += 1
        time.sleep(0.002)
    return number, time.time() - start


def publish_cases(settings: dict[str, Any], rate: float, duration: float, out: str,
                  ready: Any, go: Any) -> None:
    """Publish diagnoses at ``rate`` per second (QoS 1); record when each was sent.
    Connects, sets ``ready`` and starts when ``go`` is set."""
    client = raw_client(settings, "cases")
    ambulances = [f"amb-{n:04d}" for n in range(AMBULANCES_WITH_CASES)]
    template = sample_diagnosis(ambulances[0])
    sent: dict[str, float] = {}

    def send(number: int) -> None:
        ambulance = ambulances[number % len(ambulances)]
        case_id = new_case_id()
        data = wire("diagnosis", case_id, ambulance, {**template, "ambulance_id": ambulance})
        sent[case_id] = time.time()
        client.publish(topics.CASE_DIAGNOSIS.topic(ambulance_id=ambulance, case_id=case_id),
                       data, qos=1)

    ready.set()
    go.wait()
    _, seconds = _paced(rate, duration, send)
    stop_client(client)
    Path(out).write_text(json.dumps({"sent": sent, "seconds": seconds}))


def publish_positions(settings: dict[str, Any], rate: float, duration: float,
                      ambulances: int, out: str, ready: Any, go: Any) -> None:
    """Publish positions of ``ambulances`` ambulances at ``rate`` per second, QoS 0.
    Connects, sets ``ready`` and starts when ``go`` is set."""
    client = raw_client(settings, "positions")
    names = [f"amb-{n:04d}" for n in range(ambulances)]
    spec_topics = [topics.AMBULANCE_POSITION.topic(ambulance_id=name) for name in names]

    def send(count: int) -> None:
        index = count % ambulances
        payload = {"position": {"lat": 42.30 + (count % 97) / 1000,
                                "lon": -71.10 + (count % 89) / 1000}}
        client.publish(spec_topics[index], wire("position", None, names[index], payload), qos=0)

    ready.set()
    go.wait()
    count, seconds = _paced(rate, duration, send) if rate > 0 else (0, duration)
    if rate <= 0:
        time.sleep(duration)
    stop_client(client)
    Path(out).write_text(json.dumps({"count": count, "seconds": seconds}))


def answer_offers(settings: dict[str, Any], ready: Any, control: Any) -> None:
    """Simulated ERs: record every offer; accept the first-ranked one at once.

    ``control`` is a pipe: each ``"take"`` answers with the offers and accepts
    recorded since the last one; ``"stop"`` ends the process.
    """
    lock = threading.Lock()
    offers: list[tuple[str, str, str, int, float]] = []
    accepts: dict[str, float] = {}
    client: mqtt.Client | None = None

    def on_offer(client_: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        received = time.time()
        envelope = msgpack.unpackb(message.payload, timestamp=3)
        offer, case_id = envelope["payload"], envelope["case_id"]
        hospital, state, rank = offer["hospital_id"], offer["state"], offer["rank"]
        with lock:
            offers.append((case_id, hospital, state, rank, received))
        if state == "open" and rank == 1:
            decision = wire("er_decision", case_id, hospital,
                            {"hospital_id": hospital, "decision": "accept", "decided_by": "bench"})
            with lock:
                accepts[case_id] = time.time()
            client_.publish(topics.ER_DECISION.topic(hospital_id=hospital, case_id=case_id),
                            decision, qos=1)

    client = raw_client(settings, "ers", on_offer, topics.ER_OFFER.subscription())
    ready.set()
    while (command := control.recv()) != "stop":
        if command == "take":
            with lock:
                taken = {"offers": list(offers), "accepts": dict(accepts)}
                offers.clear()
                accepts.clear()
            control.send(taken)
    stop_client(client)


class AmbulanceWatcher:
    """The ambulances' side: when each case's decision arrives (in the bench process)."""

    def __init__(self, settings: dict[str, Any]) -> None:
        self._lock = threading.Lock()
        self.decisions: dict[str, tuple[str, float]] = {}
        self._client = raw_client(settings, "ambulances", self._on_decision,
                                  topics.CASE_DECISION.subscription())

    def _on_decision(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        received = time.time()
        envelope = msgpack.unpackb(message.payload, timestamp=3)
        with self._lock:
            # The first decision of a case counts; a later duplicate changes nothing.
            self.decisions.setdefault(envelope["case_id"], (envelope["payload"]["status"], received))

    def done(self, case_ids: set[str]) -> int:
        """How many of ``case_ids`` have their decision."""
        with self._lock:
            return sum(1 for c in case_ids if c in self.decisions)

    def snapshot(self) -> dict[str, tuple[str, float]]:
        with self._lock:
            return dict(self.decisions)

    def stop(self) -> None:
        stop_client(self._client, drain_s=0)
