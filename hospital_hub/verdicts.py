"""The ER's verdict on a case's AI diagnosis: stored with the model it judges,
written to the case's audit trail in the same transaction.

Which findings the AI suspected is read from the stored diagnosis (probability
at or above the threshold it was sent with), never from the client.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from hospital_hub.cases import lock_case, record_event
from hospital_hub.db import session_scope
from hospital_hub.models import Case, CaseDiagnosis, utcnow
from hospital_hub.verdict_models import (
    Judgement,
    Verdict,
    VerdictCreate,
    VerdictPublic,
    all_judgements,
)
from shared.errors import CaseError, NotFound
from shared.findings import FINDINGS

logger = logging.getLogger(__name__)


def suspected_findings(payload: dict[str, Any]) -> list[str]:
    """The findings a stored diagnosis payload suspected, in canonical order."""
    found = set()
    for score in payload.get("findings", []):
        try:
            if float(score["probability"]) >= float(score["threshold"]):
                found.add(str(score["finding"]))
        except (KeyError, TypeError, ValueError):
            continue
    return [str(f) for f in FINDINGS if str(f) in found]


def is_complete(judgements: dict[str, str]) -> bool:
    """Every one of the 14 findings was judged."""
    return all(judgements.get(str(f), Judgement.NOT_ASSESSED) != Judgement.NOT_ASSESSED
               for f in FINDINGS)


def public(verdict: Verdict) -> VerdictPublic:
    """A stored verdict as the API shows it."""
    return VerdictPublic.model_validate({**verdict.model_dump(),
                                         "complete": is_complete(verdict.judgements)})


def latest_diagnosis(session: Session, case_id: str) -> CaseDiagnosis | None:
    """The diagnosis a verdict given now judges: the case's latest."""
    return session.exec(select(CaseDiagnosis).where(CaseDiagnosis.case_id == case_id)
                        .order_by(col(CaseDiagnosis.id).desc())).first()


def find_verdict(session: Session, diagnosis_id: int, hospital_id: str | None) -> Verdict | None:
    """This ER's (None: an admin's) verdict on a diagnosis, if any."""
    where = (col(Verdict.hospital_id).is_(None) if hospital_id is None
             else Verdict.hospital_id == hospital_id)
    return session.exec(select(Verdict).where(Verdict.diagnosis_id == diagnosis_id, where)).first()


def case_verdicts(session: Session, case_id: str, hospital_id: str | None = None) -> list[Verdict]:
    """The case's verdicts, newest first (``hospital_id``: only that ER's)."""
    query = select(Verdict).where(Verdict.case_id == case_id)
    if hospital_id is not None:
        query = query.where(Verdict.hospital_id == hospital_id)
    return list(session.exec(query.order_by(col(Verdict.updated_at).desc())).all())


@dataclass(frozen=True)
class FormRow:
    """One finding's line in the verdict form."""

    finding: str
    probability: float
    threshold: float
    suspected: bool
    top3: bool
    judgement: str


def form_rows(diagnosis: CaseDiagnosis, verdict: Verdict | None) -> list[FormRow]:
    """The 14 findings for the form: suspected first, then the other top-3, then
    by probability; each with the ER's earlier judgement, if any."""
    payload = diagnosis.payload
    suspected = set(suspected_findings(payload))
    top3 = {str(f) for f in payload.get("top3", [])}
    judged = verdict.judgements if verdict is not None else {}
    rows = [FormRow(finding=str(s["finding"]), probability=float(s["probability"]),
                    threshold=float(s["threshold"]), suspected=str(s["finding"]) in suspected,
                    top3=str(s["finding"]) in top3,
                    judgement=judged.get(str(s["finding"]), Judgement.NOT_ASSESSED.value))
            for s in payload.get("findings", [])]
    return sorted(rows, key=lambda r: (not r.suspected, not r.top3, -r.probability))


def record_verdict(engine: Engine, case_id: str, body: VerdictCreate, *, judged_by: str,
                   hospital_id: str | None) -> VerdictPublic:
    """Store (or replace) an ER's verdict on the case's latest diagnosis and
    add a ``verdict`` event to the case's audit trail.

    Raises:
        NotFound: no such case, or the case has no diagnosis.
        CaseError: a finding the AI suspected is in ``added``.
    """
    with session_scope(engine) as session:
        case = lock_case(session, case_id)
        if case is None:
            raise NotFound(f"no case {case_id}")
        diagnosis = latest_diagnosis(session, case_id)
        if diagnosis is None or diagnosis.id is None:
            raise NotFound(f"case {case_id} has no diagnosis to judge")
        suspected = suspected_findings(diagnosis.payload)
        wrongly_added = [str(f) for f in body.added if str(f) in suspected]
        if wrongly_added:
            raise CaseError(f"the AI suspected {', '.join(wrongly_added)}: confirm it instead "
                            "of adding it")
        judgements = all_judgements(body)
        added = [str(f) for f in FINDINGS
                 if judgements[str(f)] == Judgement.REFUTED and str(f) not in suspected]
        verdict = find_verdict(session, diagnosis.id, hospital_id)
        previous = dict(verdict.judgements) if verdict is not None else None
        now = utcnow()
        if verdict is None:
            verdict = Verdict(case_id=case_id, diagnosis_id=diagnosis.id, hospital_id=hospital_id,
                              ambulance_id=case.ambulance_id, model_name=diagnosis.model_name,
                              model_version=diagnosis.model_version,
                              model_sha256=diagnosis.model_sha256, judged_by=judged_by,
                              created_at=now)
        verdict.suspected, verdict.judgements, verdict.added = suspected, judgements, added
        verdict.judged_by, verdict.updated_at = judged_by, now
        session.add(verdict)
        _event(session, case, verdict, previous)
        session.flush()
        result = public(verdict)
    logger.info("verdict recorded", extra={"case_id": case_id, "hospital_id": hospital_id,
                                           "diagnosis_id": result.diagnosis_id,
                                           "complete": result.complete})
    return result


def _event(session: Session, case: Case, verdict: Verdict, previous: dict[str, str] | None) -> None:
    counts = {j.value: sum(1 for v in verdict.judgements.values() if v == j) for j in Judgement}
    record_event(session, case, "verdict", verdict.judged_by, hospital_id=verdict.hospital_id,
                 diagnosis_id=verdict.diagnosis_id,
                 model=f"{verdict.model_name} {verdict.model_version}",
                 model_sha256=verdict.model_sha256, judgements=verdict.judgements,
                 added=verdict.added, counts=counts, replaced=previous)
