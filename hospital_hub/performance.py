"""Model performance in the field, from the database: PPV and sensitivity per
finding from the ERs' verdicts (per model version, and per model version and
ambulance), and the drift of each device's predicted probabilities against
the validation distribution the model's manifest entry ships
(``reference_histogram``), with one dispatch alert per device and window.

The share of images each edge refused as not a chest radiograph comes from
the counts the edges report (:mod:`hospital_hub.intake`).
"""

from __future__ import annotations

import logging
import typing
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from hospital_hub.db import session_scope
from hospital_hub.field_stats import FieldCounts, Reference, drift
from hospital_hub.models import Case, CaseDiagnosis
from hospital_hub.outbox import enqueue
from hospital_hub.verdict_models import DriftAlert, Verdict
from shared import topics
from shared.findings import FINDINGS
from shared.manifest import DEFAULT_MODELS_DIR, ModelManifestError, load_manifest
from shared.messages import DispatchAlertV1

logger = logging.getLogger(__name__)

WINDOW = 50
"""Diagnoses per device and model in a drift window (the most recent ones)."""
MIN_CASES = 30
"""Fewer diagnoses than this in the window: no PSI is judged (too noisy)."""
PSI_ALERT = 0.25
"""A PSI above this on any finding is a significant shift: dispatch is alerted."""
RECENT_DIAGNOSES = 5000
"""How far back the drift check looks for devices (most recent diagnoses)."""
DRIFT_KIND = "model_drift"

References = dict[tuple[str, str], Reference]
"""(model name, version) -> its validation distribution."""


def model_key(name: str, version: str) -> str:
    """How a model version is named on the page and in metrics."""
    return f"{name} {version}"


def manifest_references(models_dir: Path = DEFAULT_MODELS_DIR) -> References:
    """Every classifier's ``reference_histogram`` from the manifest; models
    without one (or an unreadable manifest) are left out, so their drift says "no reference"."""
    try:
        manifest = load_manifest(models_dir)
    except ModelManifestError as exc:
        logger.warning("no drift references: manifest unreadable", extra={"error": str(exc)[:300]})
        return {}
    out: References = {}
    for entry in manifest.models:
        raw = getattr(entry, "reference_histogram", None)
        if entry.task != "classifier" or raw is None:
            continue
        try:
            out[(entry.name, entry.version)] = Reference.parse(raw)
        except (ValueError, KeyError, TypeError) as exc:
            logger.warning("bad reference histogram ignored",
                           extra={"model": entry.key, "error": str(exc)[:300]})
    return out


# -- PPV and sensitivity from the verdicts -------------------------------------------------------
def latest_verdicts(session: Session) -> list[Verdict]:
    """One verdict per diagnosis: the most recently given."""
    rows = session.exec(select(Verdict).order_by(col(Verdict.updated_at), col(Verdict.id))).all()
    return list({v.diagnosis_id: v for v in rows}.values())


def field_performance(session: Session) -> dict[str, Any]:
    """Counts, PPV and sensitivity per finding: per model version, and per model
    version and ambulance (see :mod:`hospital_hub.field_stats` for the definitions)."""
    by_model: dict[str, FieldCounts] = {}
    by_device: dict[tuple[str, str], FieldCounts] = {}
    for verdict in latest_verdicts(session):
        key = model_key(verdict.model_name, verdict.model_version)
        by_model.setdefault(key, FieldCounts()).add(verdict.suspected, verdict.judgements)
        by_device.setdefault((key, verdict.ambulance_id), FieldCounts()).add(
            verdict.suspected, verdict.judgements)
    return {
        "models": [{"model": k, **c.as_dict()} for k, c in sorted(by_model.items())],
        "devices": [{"model": k, "ambulance_id": a, **c.as_dict()}
                    for (k, a), c in sorted(by_device.items())],
    }


# -- drift -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DeviceDrift:
    """One device and model's latest window of predicted probabilities."""

    ambulance_id: str
    model_name: str
    model_version: str
    cases: int
    first_id: int
    last_id: int
    last_case_id: str
    psi: dict[str, float] | None
    """PSI per finding; None without a reference or with fewer than ``min_cases``."""
    status: str
    """``ok``, ``shift`` (above the alert level), ``no_reference`` or ``too_few_cases``."""

    @property
    def worst(self) -> tuple[str, float] | None:
        if not self.psi:
            return None
        finding = max(self.psi, key=lambda f: self.psi[f])  # type: ignore[index]
        return finding, self.psi[finding]


def _probabilities(payload: dict[str, Any]) -> list[float] | None:
    scores = {str(s.get("finding")): s.get("probability") for s in payload.get("findings", [])}
    try:
        return [float(scores[str(f)]) for f in FINDINGS]  # type: ignore[arg-type]
    except (KeyError, TypeError, ValueError):
        return None


def device_drift(session: Session, references: References, window: int = WINDOW,
                 min_cases: int = MIN_CASES, threshold: float = PSI_ALERT) -> list[DeviceDrift]:
    """The drift of every device and model seen among the recent diagnoses."""
    recent = session.exec(
        select(CaseDiagnosis.id, CaseDiagnosis.model_name, CaseDiagnosis.model_version,
               Case.ambulance_id)
        .where(CaseDiagnosis.case_id == Case.id, col(CaseDiagnosis.placeholder_model).is_(False))
        .order_by(col(CaseDiagnosis.id).desc()).limit(RECENT_DIAGNOSES)).all()
    devices = sorted({(a, n, v) for _, n, v, a in recent})
    out = []
    for ambulance_id, name, version in devices:
        rows = session.exec(
            select(CaseDiagnosis).where(CaseDiagnosis.case_id == Case.id,
                                        Case.ambulance_id == ambulance_id,
                                        CaseDiagnosis.model_name == name,
                                        CaseDiagnosis.model_version == version)
            .order_by(col(CaseDiagnosis.id).desc()).limit(window)).all()
        probabilities = [p for p in (_probabilities(r.payload) for r in rows) if p is not None]
        reference = references.get((name, version))
        psi = None
        if reference is None:
            status = "no_reference"
        elif len(probabilities) < min_cases:
            status = "too_few_cases"
        else:
            psi = drift(reference, probabilities)
            status = "shift" if max(psi.values()) > threshold else "ok"
        out.append(DeviceDrift(ambulance_id, name, version, len(probabilities),
                               int(rows[-1].id or 0), int(rows[0].id or 0), rows[0].case_id,
                               psi, status))
    return out


def alert_kinds() -> tuple[str, ...]:
    """The ``kind`` values the dispatch-alert contract accepts."""
    return typing.get_args(DispatchAlertV1.model_fields["kind"].annotation)


def check_drift(engine: Engine, sender: str, references: References | None = None,
                window: int = WINDOW, min_cases: int = MIN_CASES,
                threshold: float = PSI_ALERT) -> list[DriftAlert]:
    """Alert dispatch once per device, model and window whose PSI passes
    ``threshold`` with at least ``min_cases`` diagnoses. A device alerted
    once is alerted again only after a whole new window (no overlap)."""
    refs = manifest_references() if references is None else references
    if not refs:
        return []
    with Session(engine) as session:
        shifted = [d for d in device_drift(session, refs, window, min_cases, threshold)
                   if d.status == "shift"]
    raised = []
    for device in shifted:
        try:
            with session_scope(engine) as session:
                alert = _raise(session, sender, device)
        except IntegrityError:  # another hub worker raised it first
            continue
        if alert is not None:
            raised.append(alert)
    return raised


def _raise(session: Session, sender: str, device: DeviceDrift) -> DriftAlert | None:
    overlapping = session.exec(select(DriftAlert.id).where(
        DriftAlert.ambulance_id == device.ambulance_id,
        DriftAlert.model_name == device.model_name,
        DriftAlert.model_version == device.model_version,
        col(DriftAlert.window_last_id) >= device.first_id)).first()
    if overlapping is not None:
        return None
    finding, value = device.worst  # type: ignore[misc]
    alert = DriftAlert(ambulance_id=device.ambulance_id, model_name=device.model_name,
                       model_version=device.model_version, finding=finding, psi=value,
                       cases=device.cases, window_first_id=device.first_id,
                       window_last_id=device.last_id, case_id=device.last_case_id)
    text = (f"Model drift on {device.ambulance_id}: {model_key(device.model_name, device.model_version)}"
            f" predicts {finding} unlike its validation data (PSI {value:.2f} over the last "
            f"{device.cases} cases). Check the device and its X-ray unit; AI result, not for "
            "clinical use.")
    if DRIFT_KIND in alert_kinds():
        enqueue(session, topics.DISPATCH_ALERT,
                DispatchAlertV1(kind=DRIFT_KIND, ambulance_id=device.ambulance_id,  # type: ignore[arg-type]
                                triage_level=5, message=text[:500]),
                sender=sender, case_id=device.last_case_id)
        alert.published = True
    session.add(alert)
    session.flush()
    logger.warning("model drift: dispatch alerted" if alert.published else
                   "model drift (the dispatch-alert contract has no model_drift kind yet; "
                   "shown on /performance only)",
                   extra={"ambulance_id": device.ambulance_id, "finding": finding,
                          "psi": round(value, 3), "cases": device.cases})
    return alert


# -- Prometheus --------------------------------------------------------------------------------
class FieldPerformanceCollector(Collector):
    """Gauges read at scrape time from the shared database (same on every worker)."""

    def __init__(self, engine: Engine,
                 references: Callable[[], References] = manifest_references) -> None:
        self._engine = engine
        self._references = references

    def describe(self) -> list[Any]:
        """Nothing up front: :meth:`collect` talks to the database."""
        return []

    def collect(self) -> Iterator[Any]:
        try:
            with Session(self._engine) as session:
                figures = field_performance(session)
                drifts = device_drift(session, self._references())
                alerts = len(session.exec(select(DriftAlert.id)).all())
        except Exception as exc:  # a scrape must answer even when the database does not
            logger.warning("metrics: field performance unavailable", extra={"error": str(exc)[:300]})
            return
        counts = GaugeMetricFamily(
            "goldenhour_hub_field_verdict_findings",
            "ER verdicts per model and finding: tp (suspected, confirmed), fp (suspected, "
            "refuted), fn (not suspected, added as missed), tn (not suspected, confirmed).",
            labels=["model", "finding", "outcome"])
        rates = GaugeMetricFamily(
            "goldenhour_hub_field_rate",
            "PPV = tp/(tp+fp) and sensitivity = tp/(tp+fn) per model and finding, from ER "
            "verdicts (absent while the denominator is 0).", labels=["model", "finding", "rate"])
        for model in figures["models"]:
            for finding, c in model["findings"].items():
                for outcome in ("tp", "fp", "fn", "tn"):
                    counts.add_metric([model["model"], finding, outcome], c[outcome])
                for rate in ("ppv", "sensitivity"):
                    if c[rate]["value"] is not None:
                        rates.add_metric([model["model"], finding, rate], c[rate]["value"])
        yield counts
        yield rates
        psi = GaugeMetricFamily(
            "goldenhour_hub_drift_psi",
            "Population stability index of a device's latest window of predicted probabilities "
            "against the model's validation distribution, per finding.",
            labels=["ambulance_id", "model", "finding"])
        for d in drifts:
            for finding, value in (d.psi or {}).items():
                psi.add_metric([d.ambulance_id, model_key(d.model_name, d.model_version), finding],
                               value)
        yield psi
        yield GaugeMetricFamily("goldenhour_hub_drift_alerts_stored",
                                "Model-drift alerts raised (whole hub).", value=alerts)
