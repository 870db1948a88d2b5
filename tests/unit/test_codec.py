"""The message contract: round trips, golden bytes and every kind of bad input."""

from __future__ import annotations

from pathlib import Path

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.errors import (
    ContractError,
    MalformedMessage,
    OversizeMessage,
    UnknownSchema,
    UnsupportedVersion,
)
from shared.messages import PAYLOAD_TYPES, DiagnosisV1, Envelope, StatusV1, decode, encode
from tests import samples

GOLDEN = Path(__file__).parent.parent / "golden"


def _wire(**changes: object) -> bytes:
    """A valid status message's wire map with some keys changed or removed."""
    raw = msgpack.unpackb(encode(samples.fixed_envelope(samples.all_payloads()[4])),
                          timestamp=3)
    for key, value in changes.items():
        if value is _DROP:
            raw.pop(key)
        else:
            raw[key] = value
    return msgpack.packb(raw, datetime=True)


_DROP = object()


def test_every_payload_type_has_a_sample() -> None:
    assert {type(p) for p in samples.all_payloads()} == set(PAYLOAD_TYPES)


@pytest.mark.parametrize("payload", samples.all_payloads(), ids=lambda p: p.SCHEMA)
def test_round_trip_preserves_everything(payload) -> None:  # type: ignore[no-untyped-def]
    envelope = samples.fixed_envelope(payload)
    decoded = decode(encode(envelope))
    assert decoded == envelope
    assert type(decoded.payload) is type(payload)


@pytest.mark.parametrize("payload", samples.all_payloads(), ids=lambda p: p.SCHEMA)
def test_golden_bytes_catch_schema_drift(payload) -> None:  # type: ignore[no-untyped-def]
    """The wire bytes of v1 messages are frozen: a change here breaks old peers.

    If a change is intended, it needs a new schema version, not new golden bytes.
    """
    golden = GOLDEN / f"{payload.SCHEMA}_v{payload.VERSION}.msgpack.hex"
    data = encode(samples.fixed_envelope(payload))
    assert golden.exists(), f"missing {golden}; run: python -m tests.unit.test_codec"
    expected = bytes.fromhex(golden.read_text().strip())
    assert data == expected
    assert decode(expected) == samples.fixed_envelope(payload)


def test_garbage_bytes_are_malformed() -> None:
    for data in (b"", b"garbage", b"\xc1", b"\x92\x01\x02", msgpack.packb("a string")):
        with pytest.raises(MalformedMessage):
            decode(data)


def test_unknown_schema() -> None:
    with pytest.raises(UnknownSchema, match="nonsense"):
        decode(_wire(schema="nonsense"))


def test_unsupported_version_names_supported_ones() -> None:
    with pytest.raises(UnsupportedVersion, match=r"versions \[1\]"):
        decode(_wire(version=99))


@pytest.mark.parametrize("key", ["schema", "version", "message_id", "sender", "sent_at",
                                 "payload", "case_id"])
def test_missing_envelope_field(key: str) -> None:
    with pytest.raises(MalformedMessage, match=key):
        decode(_wire(**{key: _DROP}))


def test_wrong_types_are_malformed() -> None:
    with pytest.raises(MalformedMessage):
        decode(_wire(version="1"))
    with pytest.raises(MalformedMessage):
        decode(_wire(version=True))
    with pytest.raises(MalformedMessage, match="message_id"):
        decode(_wire(message_id="not-bytes"))
    with pytest.raises(MalformedMessage, match="state"):
        decode(_wire(payload={"role": "edge", "state": "sleeping", "software_version": "1"}))
    with pytest.raises(MalformedMessage, match="sender"):
        decode(_wire(sender="has/slash"))
    with pytest.raises(MalformedMessage, match="sent_at"):
        decode(_wire(sent_at="yesterday"))


def test_missing_payload_fields_fail_and_unknown_ones_are_ignored() -> None:
    with pytest.raises(MalformedMessage, match="software_version"):
        decode(_wire(payload={"role": "edge", "state": "online"}))
    # A newer producer may add payload fields within a version: readers ignore them.
    newer = decode(_wire(payload={"role": "edge", "state": "online", "software_version": "1",
                                  "added_later": 1}))
    assert newer.payload == StatusV1(role="edge", state="online", software_version="1")
    with pytest.raises(MalformedMessage, match="unknown keys"):
        decode(_wire(bonus=1))


def test_nul_in_text_is_refused_also_when_it_arrives_as_bytes() -> None:
    """Validation turns msgpack bin into text; a NUL must not slip through that way
    (no database stores it). Bytes fields (images) may hold NULs."""
    with pytest.raises(MalformedMessage, match="NUL"):
        decode(_wire(payload={"role": "edge", "state": "online", "software_version": "1\x00"}))
    with pytest.raises(MalformedMessage, match="NUL"):
        decode(_wire(payload={"role": "edge", "state": "online", "software_version": b"1\x00"}))
    assert decode(_wire(payload={"role": "edge", "state": "online", "software_version": b"1"})
                  ).payload.software_version == "1"


def test_expected_schema_is_enforced() -> None:
    data = encode(samples.fixed_envelope(samples.all_payloads()[4]))
    with pytest.raises(MalformedMessage, match="expected a 'diagnosis'"):
        decode(data, expected=DiagnosisV1)


def test_oversize_is_refused_before_and_after_encoding() -> None:
    with pytest.raises(OversizeMessage):
        decode(b"\x00" * (1024 * 1024 + 1))
    big = _wire(sender="x" * 60, payload={"role": "edge", "state": "online",
                                          "software_version": "v" * 70_000})
    with pytest.raises(OversizeMessage, match="status v1"):
        decode(big)
    status = StatusV1(role="edge", state="online", software_version="v" * 70_000)
    with pytest.raises(OversizeMessage):
        encode(Envelope.wrap(status, sender="amb-1"))


def test_diagnosis_needs_all_findings_in_order() -> None:
    good = samples.diagnosis().model_dump()
    good["findings"] = list(reversed(good["findings"]))
    with pytest.raises(ValueError, match="canonical order"):
        DiagnosisV1.model_validate(good)


def test_naive_datetimes_are_refused() -> None:
    from datetime import datetime

    with pytest.raises(ValueError):
        Envelope.wrap(samples.all_payloads()[4], sender="a", sent_at=datetime(2026, 1, 1))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=512))
def test_random_bytes_never_escape_the_contract_errors(data: bytes) -> None:
    try:
        decode(data)
    except ContractError:
        pass


_INT64 = st.integers(min_value=-(2**63), max_value=2**64 - 1)
_VALUES = st.one_of(st.none(), _INT64, st.text(max_size=20), st.binary(max_size=20), st.booleans(),
                    st.dictionaries(st.text(max_size=5), _INT64))
_KEYS = st.sampled_from(["schema", "version", "message_id", "case_id", "sender", "sent_at",
                         "payload", "x"])


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(_KEYS, _VALUES))
def test_random_envelope_maps_never_escape_the_contract_errors(raw: dict) -> None:  # type: ignore[type-arg]
    raw.setdefault("schema", "status")
    try:
        decode(msgpack.packb(raw))
    except ContractError:
        pass


def _write_golden() -> None:
    GOLDEN.mkdir(exist_ok=True)
    for payload in samples.all_payloads():
        path = GOLDEN / f"{payload.SCHEMA}_v{payload.VERSION}.msgpack.hex"
        path.write_text(encode(samples.fixed_envelope(payload)).hex() + "\n")


if __name__ == "__main__":
    _write_golden()
