"""The ``train operating-points`` job: a run's out-of-fold predictions -> operating
points at a stated specificity, their measured figures, and the image-only triage
before (Youden points) and after, written to the run folder for ``train export``."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from training.calibrate import Calibration, youden_threshold
from training.classify import read_oof
from training.operating_points import (
    as_json,
    cross_fitted_flags,
    fit_operating_points,
    full_nih_prevalence,
    reference_histogram,
    specificity_rule,
    targets_for,
)
from training.triage_eval import LEVELS, TriageAgreement, agreement

FILE = "operating_points.json"


def run_operating_points(run: Path, data_root: Path, specificity: float, overrides: Mapping[str, float],
                         console: Console, *, rounds: int = 1000, command: str = "") -> dict[str, object]:
    """Fit, measure and write ``operating_points.json`` and ``operating-points.md`` in ``run``."""
    summary = json.loads((run / "run.json").read_text(encoding="utf-8"))
    calibration = summary["calibration"]
    oof = read_oof(run / "oof.csv")
    if len(np.unique(oof["fold"])) < 2:
        raise ValueError("operating points need out-of-fold predictions from at least 2 folds")
    probabilities = Calibration(calibration["temperature"], calibration["bias"],
                                calibration["thresholds"]).apply(oof["logits"])
    labels, patients, folds = oof["labels"], oof["patient"], oof["fold"]
    targets = targets_for(specificity, overrides)
    prevalence, prevalence_source = full_nih_prevalence(data_root)
    points = fit_operating_points(probabilities, labels, patients, folds, targets, prevalence, rounds=rounds)
    youden = cross_fitted_flags(probabilities, labels, folds, lambda y, p, _: youden_threshold(y, p))
    after_flags = cross_fitted_flags(probabilities, labels, folds, specificity_rule(targets))
    before = agreement(youden, labels, patients, rounds=rounds)
    after = agreement(after_flags, labels, patients, rounds=rounds)
    data = (f"out-of-fold predictions of {run.name} ({len(labels)} images of {len(np.unique(patients))} "
            f"patients, {len(np.unique(folds))} folds, NIH ChestX-ray14 sample, v2020 labels); figures "
            "cross-fitted: each fold judged by thresholds fitted on the other folds")
    result: dict[str, object] = {
        "rule": f"lowest threshold with specificity >= target on calibrated out-of-fold probabilities "
                f"(default target {specificity:g})",
        "default_specificity": specificity, "targets": {str(k): float(v) for k, v in overrides.items()},
        "reference_prevalence_source": prevalence_source, "data": data,
        "points": as_json(points),
        "triage": {"before": asdict(before), "after": asdict(after),
                   "before_rule": "Youden's J (1.1.0's rule)", "after_rule": "operating points"},
        "reference_histogram": reference_histogram(probabilities),
        "command": command,  # 'train export' adds it to the manifest's command chain
    }
    (run / FILE).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    (run / "operating-points.md").write_text(markdown(result), encoding="utf-8")
    _print(console, result)
    return result


def _pct(value: float) -> str:
    return "-" if value != value else f"{value:.0%}"


def _ci(pair: list[float] | tuple[float, float]) -> str:
    return f"{_pct(pair[0])}-{_pct(pair[1])}"


def points_table(points: list[dict[str, object]]) -> list[str]:
    """Markdown rows of the operating points."""
    rows = ["| finding | target spec. | threshold | positives | sensitivity (95% CI) | specificity (95% CI) "
            "| PPV sample | NPV sample | reference prevalence | PPV there | NPV there |",
            "|---|---:|---:|---:|---|---|---|---|---:|---|---|"]
    for p in points:
        rows.append(
            f"| {p['finding']} | {p['target_specificity']:.2f} | {p['threshold']:.3f} | {p['positives']} "
            f"| {_pct(p['sensitivity'])} ({_ci(p['sensitivity_ci95'])}) "  # type: ignore[arg-type]
            f"| {_pct(p['specificity'])} ({_ci(p['specificity_ci95'])}) "  # type: ignore[arg-type]
            f"| {_pct(p['ppv'])} ({_ci(p['ppv_ci95'])}) | {_pct(p['npv'])} ({_ci(p['npv_ci95'])}) "  # type: ignore[arg-type]
            f"| {float(p['reference_prevalence']):.2%} "  # type: ignore[arg-type]
            f"| {_pct(p['ppv_reference'])} ({_ci(p['ppv_reference_ci95'])}) "  # type: ignore[arg-type]
            f"| {_pct(p['npv_reference'])} ({_ci(p['npv_reference_ci95'])}) |")  # type: ignore[arg-type]
    return rows


def triage_rows(before: Mapping[str, object], after: Mapping[str, object]) -> list[str]:
    """Markdown rows comparing the image-only triage under two threshold rules."""
    b, a = TriageAgreement(**before), TriageAgreement(**after)  # type: ignore[arg-type]
    rows = ["| figure | Youden points (1.1.0's rule) | operating points |", "|---|---:|---:|"]
    for name, fb, fa in (
        ("level 2 among images without a pneumothorax", f"{_pct(b.level2_rate_without_pneumothorax)} "
         f"({_ci(b.level2_rate_without_pneumothorax_ci95)})", f"{_pct(a.level2_rate_without_pneumothorax)} "
         f"({_ci(a.level2_rate_without_pneumothorax_ci95)})"),
        ("level-2 sensitivity for a pneumothorax", _pct(b.level2_sensitivity), _pct(a.level2_sensitivity)),
        ("level-2 PPV for a pneumothorax (sample prevalence)", _pct(b.level2_ppv), _pct(a.level2_ppv)),
        (f"level 2 among the {a.no_finding_images} images without any finding",
         _pct(b.level2_rate_no_finding), _pct(a.level2_rate_no_finding)),
        ("any suspected finding among images without any finding",
         _pct(b.any_suspected_rate_no_finding), _pct(a.any_suspected_rate_no_finding)),
        ("suspected findings per image, median (mean)", f"{b.median_suspected:g} ({b.mean_suspected})",
         f"{a.median_suspected:g} ({a.mean_suspected})"),
        ("agreement with the label-derived level", _pct(b.agreement), _pct(a.agreement)),
        ("quadratic weighted kappa (95% CI)", f"{b.kappa_quadratic:.2f} ({b.kappa_ci95[0]:.2f}-"
         f"{b.kappa_ci95[1]:.2f})", f"{a.kappa_quadratic:.2f} ({a.kappa_ci95[0]:.2f}-{a.kappa_ci95[1]:.2f})"),
    ):
        rows.append(f"| {name} | {fb} | {fa} |")
    return rows


def confusion_rows(result: Mapping[str, object]) -> list[str]:
    rows = ["| label-derived \\ image | " + " | ".join(str(level) for level in LEVELS) + " |",
            "|---|" + "---:|" * len(LEVELS)]
    for level, counts in zip(LEVELS, result["confusion"], strict=True):  # type: ignore[call-overload]
        rows.append(f"| {level} | " + " | ".join(str(c) for c in counts) + " |")
    return rows


def markdown(result: Mapping[str, object]) -> str:
    triage = result["triage"]
    assert isinstance(triage, dict)
    lines = ["## Operating points and the image-only triage", "",
             f"Rule: {result['rule']}. Data: {result['data']}. Reference prevalence: "
             f"{result['reference_prevalence_source']}. Intervals: 95%, 1,000 patient-bootstrap rounds. "
             "Not for clinical use.", "", *points_table(result["points"]), "",  # type: ignore[arg-type]
             "### Image-only triage against the label-derived level", "",
             "Both through the edge's rule table (pneumothorax -> 2; effusion, edema, consolidation, "
             "pneumonia -> 3; any other finding -> 4; none -> 5); no vital signs.", "",
             *triage_rows(triage["before"], triage["after"]), "",
             "Confusion matrix with the operating points (rows: label-derived level; columns: image "
             "level):", "", *confusion_rows(triage["after"]), ""]
    return "\n".join(lines)


def _print(console: Console, result: Mapping[str, object]) -> None:
    table = Table(title=f"operating points: {result['rule']}")
    for column in ("finding", "threshold", "sensitivity", "specificity", "PPV", "NPV"):
        table.add_column(column, justify="left" if column == "finding" else "right")
    for p in result["points"]:  # type: ignore[attr-defined]
        table.add_row(p["finding"], f"{p['threshold']:.3f}",
                      f"{_pct(p['sensitivity'])} ({_ci(p['sensitivity_ci95'])})",
                      f"{_pct(p['specificity'])} ({_ci(p['specificity_ci95'])})",
                      _pct(p["ppv"]), _pct(p["npv"]))
    console.print(table)
    triage = result["triage"]
    assert isinstance(triage, dict)
    console.print("\n".join(triage_rows(triage["before"], triage["after"])))
    console.print("\n".join(confusion_rows(triage["after"])))
