"""What an ER does on the hub, the same from the JSON API and from the
console's forms: decide an offer, set its free beds. Each action is applied by
the service layer (the same as for MQTT), recorded in the access log, and the
messages it caused are sent at once.

The rules are checked once, by the service layer: "a decline needs a reason"
by :meth:`CaseService.decide <hospital_hub.cases.CaseService.decide>` (a
:class:`CaseError`), free beds against the registry by
:meth:`LiveState.set_capacity <hospital_hub.live.LiveState.set_capacity>` (a
:class:`CapacityError`). The callers only say how a refusal looks: 422 for the
API, the console's error message for a form.
"""

from __future__ import annotations

from typing import Literal

from hospital_hub.auth import HubSecurity, Principal
from hospital_hub.cases import DecisionResult
from hospital_hub.models import CapacityUpdate
from hospital_hub.runtime import HubRuntime


def decided_by(user: Principal, named: str | None) -> str:
    """Who decided: the signed-in user; an integration (service token) may
    name the clinician, recorded as ``<name> via <client>``."""
    if user.via == "token" and named:
        return f"{named} via {user.username}"[:128]
    return user.username


def decide_offer(runtime: HubRuntime, security: HubSecurity, user: Principal, case_id: str,
                 hospital_id: str, decision: Literal["accept", "decline"], *,
                 reason: str | None = None, named: str | None = None,
                 client: str | None = None) -> DecisionResult:
    """Accept or decline the offer of ``case_id`` to ``hospital_id``; the
    ambulance is told at once. A decision on a closed offer is no error: its
    outcome says ``already_placed`` or ``already_decided``.

    Raises:
        NotFound: the case was not offered to this hospital.
        CaseError: a decline without a reason (nothing is recorded).
    """
    result = runtime.cases.decide(case_id, hospital_id, decision,
                                  decided_by=decided_by(user, named), reason=reason)
    security.access.changed(user, "decision", case_id=case_id, hospital_id=hospital_id,
                            client=client, decision=decision, outcome=result.outcome)
    runtime.outbox.flush()
    return result


def set_capacity(runtime: HubRuntime, security: HubSecurity, user: Principal, hospital_id: str,
                 body: CapacityUpdate, client: str | None = None) -> None:
    """Set an ER's free beds and whether it accepts patients.

    Raises:
        NotFound: no such hospital.
        CapacityError: more free beds than the registry says the ER has.
    """
    runtime.live.set_capacity(hospital_id, er_beds_free=body.er_beds_free,
                              icu_beds_free=body.icu_beds_free, accepting=body.accepting,
                              source="console")
    security.access.changed(user, "capacity", hospital_id=hospital_id, client=client,
                            **body.model_dump())
