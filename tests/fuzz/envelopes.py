"""Hypothesis strategies for hostile MQTT messages: valid-looking envelopes with
mutated fields, wrong types, boundary values, huge strings, NaN, NUL, unicode,
wrong ids and wrong topics, and raw byte damage on top.

Every strategy starts from a *valid* message of the family (so that most
examples get past the first checks and reach the handler) and then breaks it
in a few places.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import msgpack
from hypothesis import strategies as st

from shared.ids import ID_PATTERN
from shared.messages import Envelope, Payload, encode
from shared.topics import TopicSpec

INT_BOUNDARIES = (0, -1, 1, 2, 3, 5, 6, 13, 14, 15, 16, 63, 64, 65, 255, 256, 16384, 16385,
                  2**31 - 1, 2**31, 2**32, 2**53 + 1, 2**63 - 1, 2**63, -(2**63), 2**64 - 1)
FLOAT_BOUNDARIES = (float("nan"), float("inf"), float("-inf"), -0.0, 0.0, 0.5, 1.0, 1.0000001,
                    -1e-300, 5e-324, 1e308, 90.0, 90.0000001, -180.0, 180.0000001, 359.999, 360.0)
STRING_SPECIALS = ("", " ", "\x00", "a\x00b", "\t\n\r", "é", "🚑", "\u202e\u0627", "\ufeff",
                   "null", "None", "NaN", "amb-1", "bos-mgh", "../../etc/passwd", "$SYS", "+", "#",
                   "a/b", "<script>alert(1)</script>", "'; DROP TABLE case; --", "%s%n", "x" * 64,
                   "x" * 65, "x" * 129, "x" * 501, "é" * 300)
HUGE_STRING_SIZES = (1_000, 60_000, 70_000, 140_000, 320_000, 1_100_000)
"""Around the 64 KiB, 128 KiB, 300 KiB and 1 MiB limits."""

_text = st.text(alphabet=st.characters(exclude_categories=("Cs",)), max_size=40)


def _huge_text(size: int) -> str:
    return ("\U0001f691" + "x" * 7) * (size // 11) + "x" * (size % 11)


def _nested(depth: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(depth):
        value = [value]
    return value


def _timestamp(seconds: int, nanoseconds: int) -> msgpack.Timestamp:
    return msgpack.Timestamp(seconds, nanoseconds)


nasty_values: st.SearchStrategy[Any] = st.deferred(lambda: st.one_of(
    st.none(),
    st.booleans(),
    st.sampled_from(INT_BOUNDARIES),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.sampled_from(FLOAT_BOUNDARIES),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(STRING_SPECIALS),
    _text,
    st.sampled_from(HUGE_STRING_SIZES).map(_huge_text),
    st.binary(max_size=40),
    st.sampled_from((b"", b"\x00" * 16, b"\xff" * 15, b"\xff" * 17, b"\xff\xd8\xff" * 20_000)),
    st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30),
                 timezones=st.just(UTC)),
    st.builds(_timestamp, st.sampled_from((0, -1, 2**33, 2**62, -(2**62), 253402300800)),
              st.sampled_from((0, 999_999_999))),
    st.builds(msgpack.ExtType, st.integers(min_value=0, max_value=127), st.binary(max_size=16)),
    st.lists(st.one_of(st.none(), st.integers(min_value=-9, max_value=9), _text), max_size=5),
    st.dictionaries(_text, st.one_of(st.none(), st.integers(min_value=-9, max_value=9), _text),
                    max_size=4),
    st.integers(min_value=1, max_value=500).map(_nested),
))
"""Values of every wire type, biased to the boundaries the payload models check."""

_extreme_datetimes = st.sampled_from((datetime(1, 1, 1, tzinfo=UTC), datetime(1970, 1, 1, tzinfo=UTC),
                                      datetime(2038, 1, 19, 3, 14, 8, tzinfo=UTC),
                                      datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)))


def boundary_values(value: Any) -> st.SearchStrategy[Any]:
    """Values of ``value``'s own wire type at and past the limits that models check."""
    if isinstance(value, bool):
        return st.booleans()
    if isinstance(value, int):
        return st.one_of(st.sampled_from(INT_BOUNDARIES), st.sampled_from((2**63 - 1, 2**63, 2**64 - 1)),
                         st.integers(min_value=-(2**63), max_value=2**64 - 1))
    if isinstance(value, float):
        return st.one_of(st.sampled_from(FLOAT_BOUNDARIES), st.floats())
    if isinstance(value, str):
        return st.one_of(st.sampled_from(STRING_SPECIALS), _text,
                         st.sampled_from(HUGE_STRING_SIZES).map(_huge_text))
    if isinstance(value, bytes):
        return st.sampled_from((b"", b"\x00", value * 2, value[: len(value) // 2], b"\xff" * 49_153))
    if isinstance(value, datetime):
        return st.one_of(_extreme_datetimes, st.datetimes(timezones=st.just(UTC)))
    if isinstance(value, list):
        return st.sampled_from(([], value[:1], value * 2, value[::-1], (value or [None]) * 70))
    if isinstance(value, dict):
        return st.sampled_from(({}, {str(i): "x" for i in range(300)}))
    return nasty_values


valid_ids = st.from_regex(ID_PATTERN, fullmatch=True)
bad_ids = st.one_of(
    st.sampled_from(("-lead", ".dot", "x" * 65, "é", "🚑", "amb 1", "$share", "a\tb", "A" * 200)),
    st.text(alphabet=st.characters(exclude_categories=("Cs",), exclude_characters="/+#\x00"),
            min_size=1, max_size=70),
)
"""Topic levels that a broker accepts but the contract does not."""


@dataclass(frozen=True)
class Family:
    """One handler's messages: its topic, and valid payloads to start from."""

    spec: TopicSpec
    bases: Callable[[dict[str, str]], Sequence[Payload]]
    """Valid payloads for the topic ids given (which the payload's own ids match)."""
    ids: dict[str, st.SearchStrategy[str]]
    """Per placeholder, the ids to use: mostly those the receiver knows (its
    cases, hospitals and ambulances), some new ones."""


@dataclass(frozen=True)
class Hostile:
    """One generated message: where it goes and its bytes, and how it was made."""

    topic: str
    data: bytes
    retain: bool
    how: str


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every key path into nested maps and lists (to depth 8), containers included."""
    found = [prefix]
    if len(prefix) >= 8:
        return found
    if isinstance(value, dict):
        for key, item in value.items():
            found += _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += _paths(item, (*prefix, index))
    return found


def _get(root: Any, path: tuple[Any, ...]) -> Any:
    for key in path:
        root = root[key]
    return root


def _mutate(wire: dict[str, Any], draw: st.DrawFn) -> list[str]:
    """Change a few places of ``wire`` in place; returns what was done."""
    done = []
    for _ in range(draw(st.sampled_from((1, 1, 1, 2, 3, 4)))):
        paths = [p for p in _paths(wire) if p]
        if draw(st.integers(min_value=0, max_value=9)) < 7:  # mostly the payload: deeper code
            paths = [p for p in paths if p[0] == "payload" and len(p) > 1] or paths
        leaves = [p for p in paths if not isinstance(_get(wire, p), dict | list)]
        if leaves and draw(st.integers(min_value=0, max_value=4)) > 0:
            paths = leaves
        path = paths[draw(st.integers(min_value=0, max_value=len(paths) - 1))]
        parent, key = _get(wire, path[:-1]), path[-1]
        op = draw(st.sampled_from(("boundary", "boundary", "boundary", "set", "set", "delete",
                                   "add", "wrap", "text", "copy")))
        if op == "boundary":
            parent[key] = draw(boundary_values(parent[key]))
        elif op == "set":
            parent[key] = draw(nasty_values)
        elif op == "delete":
            if isinstance(parent, dict):
                del parent[key]
            else:
                parent.pop(key)
        elif op == "add":
            target = parent if isinstance(parent, dict) else wire["payload"]
            if isinstance(target, dict):
                target[draw(st.one_of(_text, st.sampled_from(STRING_SPECIALS)))] = draw(nasty_values)
        elif op == "wrap":
            parent[key] = [parent[key]]
        elif op == "text":
            parent[key] = str(parent[key])
        else:  # a valid value from elsewhere in the message: the right types in the wrong place
            other = paths[draw(st.integers(min_value=0, max_value=len(paths) - 1))]
            parent[key] = _get(wire, other)
        done.append(f"{op} {'.'.join(map(str, path))}")
    return done


def _damage(data: bytes, draw: st.DrawFn) -> tuple[bytes, str]:
    """Raw byte damage: flips, truncation, inserted garbage."""
    buffer = bytearray(data)
    op = draw(st.sampled_from(("flip", "truncate", "insert", "append", "empty")))
    if op == "empty" or not buffer:
        return b"", "empty"
    position = draw(st.integers(min_value=0, max_value=len(buffer) - 1))
    if op == "flip":
        buffer[position] ^= draw(st.integers(min_value=1, max_value=255))
    elif op == "truncate":
        del buffer[position:]
    elif op == "insert":
        buffer[position:position] = draw(st.binary(min_size=1, max_size=32))
    else:
        buffer += draw(st.binary(min_size=1, max_size=32))
    return bytes(buffer), f"{op} at {position}"


def _pack(wire: dict[str, Any]) -> bytes:
    packed: bytes = msgpack.packb(wire, datetime=True, use_bin_type=True)
    return packed


@st.composite
def hostile_messages(draw: st.DrawFn, family: Family, other_specs: Sequence[TopicSpec] = (),
                     sender_role_ids: Sequence[str] = ()) -> Hostile:
    """A message for ``family``'s handler, more or less broken.

    ``other_specs`` are topics of the same receiver: a message is sometimes
    sent there instead (a diagnosis on the decision topic). ``sender_role_ids``
    are further senders to impersonate.
    """
    spec = family.spec
    ids = {name: draw(family.ids[name]) for name in spec.placeholders}
    payload = draw(st.sampled_from(list(family.bases(ids))))
    owner = {"edge": "ambulance_id", "er": "hospital_id"}.get(spec.publisher)
    sender = ids.get(owner, "hub-1") if owner else "hub-1"
    message_id = draw(st.one_of(st.uuids(), st.just(uuid.UUID(int=7))))
    sent_at = draw(st.one_of(
        st.just(datetime.now(UTC)),
        st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1),
                     timezones=st.just(UTC)),
        st.sampled_from((timedelta(days=-36500), timedelta(seconds=-1), timedelta(days=3650)))
        .map(lambda delta: datetime.now(UTC) + delta)))
    envelope = Envelope.wrap(payload, sender=sender, case_id=ids.get("case_id"),
                             message_id=message_id, sent_at=sent_at)
    wire = msgpack.unpackb(encode(envelope), timestamp=3)
    how = []

    # the ids: topic, envelope and payload agree unless a mutation says otherwise
    if draw(st.integers(min_value=0, max_value=4)) == 0:
        name = draw(st.sampled_from(["sender", "case_id", *spec.placeholders]))
        value = draw(st.one_of(valid_ids, bad_ids, st.sampled_from(list(sender_role_ids) or ["x"])))
        if name in ("sender", "case_id"):
            wire[name] = value
        else:
            ids = {**ids, name: value}
        how.append(f"id {name}={value!r}")
    if draw(st.integers(min_value=0, max_value=5)) > 0:
        how += _mutate(wire, draw)
    pattern = spec.pattern
    if other_specs and draw(st.integers(min_value=0, max_value=9)) == 0:
        other = draw(st.sampled_from(list(other_specs)))
        pattern = other.pattern
        ids = {name: ids.get(name) or draw(valid_ids) for name in other.placeholders}
        how.append(f"topic {other.key}")
    try:
        data = _pack(wire)
    except (OverflowError, ValueError, TypeError) as exc:  # not encodable: send the original
        how.append(f"unpackable ({type(exc).__name__})")
        data = encode(envelope)
    if draw(st.integers(min_value=0, max_value=9)) == 0:
        data, damage = _damage(data, draw)
        how.append(damage)
    retain = spec.retain and draw(st.booleans())
    return Hostile(topic=pattern.format(**ids), data=data, retain=retain, how="; ".join(how))
