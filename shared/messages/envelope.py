"""The versioned envelope that wraps every payload on the wire."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Generic, TypeVar

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from shared.ids import Identifier
from shared.messages.payloads import Payload

P = TypeVar("P", bound=Payload)
_TYPED: dict[type, type] = {}
"""Envelope[payload type] for each payload type used (see :meth:`Envelope.of`)."""


class Envelope(BaseModel, Generic[P]):
    """One message: who sent what, when, about which case.

    ``schema_name`` and ``version`` always agree with the payload's class;
    build envelopes with :meth:`wrap` rather than by hand.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_name: str = Field(min_length=1, max_length=64)
    version: int = Field(ge=1)
    message_id: uuid.UUID
    case_id: Identifier | None
    sender: Identifier
    sent_at: AwareDatetime
    payload: P

    @classmethod
    def of(cls, payload_type: type[P]) -> type[Envelope[P]]:
        """``Envelope[payload_type]``, built once: pydantic keeps parametrized
        models only weakly, so each would be rebuilt (half a millisecond) every
        time the garbage collector had taken it, hundreds of times a minute."""
        typed = _TYPED.get(payload_type)
        if typed is None:
            typed = _TYPED[payload_type] = Envelope[payload_type]  # type: ignore[valid-type]
        return typed

    @classmethod
    def wrap(
        cls,
        payload: P,
        *,
        sender: str,
        case_id: str | None = None,
        message_id: uuid.UUID | None = None,
        sent_at: datetime | None = None,
    ) -> Envelope[P]:
        """Wrap ``payload`` in a new envelope with a fresh id and the current UTC time."""
        return Envelope.of(type(payload))(
            schema_name=payload.SCHEMA,
            version=payload.VERSION,
            message_id=message_id or uuid.uuid4(),
            case_id=case_id,
            sender=sender,
            sent_at=sent_at or datetime.now(UTC),
            payload=payload,
        )
