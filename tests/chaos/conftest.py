"""Chaos fixtures: a system per scenario, real images, and the outcome table."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.chaos.harness import Outcome, System
from tests.images import chest_like_png

_OUTCOMES: list[Outcome] = []


@pytest.fixture
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small X-ray-sized image (512 px) to make cases quickly."""
    folder = tmp_path_factory.mktemp("chaos-images")
    chest_like_png(folder / "xray.png")
    return folder


@pytest.fixture
def big_images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 3.7 MB image: 15 chunks, seconds to upload over a throttled link."""
    folder = tmp_path_factory.mktemp("chaos-big")
    chest_like_png(folder / "big.png", size=1400, seed=11, bits=16)
    return folder


@pytest.fixture
def make_system(tmp_path: Path, postgres_url: str, uid: str) -> Iterator:  # type: ignore[type-arg]
    systems: list[System] = []

    def make(**kwargs: object) -> System:
        system = System(tmp_path / f"s{len(systems)}", postgres_url, f"amb-{uid}", **kwargs)  # type: ignore[arg-type]
        systems.append(system)
        return system

    yield make
    for system in systems:
        system.close()


@pytest.fixture
def record() -> Iterator:  # type: ignore[type-arg]
    def add(outcome: Outcome) -> None:
        _OUTCOMES.append(outcome)

    yield add


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    report = session.config.getoption("--chaos-report", default=None)
    if not _OUTCOMES:
        return
    rows = [o.row() for o in _OUTCOMES]
    Path(session.config.rootpath, ".chaos-outcomes.json").write_text(json.dumps(rows, indent=1))
    if report:
        Path(report).write_text(markdown(rows))


def markdown(rows: list[dict[str, object]]) -> str:
    """The outcome table as Markdown."""
    columns = ["fault", "cases_made", "delivered", "lost", "duplicate_deliveries",
               "placed_twice", "images_verified", "recovery_s"]
    lines = ["| " + " | ".join(columns) + " |", "| " + " | ".join("---" for _ in columns) + " |"]
    lines += ["| " + " | ".join(str(row[c]) for c in columns) + " |" for row in rows]
    return "\n".join(lines) + "\n"
