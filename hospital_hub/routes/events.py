"""``/api/events``: live updates for the consoles (server-sent events)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse

from hospital_hub.deps import CaseReader, RuntimeDep
from hospital_hub.events import EventFeed, stream

router = APIRouter()


@router.get("/events", include_in_schema=False)
async def get_events(user: CaseReader, request: Request, runtime: RuntimeDep,
                     max_s: Annotated[float, Query(ge=0, le=3600)] = 300.0) -> StreamingResponse:
    """Server-sent events: one small JSON event per change the user may see
    (an ER's doctor: only cases offered to that ER), polled from the database
    every 0.5 s; the stream ends after ``max_s`` and the browser reconnects."""
    feed = EventFeed(runtime.engine, None if user.sees_all else user.hospital_id)
    return StreamingResponse(stream(feed, request.is_disconnected, max_s=max_s),
                             media_type="text/event-stream",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})
