"""Stopping long-running commands cleanly on SIGTERM (systemd, the demo) or Ctrl-C."""

from __future__ import annotations

import signal
import threading


def interruptible() -> None:
    """Make SIGINT raise KeyboardInterrupt even when this process was started with
    it ignored: a non-interactive shell starts background jobs that way, and the
    ignored disposition is inherited, so a supervisor's SIGINT (or Ctrl-C in a
    later foreground) would otherwise do nothing. Call from the main thread."""
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def stop_event() -> threading.Event:
    """An event that SIGTERM sets; call from the main thread."""
    interruptible()
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
