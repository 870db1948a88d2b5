"""``/health``: the figures an operator looks at first (no sign-in needed);
``/health/live``, ``/health/ready`` and ``/metrics`` are in :mod:`hospital_hub.ops`."""

from __future__ import annotations

from fastapi import APIRouter

from hospital_hub.deps import RuntimeDep
from shared import __version__

router = APIRouter(tags=["ops"])


@router.get("/health")
def health(runtime: RuntimeDep) -> dict[str, object]:
    """Liveness and the figures an operator looks at first (no sign-in needed)."""
    return {
        "status": "ok" if runtime.communicator.connected else "degraded",
        "broker_connected": runtime.communicator.connected,
        "outbox_pending": runtime.outbox.pending(),
        "rejected_messages": dict(runtime.messenger.rejected),
        "version": __version__,
    }
