"""The communicators' topic matching agrees with paho's reference matcher."""

from __future__ import annotations

import paho.mqtt.client as mqtt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.mqtt.communicator import topic_matches

LEVELS = st.sampled_from(["a", "b", "goldenhour", "v1", "", "$SYS", "$x"])
FILTER_LEVELS = st.one_of(LEVELS, st.just("+"))


@st.composite
def filters(draw: st.DrawFn) -> str:
    levels = draw(st.lists(FILTER_LEVELS, min_size=1, max_size=5))
    if draw(st.booleans()):
        levels.append("#")
    return "/".join(levels)


@settings(max_examples=2000, deadline=None)
@given(topic_filter=filters(), topic=st.lists(LEVELS, min_size=1, max_size=6).map("/".join))
def test_agrees_with_paho(topic_filter: str, topic: str) -> None:
    assert topic_matches(topic_filter, topic) == mqtt.topic_matches_sub(topic_filter, topic)


@pytest.mark.parametrize(("topic_filter", "topic", "expected"), [
    ("$share/hub/goldenhour/v1/ambulance/+/position", "goldenhour/v1/ambulance/a1/position", True),
    ("$share/hub/goldenhour/v1/ambulance/+/position", "goldenhour/v1/ambulance/a1/status", False),
    ("goldenhour/#", "goldenhour", True),
    ("+/v1", "$SYS/v1", False),
])
def test_shared_subscriptions_and_edges(topic_filter: str, topic: str, expected: bool) -> None:
    assert topic_matches(topic_filter, topic) is expected
