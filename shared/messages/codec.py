"""msgpack codec for envelopes, with every failure mapped to a project error.

Wire form: a msgpack map with the keys ``schema``, ``version``, ``message_id``
(16 raw bytes), ``case_id``, ``sender``, ``sent_at`` (msgpack timestamp) and
``payload`` (a map of the payload's fields). Datetimes anywhere are msgpack
timestamps; bytes are msgpack bin.
"""

from __future__ import annotations

import uuid
from typing import Any

import msgpack
from pydantic import BaseModel, ValidationError

from shared.errors import MalformedMessage, OversizeMessage, UnknownSchema, UnsupportedVersion
from shared.messages.envelope import Envelope
from shared.messages.payloads import PAYLOAD_TYPES, Payload

MAX_MESSAGE_BYTES = 1024 * 1024
"""No message is unpacked past this size, whatever its schema says."""

_REGISTRY: dict[str, dict[int, type[Payload]]] = {}
for _cls in PAYLOAD_TYPES:
    _REGISTRY.setdefault(_cls.SCHEMA, {})[_cls.VERSION] = _cls

_ENVELOPE_KEYS = ("schema", "version", "message_id", "case_id", "sender", "sent_at", "payload")


def payload_type(schema: str, version: int) -> type[Payload]:
    """Return the payload class registered for ``schema`` at ``version``.

    Raises:
        UnknownSchema: no payload of that name exists.
        UnsupportedVersion: the name exists, but not at that version.
    """
    versions = _REGISTRY.get(schema)
    if versions is None:
        raise UnknownSchema(f"unknown message schema {schema!r}; known: {sorted(_REGISTRY)}")
    try:
        return versions[version]
    except KeyError:
        raise UnsupportedVersion(
            f"schema {schema!r} version {version!r} is not supported; "
            f"this build reads versions {sorted(versions)}"
        ) from None


def _default(obj: Any) -> Any:
    if isinstance(obj, uuid.UUID):
        return obj.bytes
    raise TypeError(f"cannot encode {type(obj).__name__}")


def _has_nul(value: Any, depth: int = 0) -> bool:
    """Whether any string in ``value`` holds a NUL, which no database stores."""
    if isinstance(value, str):
        return "\x00" in value
    if depth > 32:
        return False
    if isinstance(value, dict):
        return any(_has_nul(k, depth + 1) or _has_nul(v, depth + 1) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_nul(v, depth + 1) for v in value)
    return False


def _text_has_nul(value: Any, depth: int = 0) -> bool:
    """Whether any text of a validated model holds a NUL. The check on the raw
    map misses text that arrived as msgpack bin (bytes) and that validation
    turned into ``str``; ``bytes`` fields (images) may hold NULs and are skipped."""
    if isinstance(value, str):
        return "\x00" in value
    if depth > 32:
        return False
    if isinstance(value, BaseModel):
        return any(_text_has_nul(v, depth + 1) for v in value.__dict__.values())
    if isinstance(value, dict):
        return any(_text_has_nul(k, depth + 1) or _text_has_nul(v, depth + 1) for k, v in value.items())
    if isinstance(value, (list, tuple, set, frozenset)):
        return any(_text_has_nul(v, depth + 1) for v in value)
    return False


def encode(envelope: Envelope[Any]) -> bytes:
    """Serialise an envelope to msgpack bytes.

    Raises:
        OversizeMessage: the result is larger than the payload type allows.
    """
    wire = {
        "schema": envelope.schema_name,
        "version": envelope.version,
        "message_id": envelope.message_id.bytes,
        "case_id": envelope.case_id,
        "sender": envelope.sender,
        "sent_at": envelope.sent_at,
        # None fields stay off the wire, so adding an optional field changes no
        # existing message's bytes.
        "payload": envelope.payload.model_dump(mode="python", exclude_none=True),
    }
    data: bytes = msgpack.packb(wire, default=_default, datetime=True, use_bin_type=True)
    limit = type(envelope.payload).MAX_BYTES
    if len(data) > limit:
        raise OversizeMessage(
            f"{envelope.schema_name} v{envelope.version} message is {len(data)} bytes; "
            f"the limit is {limit}"
        )
    return data


def decode(data: bytes, expected: type[Payload] | None = None) -> Envelope[Any]:
    """Parse and validate msgpack bytes into an envelope with a typed payload.

    Args:
        data: the raw message.
        expected: if given, the payload must be of this schema (any version
            registered for that schema is accepted).

    Raises:
        OversizeMessage: the bytes exceed the global or per-schema limit.
        MalformedMessage: not msgpack, not an envelope map, or invalid fields.
        UnknownSchema, UnsupportedVersion: the schema or version is not known.
    """
    if len(data) > MAX_MESSAGE_BYTES:
        raise OversizeMessage(f"message is {len(data)} bytes; the limit is {MAX_MESSAGE_BYTES}")
    try:
        raw = msgpack.unpackb(
            data,
            raw=False,
            timestamp=3,
            strict_map_key=True,
        )
    except Exception as exc:  # msgpack raises several unrelated types for bad input
        raise MalformedMessage(f"not a msgpack message: {type(exc).__name__}: {exc}") from exc
    if not isinstance(raw, dict):
        raise MalformedMessage(f"envelope must be a map, got {type(raw).__name__}")
    missing = [key for key in _ENVELOPE_KEYS if key not in raw]
    if missing:
        raise MalformedMessage(f"envelope lacks {missing}")
    extra = sorted(str(key) for key in raw if key not in _ENVELOPE_KEYS)
    if extra:
        raise MalformedMessage(f"envelope has unknown keys {extra}")
    schema, version = raw["schema"], raw["version"]
    if not isinstance(schema, str) or not isinstance(version, int) or isinstance(version, bool):
        raise MalformedMessage("envelope schema must be a string and version an integer")
    cls = payload_type(schema, version)
    if expected is not None and cls.SCHEMA != expected.SCHEMA:
        raise MalformedMessage(f"expected a {expected.SCHEMA!r} message, got {schema!r}")
    if len(data) > cls.MAX_BYTES:
        raise OversizeMessage(f"{schema} v{version} message is {len(data)} bytes; limit {cls.MAX_BYTES}")
    if _has_nul(raw["payload"]) or _has_nul(raw["sender"]) or _has_nul(raw["case_id"]):
        raise MalformedMessage("text fields must not contain NUL characters")
    message_id = raw["message_id"]
    if not isinstance(message_id, bytes) or len(message_id) != 16:
        raise MalformedMessage("message_id must be 16 bytes")
    try:
        envelope = Envelope.of(cls)(
            schema_name=schema,
            version=version,
            message_id=uuid.UUID(bytes=message_id),
            case_id=raw["case_id"],
            sender=raw["sender"],
            sent_at=raw["sent_at"],
            payload=cls.model_validate(raw["payload"], strict=False),
        )
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg']}"
            for err in exc.errors()[:5]
        )
        raise MalformedMessage(f"invalid {schema} v{version} message: {problems}") from exc
    if _text_has_nul(envelope):
        raise MalformedMessage("text fields must not contain NUL characters")
    return envelope
