"""The ER registry: import from CSV or GeoJSON with errors that name the row."""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from sqlalchemy.engine import Engine

from hospital_hub.db import session_scope
from hospital_hub.models import Hospital, HospitalBase, HospitalCreate
from shared.errors import ConfigurationError
from shared.ids import is_valid_id

logger = logging.getLogger(__name__)


def _csv_rows(path: Path, text: str) -> Iterator[tuple[str, dict[str, Any]]]:
    for line, row in enumerate(csv.DictReader(text.splitlines()), start=2):
        yield f"{path.name} line {line}", dict(row)


def _geojson_rows(path: Path, text: str) -> Iterator[tuple[str, dict[str, Any]]]:
    try:
        collection = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigurationError(f"{path.name}: not valid JSON ({exc})") from exc
    if not isinstance(collection, dict) or collection.get("type") != "FeatureCollection":
        raise ConfigurationError(f"{path.name}: expected a GeoJSON FeatureCollection")
    for number, feature in enumerate(collection.get("features", []), start=1):
        where = f"{path.name} feature {number}"
        try:
            geometry = feature["geometry"]
            if geometry["type"] != "Point":
                raise ValueError(f"geometry is {geometry['type']}, not Point")
            lon, lat = geometry["coordinates"][:2]
            yield where, {**feature.get("properties", {}), "lat": lat, "lon": lon}
        except (KeyError, TypeError, ValueError) as exc:
            yield where, {"__error__": f"geometry: {exc}"}


def read_registry(path: Path) -> list[HospitalCreate]:
    """Parse and validate every hospital of a CSV or GeoJSON registry.

    Raises:
        ConfigurationError: the file is missing, or a row is invalid (the
            message names the line or feature and the field), or an id repeats.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigurationError(f"cannot read hospital registry {path}: {exc}") from exc
    geojson = path.suffix.lower() in (".geojson", ".json")
    rows = _geojson_rows(path, text) if geojson else _csv_rows(path, text)
    hospitals: list[HospitalCreate] = []
    seen: set[str] = set()
    problems: list[str] = []
    for where, row in rows:
        if "__error__" in row:
            problems.append(f"{where}: {row['__error__']}")
            continue
        try:
            hospital = HospitalCreate.model_validate(row)
        except ValidationError as exc:
            fields = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
            problems.append(f"{where}: {fields}")
            continue
        if not is_valid_id(hospital.id):
            problems.append(f"{where}: id {hospital.id!r} is not a valid identifier")
        elif hospital.id in seen:
            problems.append(f"{where}: duplicate id {hospital.id!r}")
        else:
            seen.add(hospital.id)
            hospitals.append(hospital)
    if problems:
        raise ConfigurationError("invalid hospital registry:\n" + "\n".join(problems))
    if not hospitals:
        raise ConfigurationError(f"hospital registry {path} has no hospitals")
    return hospitals




def import_registry(engine: Engine, path: Path) -> int:
    """Insert new hospitals and update the registry facts of known ones; live
    capacity is left as it is. Returns how many were imported."""
    hospitals = read_registry(path)
    registry_fields = set(HospitalBase.model_fields)
    with session_scope(engine) as session:
        for hospital in hospitals:
            stored = session.get(Hospital, hospital.id)
            if stored is None:
                session.add(Hospital.model_validate(hospital))
                continue
            for name in registry_fields:
                setattr(stored, name, getattr(hospital, name))
            session.add(stored)
    logger.info("hospital registry imported",
                extra={"path": str(path), "hospitals": len(hospitals)})
    return len(hospitals)
