"""Checks that keep ``goldenhour demo`` honest (issue 20): its ports are free
before it starts, the hub really serves before the banner says so, and the ERs
left to a person are taken out of the simulator."""

from __future__ import annotations

import csv
import os
import socket
import subprocess
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from shared.errors import GoldenhourError


def registry_csv() -> Path:
    """The registry the hub and the simulated ERs read."""
    from shared.datapaths import REPO_ROOT

    return Path(os.environ.get("GOLDENHOUR_HUB_REGISTRY_CSV")
                or REPO_ROOT / "hospital_hub" / "data" / "sample_hospitals.csv")


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    """Whether nothing listens on ``host:port`` (so a server started now can bind it)."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def check_ports(ports: dict[int, str]) -> None:
    """Refuse to start when one of ``ports`` (port -> what it is for) is taken: the
    banner would otherwise point at whatever else answers there.

    Raises:
        GoldenhourError: naming the ports in use.
    """
    taken = [f"{port} ({what})" for port, what in ports.items() if not port_free(port)]
    if taken:
        raise GoldenhourError(f"port {', '.join(taken)} is already in use (another goldenhour demo?); "
                              f"stop it or choose another --port")


def wait_http(process: subprocess.Popen[bytes], port: int, timeout: float) -> None:
    """Wait until ``process`` (the hub) answers ``/health/live`` on ``port``.

    Raises:
        GoldenhourError: it exited first, or did not answer in time.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (code := process.poll()) is not None:
            raise GoldenhourError(f"the hub exited (code {code}) before serving on port {port}; "
                                  f"see its log above")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health/live", timeout=2) as answer:
                if answer.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.3)
    raise GoldenhourError(f"the hub did not answer on http://127.0.0.1:{port}/health/live in {timeout:.0f} s")


def simulated_ers(human_ers: Sequence[str], hospitals: Sequence[str], state: Path
                  ) -> tuple[list[str], list[str]]:
    """The hospitals a simulated doctor answers for, and the simulator's registry
    arguments (a copy of the registry without the ones left to a person).

    Raises:
        GoldenhourError: a hospital id that is not in the registry.
    """
    unknown = sorted(set(human_ers) - set(hospitals))
    if unknown:
        raise GoldenhourError(f"--human-er {', '.join(unknown)}: not in the registry "
                              f"(hospital ids: {', '.join(hospitals)})")
    if not human_ers:
        return list(hospitals), []
    with open(registry_csv(), encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        rows = [row for row in reader if row["id"] not in human_ers]
        fields = list(reader.fieldnames or [])
    copy = state / "simulated-ers.csv"
    with open(copy, "w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    return [row["id"] for row in rows], ["--registry", str(copy)]
