"""Ranking, triage, ids and settings: pure logic."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from edge_agent.settings import load_edge_settings
from edge_agent.triage import triage
from hospital_hub.settings import load_hub_settings
from hospital_hub.travel import haversine_km
from shared.findings import FINDINGS, Finding
from shared.ids import is_valid_id, new_case_id
from shared.messages import FindingScore


def _scores(positive: set[Finding]) -> list[FindingScore]:
    return [FindingScore(finding=f, probability=0.9 if f in positive else 0.1, threshold=0.5)
            for f in FINDINGS]


def test_haversine_known_distance() -> None:
    # Boston (42.3601, -71.0589) to New York (40.7128, -74.0060): about 306 km.
    assert haversine_km(42.3601, -71.0589, 40.7128, -74.0060) == pytest.approx(306, abs=2)
    assert haversine_km(10, 10, 10, 10) == 0


def test_triage_levels() -> None:
    assert triage(_scores({Finding.PNEUMOTHORAX, Finding.NODULE})).level == 2
    assert triage(_scores({Finding.EDEMA})).level == 3
    assert triage(_scores({Finding.MASS})).level == 4
    assert triage(_scores({Finding.NODULE})).level == 4
    calm = triage(_scores(set()))
    assert calm.level == 5 and calm.reasons[0] == "no finding suspected by the AI -> level 5: non-urgent"
    assert "placeholder" in triage(_scores(set()), placeholder=True).reasons[-1]


def test_case_ids_are_valid_topic_levels_and_sort_by_time() -> None:
    early = new_case_id(datetime(2026, 1, 1, tzinfo=UTC))
    late = new_case_id(datetime(2026, 1, 2, tzinfo=UTC))
    assert is_valid_id(early) and early < late
    assert new_case_id() != new_case_id()


def test_settings_read_prefixed_and_nested_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GOLDENHOUR_HUB_OFFER_COUNT", "5")
    monkeypatch.setenv("GOLDENHOUR_HUB_MQTT__PORT", "1999")
    monkeypatch.setenv("GOLDENHOUR_EDGE_AMBULANCE_ID", "amb-42")
    hub = load_hub_settings()
    assert hub.offer_count == 5 and hub.mqtt.port == 1999
    assert load_hub_settings(offer_count=2).offer_count == 2
    assert load_edge_settings().ambulance_id == "amb-42"
    assert load_edge_settings().mqtt.port == 1883


def test_invalid_settings_are_clear(monkeypatch: pytest.MonkeyPatch) -> None:
    from pydantic import ValidationError

    monkeypatch.setenv("GOLDENHOUR_EDGE_AMBULANCE_ID", "bad/id")
    with pytest.raises(ValidationError, match="ambulance_id"):
        load_edge_settings()
