"""The codec against mutated envelopes of every schema (tests/unit/test_codec.py
covers random bytes and random maps; these start from valid messages, so
they reach the payload models): ``decode`` returns an envelope or raises a
``ContractError``, and whatever it accepts survives a round trip unchanged."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from shared import topics
from shared.errors import ContractError, OversizeMessage
from shared.messages import decode, encode
from tests import samples
from tests.fuzz.budget import fuzz_settings
from tests.fuzz.envelopes import Family, Hostile, hostile_messages, valid_ids

SPECS = {spec.payload: spec for spec in topics.TOPICS}
"""A topic per payload type (status has three; any will do for the codec)."""


def _family(index: int) -> Family:
    payload = samples.all_payloads()[index]
    spec = SPECS[type(payload)]
    return Family(spec, lambda ids: [payload], dict.fromkeys(spec.placeholders, valid_ids))


messages = st.integers(0, len(samples.all_payloads()) - 1).flatmap(
    lambda index: hostile_messages(_family(index)))


@fuzz_settings(1000)
@given(message=messages)
def test_decode_accepts_or_raises_a_contract_error_and_round_trips(message: Hostile) -> None:
    try:
        envelope = decode(message.data)
    except ContractError:
        return
    assert decode(message.data) == envelope  # deterministic
    try:
        again = encode(envelope)
    except OversizeMessage:  # a payload just under the limit with fields that grow when re-encoded
        return
    assert decode(again) == envelope, message.how
