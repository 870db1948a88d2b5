"""The topic contract and its documentation."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel

from shared import topics
from shared.cli import topic_table_markdown
from shared.errors import TopicMismatch
from shared.ids import Identifier
from shared.messages import CapacityV1, IntakeV1, StatusV1


class StatusV1Holder(BaseModel):
    ambulance_id: Identifier

DOCS = Path(__file__).parents[2] / "docs" / "mqtt.md"


def test_docs_table_matches_the_code() -> None:
    text = DOCS.read_text()
    documented = text.split("<!-- topics:begin -->")[1].split("<!-- topics:end -->")[0].strip()
    assert documented == topic_table_markdown()


def test_every_topic_is_versioned_and_unique() -> None:
    patterns = [spec.pattern for spec in topics.TOPICS]
    assert len(set(patterns)) == len(patterns)
    assert all(p.startswith("goldenhour/v1/") for p in patterns)


def test_events_are_never_retained_and_cases_use_qos1() -> None:
    state = {StatusV1, CapacityV1, IntakeV1}
    for spec in topics.TOPICS:
        if spec.payload not in state:
            assert not spec.retain, spec.key
        if spec.key in ("case_diagnosis", "case_decision", "er_offer", "er_decision"):
            assert spec.qos == 1


def test_build_match_and_resolve() -> None:
    topic = topics.CASE_DIAGNOSIS.topic(ambulance_id="amb-7", case_id="c-1")
    assert topic == "goldenhour/v1/ambulance/amb-7/case/c-1/diagnosis"
    assert topics.CASE_DIAGNOSIS.match(topic) == {"ambulance_id": "amb-7", "case_id": "c-1"}
    assert topics.CASE_DECISION.match(topic) is None
    spec, ids = topics.resolve(topic)
    assert spec is topics.CASE_DIAGNOSIS and ids["case_id"] == "c-1"
    assert topics.ER_OFFER.subscription(hospital_id="h1") == "goldenhour/v1/er/h1/offer/+"
    assert topics.shared_subscription("hub", "a/b") == "$share/hub/a/b"


@pytest.mark.parametrize("bad", ["", "a/b", "+", "#", "$sys", "x" * 65, "-lead", "amb-1\n"])
def test_invalid_identifiers_are_refused(bad: str) -> None:
    with pytest.raises(TopicMismatch):
        topics.AMBULANCE_STATUS.topic(ambulance_id=bad)
    assert topics.AMBULANCE_STATUS.match(f"goldenhour/v1/ambulance/{bad}/status") is None
    with pytest.raises(ValueError):
        StatusV1Holder.model_validate({"ambulance_id": bad})


def test_wrong_placeholders_and_foreign_topics_are_refused() -> None:
    with pytest.raises(TopicMismatch):
        topics.ER_OFFER.topic(hospital_id="h1")
    with pytest.raises(TopicMismatch):
        topics.ER_OFFER.subscription(nonsense="x")
    with pytest.raises(TopicMismatch):
        topics.resolve("goldenhour/v2/ambulance/a/status")
