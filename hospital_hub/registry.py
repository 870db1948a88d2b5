"""The ER registry: import from CSV with errors that name the row."""

from __future__ import annotations

import csv
import logging
from pathlib import Path

from pydantic import ValidationError
from sqlalchemy.engine import Engine

from hospital_hub.db import session_scope
from hospital_hub.models import Hospital, HospitalCreate
from shared.errors import ConfigurationError
from shared.ids import is_valid_id

logger = logging.getLogger(__name__)


def read_registry_csv(path: Path) -> list[HospitalCreate]:
    """Parse and validate every row of a registry CSV.

    Raises:
        ConfigurationError: the file is missing, or a row is invalid (the
            message names the line and field), or an id repeats.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigurationError(f"cannot read hospital registry {path}: {exc}") from exc
    hospitals: list[HospitalCreate] = []
    seen: set[str] = set()
    problems: list[str] = []
    for line, row in enumerate(csv.DictReader(text.splitlines()), start=2):
        try:
            hospital = HospitalCreate.model_validate(row)
        except ValidationError as exc:
            fields = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
            problems.append(f"{path.name} line {line}: {fields}")
            continue
        if not is_valid_id(hospital.id):
            problems.append(f"{path.name} line {line}: id {hospital.id!r} is not a valid identifier")
        elif hospital.id in seen:
            problems.append(f"{path.name} line {line}: duplicate id {hospital.id!r}")
        else:
            seen.add(hospital.id)
            hospitals.append(hospital)
    if problems:
        raise ConfigurationError("invalid hospital registry:\n" + "\n".join(problems))
    if not hospitals:
        raise ConfigurationError(f"hospital registry {path} has no rows")
    return hospitals


def import_registry(engine: Engine, path: Path) -> int:
    """Insert or update the hospitals of ``path``; return how many were imported."""
    hospitals = read_registry_csv(path)
    with session_scope(engine) as session:
        for hospital in hospitals:
            session.merge(Hospital.model_validate(hospital))
    logger.info("hospital registry imported", extra={"path": str(path), "hospitals": len(hospitals)})
    return len(hospitals)
