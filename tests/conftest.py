"""Shared fixtures: a real Mosquitto, a real PostgreSQL, headless Chromium,
the data folder (skipped with a reason when absent) and the hub ``world`` of
the logic tests (:mod:`tests.hub_world`)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from PIL import Image

from shared.broker import MosquittoBroker
from shared.datapaths import ENV_VAR, data_dir
from shared.settings import MqttSettings
from tests.services import (
    create_database,
    drop_database,
    postgres_server,
    require,
    running_mosquitto,
)

if TYPE_CHECKING:
    from tests.hub_world import World

CHROMIUM = Path(os.environ.get("GOLDENHOUR_CHROMIUM", "/usr/bin/chromium"))
PILLOW_OPEN = Image.open
"""Pillow's own ``Image.open``, taken before any test module is collected."""


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("goldenhour")
    group.addoption("--chaos-outage", type=float, default=15.0,
                    help="seconds the chaos suite cuts the ambulance off (several minutes: 180)")
    group.addoption("--chaos-report", default=None,
                    help="write the chaos suite's table of faults and losses to this Markdown file")


@pytest.fixture(scope="session")
def mosquitto() -> Iterator[MosquittoBroker]:
    """One real Mosquitto for the session, on a free loopback port."""
    with running_mosquitto() as broker:
        yield broker


@pytest.fixture
def mqtt_settings(mosquitto: MosquittoBroker) -> MqttSettings:
    """Client settings for the session broker, with short timeouts."""
    return mosquitto.mqtt_settings(publish_timeout_s=5.0, connect_timeout_s=5.0)


@pytest.fixture(autouse=True)
def edge_state_dir(tmp_path_factory: pytest.TempPathFactory,
                   monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every edge agent in a test keeps its outbox in a fresh temporary folder."""
    folder = tmp_path_factory.mktemp("edge-state")
    monkeypatch.setenv("GOLDENHOUR_EDGE_STATE_DIR", str(folder))
    return folder


@pytest.fixture(autouse=True)
def pillow_open_unpatched(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test sees Pillow's own ``Image.open``. Importing ultralytics (the
    detector tests do, at collection) replaces it for the whole process with a
    wrapper that, on an unreadable image, tries to pip-install a HEIF plugin and
    raises ModuleNotFoundError instead of Pillow's UnidentifiedImageError."""
    monkeypatch.setattr(Image, "open", PILLOW_OPEN)


@pytest.fixture
def uid() -> str:
    """A short unique suffix, so tests sharing a broker never share client ids."""
    return uuid.uuid4().hex[:8]


@pytest.fixture(scope="session")
def postgres_server_url() -> Iterator[str]:
    """A real PostgreSQL server for the session (initdb in a temp folder)."""
    with postgres_server() as url:
        yield url


@pytest.fixture
def postgres_url(postgres_server_url: str, uid: str) -> Iterator[str]:
    """An empty PostgreSQL database of this test's own."""
    name = f"test_{uid}"
    url = create_database(postgres_server_url, name)
    yield url
    drop_database(postgres_server_url, name)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The same test on SQLite and on a real PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'hub.db'}"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    """A hub (in-memory broker, SQLite in ``tmp_path``) and an ambulance's messenger."""
    from tests.hub_world import World

    w = World(tmp_path)
    yield w
    w.hub.stop()


@pytest.fixture(scope="session")
def data_folder() -> Path:
    """The team's data folder; tests needing real images skip without it."""
    folder = data_dir()
    if folder is None:
        pytest.skip(f"real data not found: set {ENV_VAR} to the data folder (see README)")
    return folder


@pytest.fixture(scope="session")
def browser():  # type: ignore[no-untyped-def]
    """Headless Debian Chromium driven by Playwright (no browser download)."""
    require(CHROMIUM.exists(), f"Chromium not found at {CHROMIUM} (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--disable-dev-shm-usage"],
        )
        yield browser
        browser.close()
