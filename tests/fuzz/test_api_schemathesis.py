"""schemathesis against the hub's OpenAPI: the real app over a real Mosquitto
and SQLite. For every operation and generated input: never a 5xx, and every
response conforms to the schema (401 and 403 from the sign-in and role checks
are answers, not failures).

When the hub has sign-in (``hospital_hub/auth.py``), the requests carry an
admin's session cookie, so they reach the routes' own validation.
"""

from __future__ import annotations

import importlib.util
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given

from hospital_hub.api import create_app
from hospital_hub.runtime import HubRuntime
from hospital_hub.settings import load_hub_settings
from shared.broker import MosquittoBroker
from tests.fuzz.budget import fuzz_settings

EXAMPLES_PER_OPERATION = 100
"""Per operation (hypothesis stops earlier for operations with few distinct inputs)."""
PASSWORD = "fuzzing password 1234"
HAS_AUTH = importlib.util.find_spec("hospital_hub.auth") is not None
CHECKS = [schemathesis.checks.not_a_server_error, schemathesis.checks.response_schema_conformance,
          schemathesis.checks.content_type_conformance]


def _sign_in(app: Any, runtime: HubRuntime) -> dict[str, str]:
    """An admin's session cookie as a header, when the hub has sign-in."""
    if not HAS_AUTH:
        return {}
    from hospital_hub.auth import SESSION_COOKIE, create_user
    from hospital_hub.models import UserCreate

    create_user(runtime.engine, UserCreate(username="fuzz-admin", role="admin", password=PASSWORD))
    with TestClient(app) as client:
        response = client.post("/login", data={"username": "fuzz-admin", "password": PASSWORD},
                               follow_redirects=False)
    assert response.status_code == 303, response.text
    return {"Cookie": f"{SESSION_COOKIE}={response.cookies[SESSION_COOKIE]}"}


@pytest.fixture(scope="module")
def hub(mosquitto: MosquittoBroker, tmp_path_factory: pytest.TempPathFactory
        ) -> Iterator[tuple[Any, dict[str, str]]]:
    folder: Path = tmp_path_factory.mktemp("fuzz-api")
    runtime = HubRuntime(load_hub_settings(
        hub_id="fuzz-api", database_url=f"sqlite:///{folder / 'hub.db'}",
        mqtt=mosquitto.mqtt_settings(publish_timeout_s=5.0, connect_timeout_s=5.0)))
    # schemathesis opens a test client per request: the runtime is started once, here
    app = create_app(runtime, manage_runtime=False)
    runtime.start()
    try:
        yield app, _sign_in(app, runtime)
    finally:
        runtime.stop()


@pytest.fixture(scope="module")
def hub_schema(hub: tuple[Any, dict[str, str]]) -> Any:
    app, headers = hub
    schema = schemathesis.openapi.from_dict(app.openapi())
    schema.app = app
    return schema


@pytest.fixture(scope="module")
def auth_headers(hub: tuple[Any, dict[str, str]]) -> dict[str, str]:
    return hub[1]


def test_no_server_errors_and_responses_match_the_schema(
        hub_schema: Any, auth_headers: dict[str, str]) -> None:
    operations = [result.ok() for result in hub_schema.get_all_operations()]
    assert len(operations) >= 10, "the hub's schema lost its operations"
    statuses: Counter[int] = Counter()
    for operation in operations:

        @fuzz_settings(EXAMPLES_PER_OPERATION, suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy())
        def run(case: Any) -> None:
            response = case.call(headers={**(case.headers or {}), **auth_headers})
            statuses[response.status_code] += 1
            if response.status_code in (401, 403):
                return  # the sign-in and role checks answered
            case.validate_response(response, checks=CHECKS)

        run()
    answered = sum(n for status, n in statuses.items() if status not in (401, 403))
    assert answered > len(operations), f"nearly every request was refused: {dict(statuses)}"
