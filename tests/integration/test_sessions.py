"""Sign-in sessions live in the database: two hub workers (two apps served by
real uvicorn servers, on one database) over real HTTP. A copied session
cookie opens nothing once its owner has signed out or changed the password,
on either worker, and the sign-in rate limit counts the failures of both."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import httpx
import pytest
import uvicorn
from sqlmodel import Session, select

from hospital_hub.api import create_app
from hospital_hub.auth import SESSION_COOKIE, create_user
from hospital_hub.models import AccessLog, LoginSession, UserCreate
from hospital_hub.runtime import HubRuntime
from hospital_hub.settings import load_hub_settings
from shared.broker import free_port
from shared.settings import MqttSettings
from tests.services import wait_until

PASSWORD = "a long test password"
MAX_FAILURES = 5


@dataclass
class Worker:
    """One hub worker: its runtime and its address."""

    runtime: HubRuntime
    url: str

    def client(self, local_address: str = "127.0.0.1", cookie: str | None = None) -> httpx.Client:
        """A real HTTP client to this worker, from ``local_address``."""
        cookies = {SESSION_COOKIE: cookie} if cookie else None
        return httpx.Client(base_url=self.url, cookies=cookies, follow_redirects=False,
                            timeout=30, transport=httpx.HTTPTransport(local_address=local_address))


@pytest.fixture
def workers(database_url: str, mqtt_settings: MqttSettings, uid: str) -> Iterator[list[Worker]]:
    """Two hub workers sharing the database, the broker group and the cookie key."""
    servers: list[tuple[uvicorn.Server, threading.Thread]] = []
    found: list[Worker] = []
    try:
        for number in (1, 2):
            runtime = HubRuntime(load_hub_settings(
                hub_id=f"sess{number}-{uid}", database_url=database_url, mqtt=mqtt_settings,
                share_group=f"sess{uid}", secret_key="s" * 32,
                login_max_failures=MAX_FAILURES))
            port = free_port()
            server = uvicorn.Server(uvicorn.Config(create_app(runtime), host="127.0.0.1", port=port,
                                                   log_config=None, access_log=False,
                                                   timeout_graceful_shutdown=1))
            thread = threading.Thread(target=server.run, daemon=True)
            thread.start()
            servers.append((server, thread))
            assert wait_until(lambda s=server: s.started, timeout=30), f"worker {number} did not start"
            found.append(Worker(runtime, f"http://127.0.0.1:{port}"))
        for spec in (UserCreate(username="doc", role="er_doctor", hospital_id="bos-mgh",
                                password=PASSWORD),
                     UserCreate(username="disp", role="dispatcher", password=PASSWORD)):
            create_user(found[0].runtime.engine, spec)
        yield found
    finally:
        for server, thread in servers:
            server.should_exit = True
            thread.join(timeout=15)


def _sign_in(worker: Worker, username: str, password: str = PASSWORD,
             local_address: str = "127.0.0.1") -> httpx.Response:
    with worker.client(local_address) as client:
        return client.post("/login", data={"username": username, "password": password})


def _cookie(response: httpx.Response) -> str:
    assert response.status_code == 303, response.text
    cookie = response.cookies[SESSION_COOKIE]
    assert cookie
    return cookie


def _statuses(workers: list[Worker], cookie: str) -> list[tuple[int, int]]:
    """(ER console, case API) statuses on each worker for a request carrying ``cookie``."""
    found = []
    for worker in workers:
        with worker.client(cookie=cookie) as client:
            found.append((client.get("/er/bos-mgh").status_code,
                          client.get("/api/cases").status_code))
    return found


def test_a_copied_cookie_stops_working_after_sign_out_on_every_worker(
        workers: list[Worker]) -> None:
    first, second = workers
    cookie = _cookie(_sign_in(first, "doc"))
    assert _statuses(workers, cookie) == [(200, 200), (200, 200)]  # one session, both workers
    with Session(first.runtime.engine) as session:
        stored = session.exec(select(LoginSession)).all()
    assert len(stored) == 1 and cookie.split(".")[0] not in stored[0].id_sha256

    with first.client(cookie=cookie) as owner:
        signed_out = owner.post("/logout")
    assert signed_out.status_code == 303 and signed_out.headers["location"] == "/login"
    assert f'{SESSION_COOKIE}=""' in signed_out.headers["set-cookie"]  # the browser's copy goes
    # A copy of the cookie (another browser, a stolen one) opens nothing any more:
    assert _statuses(workers, cookie) == [(303, 401), (303, 401)]
    with second.client(cookie=cookie) as thief:
        page = thief.get("/er/bos-mgh")
    assert page.headers["location"] == "/login?next=%2Fer%2Fbos-mgh"
    with Session(first.runtime.engine) as session:
        assert session.exec(select(LoginSession)).all() == []
        logouts = session.exec(select(AccessLog).where(AccessLog.action == "logout")).all()
    assert [row.username for row in logouts] == ["doc"]

    again = _cookie(_sign_in(second, "doc"))  # signing in again works, with a new cookie
    assert again != cookie and _statuses(workers, again) == [(200, 200), (200, 200)]


def test_a_password_change_ends_every_session_of_that_user(workers: list[Worker]) -> None:
    first, second = workers
    doctor = [_cookie(_sign_in(first, "doc")), _cookie(_sign_in(second, "doc"))]
    dispatcher = _cookie(_sign_in(second, "disp"))
    create_user(first.runtime.engine, UserCreate(username="doc", role="er_doctor",
                                                 hospital_id="bos-mgh", password="a new password!"),
                replace=True)
    for cookie in doctor:
        assert _statuses(workers, cookie) == [(303, 401), (303, 401)]
    with second.client(cookie=dispatcher) as client:
        assert client.get("/api/cases").status_code == 200  # other users stay signed in
    assert _sign_in(second, "doc").status_code == 401  # the old password is refused
    assert _cookie(_sign_in(second, "doc", "a new password!"))


def test_the_sign_in_limit_counts_the_failures_of_every_worker(workers: list[Worker]) -> None:
    for attempt in range(MAX_FAILURES):  # alternating: each worker saw only some of them
        failed = _sign_in(workers[attempt % 2], "doc", "wrong password")
        assert failed.status_code == 401
    for worker in workers:
        refused = _sign_in(worker, "doc")  # even the right password, until the window passes
        assert refused.status_code == 429 and SESSION_COOKIE not in refused.cookies
        assert 0 < int(refused.headers["retry-after"]) <= 300
    # A doctor elsewhere is not locked out by a stranger's guesses.
    assert _cookie(_sign_in(workers[1], "doc", local_address="127.0.0.3"))


def test_simultaneous_guesses_on_both_workers_get_exactly_the_limit(workers: list[Worker]) -> None:
    """Each attempt is counted before the password is checked, under a lock
    that both workers take: a burst spread over them gets ``MAX_FAILURES`` tries."""
    def guess(number: int) -> int:
        return _sign_in(workers[number % 2], "disp", f"guess {number}",
                        local_address="127.0.0.2").status_code

    with ThreadPoolExecutor(max_workers=12) as pool:
        statuses = list(pool.map(guess, range(24)))
    assert statuses.count(401) == MAX_FAILURES and statuses.count(429) == 24 - MAX_FAILURES
