"""What ``goldenhour diagnose`` writes: the detailed report of one image, a
line per image for a batch, JSON Lines and the CSV table. Every AI result is
marked not for clinical use."""

from __future__ import annotations

import csv
import json
from typing import IO

from rich.console import Console
from rich.table import Table

from edge_agent.batch import Outcome
from shared.findings import FINDINGS
from shared.messages import DiagnosisV1, FindingScore
from shared.notice import AI_NOTICE


def finding_status(score: FindingScore) -> str:
    """How one finding reads against its operating point ('' when it does not
    reach it); the one place the table, the batch lines and the CSV ask."""
    return "suspected" if score.suspected else ""


def suspected(diagnosis: DiagnosisV1) -> list[str]:
    """The findings whose status is not empty, most probable first."""
    return [str(s.finding) for s in sorted(diagnosis.findings, key=lambda s: -s.probability)
            if finding_status(s)]


def json_line(outcome: Outcome) -> str:
    """One JSON object on one line: the diagnosis (every field of each finding
    score; no image bytes) with its ``path``, or the ``path`` and its ``error``."""
    if outcome.diagnosis is None:
        return json.dumps({"path": str(outcome.path), "error": outcome.error,
                           "error_type": outcome.error_type})
    body = outcome.diagnosis.model_dump(
        mode="json", exclude={"image": {"thumbnail_jpeg"}, "overlays": {"__all__": {"jpeg"}}})
    return json.dumps({"path": str(outcome.path), **body, "note": AI_NOTICE})


CSV_COLUMNS = ["path", *[str(f) for f in FINDINGS], "suspected", "top3", "triage_level", "triage_label",
               "model", "error"]


class CsvTable:
    """The batch as a table: path, the 14 probabilities, suspected findings, the
    top 3, triage, model and error (one row per input, failed ones too)."""

    def __init__(self, handle: IO[str]) -> None:
        self._writer = csv.writer(handle)
        self._writer.writerow(CSV_COLUMNS)

    def write(self, outcome: Outcome) -> None:
        diagnosis = outcome.diagnosis
        if diagnosis is None:
            self._writer.writerow([str(outcome.path), *[""] * (len(CSV_COLUMNS) - 2), outcome.error])
            return
        model = diagnosis.model
        self._writer.writerow([
            str(outcome.path), *[f"{s.probability:.4f}" for s in diagnosis.findings],
            ";".join(suspected(diagnosis)), ";".join(str(f) for f in diagnosis.top3),
            diagnosis.triage.level, diagnosis.triage.label,
            f"{model.name} {model.version}{' PLACEHOLDER' if model.placeholder else ''}", ""])


def print_line(console: Console, outcome: Outcome) -> None:
    """One image of a batch on one line."""
    diagnosis = outcome.diagnosis
    if diagnosis is None:
        return
    found = ", ".join(suspected(diagnosis)) or "none"
    console.print(f"{outcome.path}: triage {diagnosis.triage.level} ({diagnosis.triage.label}); "
                  f"suspected: {found}; top 3: {', '.join(diagnosis.top3)}", highlight=False, soft_wrap=True)


def print_detail(console: Console, result: DiagnosisV1) -> None:
    """The whole report of one image: every finding against its operating point,
    regions, triage and stage timings."""
    model = result.model
    console.print(f"[bold]{result.image.source}[/] ({result.image.format}, {result.image.width}x"
                  f"{result.image.height}) - model {model.name} {model.version}"
                  f"{' [red](PLACEHOLDER)[/]' if model.placeholder else ''}"
                  f" - [yellow]{AI_NOTICE}[/]")
    table = Table(caption="suspected: the probability reached the finding's operating point; "
                          "sensitivity / specificity as measured there out of fold on NIH images")
    table.add_column("finding")
    table.add_column("probability", justify="right")
    table.add_column("operating point", justify="right")
    table.add_column("sens. / spec.", justify="right")
    table.add_column("")
    for score in sorted(result.findings, key=lambda s: -s.probability):
        status = finding_status(score)
        measured = (f"{score.sensitivity:.0%} / {score.specificity:.0%}"
                    if score.sensitivity is not None and score.specificity is not None else "-")
        # the other probabilities stay visible but muted, so the suspected ones stand out
        table.add_row(str(score.finding), f"{score.probability:.3f}", f"{score.threshold:.3f}", measured,
                      f"[bold red]{status}[/]" if status else "", style=None if status else "dim")
    console.print(table)
    console.print("top 3: " + ", ".join(result.top3))
    for region in result.regions:
        console.print(f"region ({region.source}): {region.finding} x {region.x1:.2f}-{region.x2:.2f}, "
                      f"y {region.y1:.2f}-{region.y2:.2f}")
    console.print(f"triage level {result.triage.level} ({result.triage.label}): "
                  + "; ".join(result.triage.reasons))
    console.print("timings ms: " + ", ".join(f"{k} {v:.1f}" for k, v in result.timings_ms.items()))


def summary(outcomes: int, failed: int, seconds: float) -> str:
    """The closing line of a batch."""
    done = outcomes - failed
    rate = done / seconds if seconds > 0 else 0.0
    return (f"{outcomes} input(s): {done} diagnosed, {failed} failed in {seconds:.1f} s "
            f"({rate:.2f} images/s). {AI_NOTICE}.")

