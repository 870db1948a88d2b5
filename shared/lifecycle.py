"""Stopping long-running commands cleanly on SIGTERM (systemd, the demo) or Ctrl-C."""

from __future__ import annotations

import signal
import threading


def stop_event() -> threading.Event:
    """An event that SIGTERM sets; call from the main thread."""
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    return stop


def wait_for_stop() -> None:
    """Block until SIGTERM or Ctrl-C."""
    stop = stop_event()
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
