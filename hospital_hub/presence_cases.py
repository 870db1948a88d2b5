"""The offer protocol with the ERs' online status (:mod:`hospital_hub.er_presence`).

An ER whose console or gateway is offline is left out when ERs are ranked for
new offers (first offers, after a decline or expiry, after a divert, on
dispatch's re-offer), without counting as asked: once it is back it can be
offered the case. After the grace period, its open offers are withdrawn (it
is told, should it come back) and each case is offered to the next ER.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlmodel import Session, col, select

from hospital_hub import messages
from hospital_hub.db import session_scope
from hospital_hub.er_presence import ErPresence
from hospital_hub.metrics import MeasuredCaseService
from hospital_hub.models import Case, CaseStatus, Hospital, Offer, OfferState, utcnow
from hospital_hub.ranking import Site

logger = logging.getLogger(__name__)

OFFLINE_WHY = "Offer withdrawn: the ER's console went offline."


class PresenceAwareCaseService(MeasuredCaseService):
    """A :class:`~hospital_hub.metrics.MeasuredCaseService` that ranks offline ERs out."""

    def __init__(self, *args: Any, presence: ErPresence, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.presence = presence

    def _sites(self, session: Session, exclude: set[str]) -> tuple[list[Site], list[Hospital]]:
        offline = self.presence.offline()
        return super()._sites(session, exclude | offline if offline else exclude)

    def pass_offers_of(self, hospital_ids: set[str]) -> int:
        """Withdraw the open offers of these (offline) ERs and offer each case to
        the next ER; returns how many offers were passed on."""
        if not hospital_ids:
            return 0
        with Session(self._engine) as session:
            case_ids = set(session.exec(select(Offer.case_id).where(
                Offer.state == OfferState.OPEN, col(Offer.hospital_id).in_(hospital_ids))).all())
        passed = 0
        for case_id in sorted(case_ids):
            with session_scope(self._engine) as session:
                case = self._lock_case(session, case_id)
                if case is None:
                    continue
                passed += self._pass(session, case, hospital_ids)
        if passed:
            logger.warning("offers of offline ERs passed on",
                           extra={"offers": passed, "hospitals": sorted(hospital_ids)})
        return passed

    def _pass(self, session: Session, case: Case, hospital_ids: set[str]) -> int:
        gone = [o for o in self._open_offers(session, case.id) if o.hospital_id in hospital_ids]
        now = utcnow()
        for offer in gone:
            offer.state, offer.decided_at = OfferState.WITHDRAWN, now
            session.add(offer)
            messages.offer_withdrawn(session, self._sender, case, offer, OFFLINE_WHY)
            self._event(session, case, "withdrawn_offline", self._sender,
                        hospital_id=offer.hospital_id)
        if gone and case.status == CaseStatus.OFFERED:
            added = self._top_up(session, case, actor=self._sender)
            self._status(session, case, f"{', '.join(o.hospital_id for o in gone)} offline"
                         + (f"; offered to {', '.join(added)}" if added else ""))
        return len(gone)
