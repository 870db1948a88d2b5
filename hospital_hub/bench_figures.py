"""The figures of ``goldenhour bench hub``, computed from the stamps of one run.

- publish -> offers: from the case's publication to the arrival of its third
  open offer at the simulated ERs;
- accept -> ambulance: from the ER's accept to the decision reaching the ambulance;
- backlog: cases not yet answered (ambulance told) when the load stopped;
  they may still be answered during the drain, so a backlog is not a loss;
- lost: cases published (and acknowledged by the broker) that the hub never
  stored, checked in its database after the drain; unfinished: stored but the
  ambulance was never told within the drain;
- double-offered: a case offered twice to one ER, or to more ERs than the
  offer count;
- the knee: the highest case rate of a sweep at which p95 publish -> offers
  <= 500 ms and p95 accept -> ambulance <= 250 ms hold, with nothing lost,
  unfinished or double-offered, at that rate and every lower one.
"""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

from shared.stats import percentile

OFFER_P95_MS = 500.0
ACCEPT_P95_MS = 250.0
OFFER_COUNT = 3


@dataclass
class RateRun:
    """Everything recorded for one offered rate."""

    cases_per_s: float
    positions_per_s: float
    duration_s: float
    sent: dict[str, float]
    case_seconds: float
    positions_sent: int
    position_seconds: float
    offers: list[tuple[str, str, str, int, float]]
    accepts: dict[str, float]
    decisions: dict[str, tuple[str, float]]
    load_end: float
    stored: set[str]
    """Case ids of this run found in the hub's database after the drain."""
    counters: dict[str, float] = field(default_factory=dict)
    """Deltas of the hub's counters over the load (empty when not scraped)."""
    cpu_cores: dict[str, float] = field(default_factory=dict)
    load_seconds: float = 0.0


def _ms(values: list[float], q: float) -> float | None:
    return round(percentile(values, q), 1) if values else None


def figures(run: RateRun) -> dict[str, Any]:
    """The figures of one rate (see the module's docstring)."""
    sent = run.sent
    by_case: dict[str, list[tuple[str, int, float]]] = defaultdict(list)
    pairs: Counter[tuple[str, str]] = Counter()
    for case_id, hospital, state, rank, received in run.offers:
        if state == "open" and case_id in sent:
            by_case[case_id].append((hospital, rank, received))
            pairs[(case_id, hospital)] += 1
    offered = {c: max(t for _, rank, t in rows if rank <= OFFER_COUNT)
               for c, rows in by_case.items()
               if len({rank for _, rank, _ in rows if rank <= OFFER_COUNT}) == OFFER_COUNT}
    to_offer = [(offered[c] - sent[c]) * 1000 for c in offered]
    told = {c: at for c, (status, at) in run.decisions.items() if c in sent}
    accepted = {c: at for c, (status, at) in run.decisions.items()
                if c in sent and status == "accepted"}
    to_ambulance = [(at - run.accepts[c]) * 1000 for c, at in accepted.items()
                    if c in run.accepts]
    double = {c for (c, _), n in pairs.items() if n > 1} | {
        c for c, rows in by_case.items() if len({h for h, _, _ in rows}) > OFFER_COUNT}
    first = min(sent.values(), default=0.0)
    last_offer = max(offered.values(), default=first)
    counters = run.counters
    hub_cpu_s = run.cpu_cores.get("hub", 0.0) * run.load_seconds
    positions_taken = counters.get("positions_received")
    handled = counters.get("messages")
    if handled is None:  # hub without metrics: every message offered counts as handled
        handled = 2 * len(offered) + run.positions_sent
    result: dict[str, Any] = {
        "cases_offered_per_s": round(len(sent) / max(1e-9, run.case_seconds), 1),
        "cases_per_s": round(len(offered) / max(1e-9, last_offer - first), 1),
        "positions_per_s": round(run.positions_sent / max(1e-9, run.position_seconds), 1),
        "positions_taken_per_s": None if positions_taken is None
        else round(positions_taken / max(1e-9, run.load_seconds), 1),
        "positions_stored_per_s": None if "positions_stored" not in counters
        else round(counters["positions_stored"] / max(1e-9, run.load_seconds), 1),
        "publish_to_offer_ms_p50": _ms(to_offer, 0.5),
        "publish_to_offer_ms_p95": _ms(to_offer, 0.95),
        "publish_to_offer_ms_p99": _ms(to_offer, 0.99),
        "accept_to_ambulance_ms_p50": _ms(to_ambulance, 0.5),
        "accept_to_ambulance_ms_p95": _ms(to_ambulance, 0.95),
        "accept_to_ambulance_ms_p99": _ms(to_ambulance, 0.99),
        "cases_published": len(sent),
        "backlog_at_load_end": sum(1 for c in sent if c not in told or told[c] > run.load_end),
        "lost": sum(1 for c in sent if c not in run.stored),
        "unfinished": sum(1 for c in sent if c in run.stored and c not in told),
        "double_offered": len(double),
        "hub_cpu_cores": run.cpu_cores.get("hub"),
        "database_cpu_cores": run.cpu_cores.get("database"),
        "broker_load_cpu_cores": round(run.cpu_cores.get("broker", 0.0)
                                       + run.cpu_cores.get("load", 0.0), 3)
        if run.cpu_cores else None,
        "machine_busy_cores": run.cpu_cores.get("machine_busy"),
        "machine_niced_cores": run.cpu_cores.get("machine_niced"),
        "cpu_us_per_message": round(hub_cpu_s / handled * 1e6, 1) if handled else None,
        "cpu_cores": run.cpu_cores,
        "mean_publish_to_offer_ms": round(statistics.fmean(to_offer), 1) if to_offer else None,
    }
    if run.cases_per_s == 0 and positions_taken:
        result["cpu_us_per_position"] = round(hub_cpu_s / positions_taken * 1e6, 1)
    elif run.cases_per_s == 0 and run.positions_sent:
        result["cpu_us_per_position"] = round(hub_cpu_s / run.positions_sent * 1e6, 1)
    return result


def passes(row: dict[str, Any]) -> bool:
    """Whether one rate meets the knee's conditions."""
    offer, accept = row["publish_to_offer_ms_p95"], row["accept_to_ambulance_ms_p95"]
    return (offer is not None and accept is not None and offer <= OFFER_P95_MS
            and accept <= ACCEPT_P95_MS and row["lost"] == 0 and row["unfinished"] == 0
            and row["double_offered"] == 0)


def knee(rows: list[tuple[float, dict[str, Any]]]) -> float | None:
    """The highest rate that passes with every lower rate passing too."""
    best = None
    for rate, row in sorted(rows, key=lambda item: item[0]):
        if rate <= 0:
            continue
        if not passes(row):
            break
        best = rate
    return best


SWEEP_COLUMNS = (
    ("cases/s offered", "cases_offered_per_s"), ("cases/s taken", "cases_per_s"),
    ("publish->offers p50/p95/p99 ms", ("publish_to_offer_ms_p50", "publish_to_offer_ms_p95",
                                        "publish_to_offer_ms_p99")),
    ("accept->ambulance p50/p95/p99 ms", ("accept_to_ambulance_ms_p50",
                                          "accept_to_ambulance_ms_p95",
                                          "accept_to_ambulance_ms_p99")),
    ("positions/s offered / taken", ("positions_per_s", "positions_taken_per_s")),
    ("CPU cores: hub / database / broker+load", ("hub_cpu_cores", "database_cpu_cores",
                                                "broker_load_cpu_cores")),
    ("machine busy / niced cores", ("machine_busy_cores", "machine_niced_cores")),
    ("hub CPU µs/message", "cpu_us_per_message"),
    ("backlog at end", "backlog_at_load_end"), ("lost", "lost"), ("unfinished", "unfinished"),
    ("double", "double_offered"),
)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if abs(value) >= 100 or value.is_integer():
            return f"{value:,.0f}"
        return f"{value:.2f}" if abs(value) < 10 else f"{value:.1f}"
    return str(value)


def markdown_table(rows: list[tuple[float, dict[str, Any]]]) -> str:
    """The sweep as a Markdown table, one line per rate."""
    head = ["target cases/s", *(title for title, _ in SWEEP_COLUMNS)]
    lines = ["| " + " | ".join(head) + " |", "|" + " ---: |" * len(head)]
    for rate, row in rows:
        cells = [_cell(rate)]
        for _, keys in SWEEP_COLUMNS:
            if isinstance(keys, tuple):
                cells.append(" / ".join(_cell(row.get(k)) for k in keys))
            else:
                cells.append(_cell(row.get(keys)))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
