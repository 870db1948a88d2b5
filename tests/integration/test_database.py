"""Schema migrations and first-accept-wins under real concurrency, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlmodel import Session, SQLModel, select

from hospital_hub.cases import CaseService
from hospital_hub.db import make_engine, migrate
from hospital_hub.models import Case, CaseStatus, Offer, OfferState, OutboxMessage
from hospital_hub.registry import import_registry
from hospital_hub.settings import SAMPLE_REGISTRY, load_hub_settings
from shared import topics
from shared.messages import Envelope
from tests import samples


def test_migrations_build_exactly_the_models(database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        migrate(engine)
        migrate(engine)  # idempotent
        with engine.connect() as connection:
            diff = compare_metadata(MigrationContext.configure(connection), SQLModel.metadata)
        assert diff == []
    finally:
        engine.dispose()


def test_simultaneous_accepts_have_exactly_one_winner(database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        migrate(engine)
        import_registry(engine, SAMPLE_REGISTRY)
        service = CaseService(engine, load_hub_settings(offer_count=6, database_url=database_url))
        envelope = Envelope.wrap(samples.diagnosis(), sender="amb-1", case_id=samples.CASE_ID)
        assert service.receive_diagnosis(envelope)
        with Session(engine) as session:
            hospitals = [o.hospital_id for o in session.exec(select(Offer)).all()]
        assert len(hospitals) == 6
        barrier = threading.Barrier(len(hospitals))
        outcomes: dict[str, str] = {}

        def accept(hospital_id: str) -> None:
            barrier.wait()
            outcomes[hospital_id] = service.decide(samples.CASE_ID, hospital_id, "accept",
                                                   decided_by="race").outcome

        threads = [threading.Thread(target=accept, args=(h,)) for h in hospitals]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        winners = [h for h, outcome in outcomes.items() if outcome == "accepted"]
        assert len(outcomes) == 6 and len(winners) == 1
        assert set(outcomes.values()) <= {"accepted", "already_placed"}
        with Session(engine) as session:
            case = session.get(Case, samples.CASE_ID)
            states = [o.state for o in session.exec(select(Offer)).all()]
            decisions = [m for m in session.exec(select(OutboxMessage)).all()
                         if topics.CASE_DECISION.match(m.topic)]
        assert case is not None and case.status == CaseStatus.ACCEPTED
        assert case.accepted_hospital_id == winners[0]
        assert states.count(OfferState.ACCEPTED) == 1
        assert states.count(OfferState.WITHDRAWN) == 5
        assert len(decisions) == 1
    finally:
        engine.dispose()


def test_positions_are_coalesced_and_only_newer_ones_stored(database_url: str) -> None:
    from datetime import UTC, datetime, timedelta

    from hospital_hub.live import LiveState
    from hospital_hub.models import Ambulance
    from shared.messages import Position

    engine = make_engine(database_url)
    try:
        migrate(engine)
        live = LiveState(engine)
        t0 = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
        for n in range(5):
            live.ambulance_position("amb-1", Position(lat=42 + n, lon=-71), t0 + timedelta(seconds=n))
        live.ambulance_position("amb-2", Position(lat=1, lon=1), t0)
        assert live.flush_positions() == 2
        live.ambulance_position("amb-1", Position(lat=0, lon=0), t0)  # older than stored
        live.flush_positions()
        with Session(engine) as session:
            amb1 = session.get(Ambulance, "amb-1")
            assert amb1 is not None and amb1.lat == 46 and amb1.position_at == t0 + timedelta(seconds=4)
            assert session.get(Ambulance, "amb-2") is not None
    finally:
        engine.dispose()
