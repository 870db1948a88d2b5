"""Write docs/reliability.md from the figures the suites and the benchmark left.

    python -m tests.chaos.report --chaos .chaos-outcomes.json --fuzz .fuzz-summary.json \
        --bench bench-hub.json > docs/reliability.md

``deploy/reliability.sh`` runs everything and this; nothing here is typed in by hand.
"""

from __future__ import annotations

import argparse
import json
import platform
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tests.chaos.conftest import markdown


def _load(path: str | None) -> Any:
    if not path or not Path(path).exists():
        return None
    return json.loads(Path(path).read_text())


def render(chaos: list[dict[str, Any]] | None, fuzz: dict[str, Any] | None,
           bench: dict[str, Any] | None, command: str) -> str:
    """The whole document."""
    lines = [
        "# Reliability: faults injected, bad input tried, load held, and what was lost",
        "",
        f"Produced by `{command}` on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, "
        f"{platform.machine()}, {platform.python_version()}; loopback only. "
        "Do not edit by hand: run the command again.",
        "",
        "## Faults injected (chaos suite, `pytest -m chaos`)",
        "",
        "Each fault hits the whole system running as separate processes (Mosquitto, "
        "PostgreSQL, hub workers, simulated ERs, the edge agent behind a link that can be "
        "cut) while the ambulance keeps making cases. Counts come from the edge's outbox "
        "database (made) and the hub's database (delivered, images verified). "
        "`duplicate_deliveries` are diagnoses the broker delivered more than once, which the "
        "hub dropped by message id; `placed_twice` counts cases with two accepting ERs; "
        "`recovery_s` runs from the end of the fault until every case made by then was in the "
        "hub's database.",
        "",
        markdown(chaos) if chaos else "_not run_\n",
        "## Bad input tried (fuzzing, `tests/fuzz`)",
        "",
    ]
    if fuzz:
        groups: dict[str, list[dict[str, Any]]] = {}
        for name, row in fuzz.items():
            groups.setdefault(name.split("[", 1)[0], []).append(row)
        lines += ["Example budgets per target are in docs/fuzzing.md; a parametrised test "
                  "counts each of its variants.", "",
                  "| test | variants | examples | failures |", "| --- | --- | --- | --- |"]
        lines += [f"| `{name}` | {len(rows)} | {rows[0].get('examples', '?')} | "
                  f"{sum(int(r.get('failures', 0)) for r in rows)} |"
                  for name, rows in sorted(groups.items())]
        lines.append("")
    else:
        lines += ["_not run_", ""]
    lines += ["## Load held (`goldenhour bench hub --json`)", ""]
    if bench:
        lines += ["| figure | value |", "| --- | --- |"]
        lines += [f"| {key} | {value} |" for key, value in bench.items() if key != "targets"]
        lines += ["", f"Targets: `{json.dumps(bench.get('targets', {}))}`. "
                  "See docs/scaling.md for what bounds these figures.", ""]
    else:
        lines += ["_not run_", ""]
    lost = sum(int(row["lost"]) for row in chaos or [])
    twice = sum(int(row["placed_twice"]) for row in chaos or [])
    lines += ["## What was lost", "",
              f"Cases lost across all faults: **{lost}**; cases placed twice: **{twice}**"
              + (f"; cases lost under load: **{bench['lost']}**, offered twice: "
                 f"**{bench['double_offered']}**." if bench else "."), ""]
    return "\n".join(lines)


def main() -> None:
    """Command line: print the document."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--chaos")
    parser.add_argument("--fuzz")
    parser.add_argument("--bench")
    parser.add_argument("--command", default="./deploy/reliability.sh")
    args = parser.parse_args()
    print(render(_load(args.chaos), _load(args.fuzz), _load(args.bench), args.command))  # noqa: T201


if __name__ == "__main__":
    main()
