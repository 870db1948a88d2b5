"""Where the machine's CPU went during a benchmark window (Linux ``/proc``).

Processes are put in groups: the hub (its worker processes and their
children), the database (``postgres``), the broker (``mosquitto``), the load
(this benchmark process and the load generators it ran) and everything else.
Niced CPU (a background job at low priority) is counted apart from the busy
CPU of the machine, which is what competes with the hub.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
GROUPS = ("hub", "database", "broker", "load", "other")


@dataclass(frozen=True)
class Snapshot:
    """CPU seconds per group and of the whole machine at one moment."""

    at: float
    groups: dict[str, float]
    machine_busy_s: float
    """All CPUs, user + system + interrupts, without niced time."""
    machine_nice_s: float


def _stat(pid: str) -> tuple[int, float, str] | None:
    """(parent pid, CPU seconds, command line) of a process, or None if it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(
            errors="replace")
    except (OSError, IndexError):
        return None
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / _TICK, cmdline


def _machine() -> tuple[float, float]:
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq = values[:7]
    steal = values[7] if len(values) > 7 else 0
    return (user + system + irq + softirq + steal) / _TICK, nice / _TICK


def snapshot(hub_pids: set[int], at: float) -> Snapshot:
    """Group every process's CPU time; the load group includes reaped children
    of this process (load generators that already finished)."""
    table = {pid: row for pid in os.listdir("/proc") if pid.isdigit()
             if (row := _stat(pid)) is not None}
    parents = {int(pid): row[0] for pid, row in table.items()}

    def under(pid: int, roots: set[int]) -> bool:
        seen = 0
        while pid > 1 and seen < 64:
            if pid in roots:
                return True
            pid = parents.get(pid, 0)
            seen += 1
        return False

    me = os.getpid()
    groups = dict.fromkeys(GROUPS, 0.0)
    for pid, (_, cpu, cmdline) in table.items():
        number = int(pid)
        if under(number, hub_pids):
            group = "hub"
        elif "postgres" in cmdline:
            group = "database"
        elif "mosquitto" in cmdline:
            group = "broker"
        elif under(number, {me}):
            group = "load"
        else:
            group = "other"
        groups[group] += cpu
    times = os.times()
    groups["load"] += times.children_user + times.children_system
    busy, nice = _machine()
    return Snapshot(at=at, groups=groups, machine_busy_s=busy, machine_nice_s=nice)


def cores(before: Snapshot, after: Snapshot) -> dict[str, float]:
    """Average cores each group used between two snapshots.

    A process that ended between them takes its CPU time with it (except this
    process's reaped children), so a group may read slightly low.
    """
    seconds = max(1e-9, after.at - before.at)
    used = {group: max(0.0, after.groups[group] - before.groups[group]) / seconds
            for group in GROUPS}
    used["machine_busy"] = (after.machine_busy_s - before.machine_busy_s) / seconds
    used["machine_niced"] = (after.machine_nice_s - before.machine_nice_s) / seconds
    return {key: round(value, 3) for key, value in used.items()}
