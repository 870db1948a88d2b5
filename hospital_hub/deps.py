"""The routes' dependencies: the runtime, the database session, the signed-in
user, and who may do what, as ``Annotated`` aliases that a route names as a
parameter's type (``user: CaseReader``).

Every route but ``/health`` and the login page needs a signed-in user (a
session cookie from ``/login``) or a service client's bearer token. The rules
are listed in ``docs/app-security.md`` and checked, route by route, by
``tests/integration/test_auth.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Annotated
from urllib.parse import quote, urlsplit

from fastapi import Depends, HTTPException, Request
from sqlmodel import Session, select

from hospital_hub.auth import SESSION_COOKIE, HubSecurity, Principal
from hospital_hub.models import Case, Offer
from hospital_hub.runtime import HubRuntime

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def get_runtime(request: Request) -> HubRuntime:
    """The hub runtime that this app serves."""
    runtime: HubRuntime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[HubRuntime, Depends(get_runtime)]


def get_security(request: Request) -> HubSecurity:
    """Sessions, the login limiter and the access log of this app."""
    security: HubSecurity = request.app.state.security
    return security


SecurityDep = Annotated[HubSecurity, Depends(get_security)]


def get_session(runtime: RuntimeDep) -> Iterator[Session]:
    """A read session per request."""
    with Session(runtime.engine) as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]


def client_address(request: Request) -> str | None:
    """The client's address, for the access log and the sign-in limit."""
    return request.client.host if request.client else None


def same_origin(request: Request) -> bool:
    """A browser's cross-site form post carries a foreign ``Origin``; refuse it
    (on top of the SameSite=Lax cookie)."""
    origin = request.headers.get("origin")
    if origin is None:
        return True
    return urlsplit(origin).netloc == request.headers.get("host")


def current_user(request: Request, session: SessionDep, security: SecurityDep) -> Principal | None:
    """The signed-in user (bearer token first, else session cookie), or None."""
    user = security.principal(session, request.headers.get("authorization"),
                              request.cookies.get(SESSION_COOKIE))
    session.rollback()  # end the read, so that the route sees the latest data (SQLite snapshots)
    if (user is not None and user.via == "session" and request.method not in SAFE_METHODS
            and not same_origin(request)):
        raise HTTPException(403, "cross-site request refused")
    return user


MaybeUser = Annotated[Principal | None, Depends(current_user)]

# -- who may do what ---------------------------------------------------------------------------
# A user's "kind" is its role, with service clients split into "er_service"
# (bound to a hospital) and "ambulance" (bound to an ambulance).
EVERYONE = ("admin", "dispatcher", "er_doctor", "er_service", "ambulance")
CASE_READERS = ("admin", "dispatcher", "er_doctor", "er_service")
OVERSEERS = ("admin", "dispatcher")
ER_ACTORS = ("admin", "er_doctor", "er_service")
UPDATERS = ("admin", "ambulance")
PAGE_VIEWERS = ("admin", "dispatcher", "er_doctor")
PAGE_DECIDERS = ("admin", "er_doctor")


def api_user(*kinds: str) -> Callable[[Principal | None], Principal]:
    """A dependency: 401 without a user, 403 for a user of another kind."""

    def dependency(user: MaybeUser) -> Principal:
        if user is None:
            raise HTTPException(401, "sign in, or send a service token as 'Authorization: Bearer'",
                                headers={"WWW-Authenticate": "Bearer"})
        if user.kind not in kinds:
            raise HTTPException(403, f"not allowed for the role {user.kind}")
        return user

    return dependency


def page_user(*kinds: str) -> Callable[[Request, Principal | None], Principal]:
    """Like :func:`api_user`, but an anonymous visitor is sent to the login page."""

    def dependency(request: Request, user: MaybeUser) -> Principal:
        if user is None:
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            raise HTTPException(303, "sign in first",
                                headers={"Location": f"/login?next={quote(target, safe='')}"})
        if user.kind not in kinds:
            raise HTTPException(403, f"not allowed for the role {user.kind}")
        return user

    return dependency


AnyUser = Annotated[Principal, Depends(api_user(*EVERYONE))]
CaseReader = Annotated[Principal, Depends(api_user(*CASE_READERS))]
Overseer = Annotated[Principal, Depends(api_user(*OVERSEERS))]
ErActor = Annotated[Principal, Depends(api_user(*ER_ACTORS))]
Updater = Annotated[Principal, Depends(api_user(*UPDATERS))]
PageAnyUser = Annotated[Principal, Depends(page_user(*EVERYONE))]
PageViewer = Annotated[Principal, Depends(page_user(*PAGE_VIEWERS))]
PageDecider = Annotated[Principal, Depends(page_user(*PAGE_DECIDERS))]


# -- a user bound to one hospital sees no other -------------------------------------------------
def own_hospital(user: Principal, hospital_id: str) -> Principal:
    """The user, unless bound to another hospital: 404 then, as if it did not exist."""
    if user.hospital_id is not None and user.hospital_id != hospital_id:
        raise HTTPException(404, f"no hospital {hospital_id}")
    return user


def hospital_reader(hospital_id: str, user: CaseReader) -> Principal:
    """A case reader of this hospital (404 for another ER's)."""
    return own_hospital(user, hospital_id)


def hospital_actor(hospital_id: str, user: ErActor) -> Principal:
    """An ER actor of this hospital (404 for another ER's)."""
    return own_hospital(user, hospital_id)


def page_hospital_viewer(hospital_id: str, user: PageViewer) -> Principal:
    """A page viewer of this hospital (404 for another ER's)."""
    return own_hospital(user, hospital_id)


def page_hospital_decider(hospital_id: str, user: PageDecider) -> Principal:
    """A page decider of this hospital (404 for another ER's)."""
    return own_hospital(user, hospital_id)


HospitalReader = Annotated[Principal, Depends(hospital_reader)]
HospitalActor = Annotated[Principal, Depends(hospital_actor)]
PageHospitalViewer = Annotated[Principal, Depends(page_hospital_viewer)]
PageHospitalDecider = Annotated[Principal, Depends(page_hospital_decider)]


# -- cases ---------------------------------------------------------------------------------------
def can_see_case(session: Session, user: Principal, case: Case) -> bool:
    """Admins and dispatchers see every case; an ER's users only the cases
    offered to their ER; an ambulance only its own."""
    if user.sees_all:
        return True
    if user.ambulance_id is not None:
        return case.ambulance_id == user.ambulance_id
    if user.hospital_id is not None:
        return session.exec(select(Offer.id).where(
            Offer.case_id == case.id, Offer.hospital_id == user.hospital_id)).first() is not None
    return False


def readable_case(case_id: str, user: CaseReader, session: SessionDep) -> Case:
    """The case, if the user may see it; 404 otherwise (existence does not leak)."""
    case = session.get(Case, case_id)
    if case is None or not can_see_case(session, user, case):
        raise HTTPException(404, f"no case {case_id}")
    return case


ReadableCase = Annotated[Case, Depends(readable_case)]


def updatable_case(case_id: str, user: Updater, session: SessionDep) -> Principal:
    """An ambulance updates only its own cases (404 for others); admins any."""
    if user.ambulance_id is not None:
        case = session.get(Case, case_id)
        if case is None or case.ambulance_id != user.ambulance_id:
            raise HTTPException(404, f"no case {case_id}")
    return user


CaseUpdater = Annotated[Principal, Depends(updatable_case)]
