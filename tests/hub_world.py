"""A hub over an in-memory broker and a real SQLite file, with an ambulance's
messenger: the ``world`` fixture (tests/conftest.py) of the hub's logic tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlmodel import Session, select

from hospital_hub.models import Case, Offer
from hospital_hub.runtime import HubRuntime
from hospital_hub.settings import load_hub_settings
from shared import topics
from shared.messages import Envelope, ErDecisionV1, decode
from shared.mqtt import InMemoryBroker, InMemoryCommunicator, Messenger
from tests import samples


class World:
    """A hub, an ambulance's messenger and a view of what was published."""

    def __init__(self, tmp_path: Path) -> None:
        self.broker = InMemoryBroker()
        settings = load_hub_settings(database_url=f"sqlite:///{tmp_path / 'hub.db'}",
                                     maintenance_interval_s=3600, offer_count=3)
        self.hub = HubRuntime(settings, communicator=InMemoryCommunicator(self.broker))
        self.hub.start()
        self.edge = Messenger(InMemoryCommunicator(self.broker), sender="amb-1")
        self.edge.communicator.start()
        self.decisions: list[Envelope[Any]] = []
        self.edge.on(topics.CASE_DECISION, lambda e, _: self.decisions.append(e),
                     ambulance_id="amb-1")

    def send_case(self, case_id: str = samples.CASE_ID) -> Envelope[Any]:
        return self.edge.send(topics.CASE_DIAGNOSIS, samples.diagnosis(), case_id=case_id,
                              ambulance_id="amb-1")

    def er(self, hospital_id: str) -> Messenger:
        messenger = Messenger(InMemoryCommunicator(self.broker), sender=hospital_id)
        messenger.communicator.start()
        return messenger

    def answer(self, hospital_id: str, decision: str, case_id: str = samples.CASE_ID) -> None:
        self.er(hospital_id).send(
            topics.ER_DECISION,
            ErDecisionV1(hospital_id=hospital_id, decision=decision, decided_by="Dr T",
                         reason="test: full" if decision == "decline" else None),
            case_id=case_id, hospital_id=hospital_id)

    def offers(self, case_id: str = samples.CASE_ID) -> list[Offer]:
        with Session(self.hub.engine) as session:
            return list(session.exec(select(Offer).where(Offer.case_id == case_id)
                                     .order_by(Offer.rank)).all())

    def case(self, case_id: str = samples.CASE_ID) -> Case | None:
        with Session(self.hub.engine) as session:
            return session.get(Case, case_id)

    def published(self, spec: topics.TopicSpec) -> list[tuple[str, Any]]:
        return [(topic, decode(data).payload) for topic, data, _ in self.broker.published
                if spec.match(topic) is not None]
