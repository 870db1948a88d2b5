"""``goldenhour hub export-labelled``: the command line of :mod:`hospital_hub.export_labelled`."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer


def _since(value: str) -> datetime:
    try:
        day = datetime.fromisoformat(value)
    except ValueError as exc:
        raise typer.BadParameter(f"{value!r} is not a date (YYYY-MM-DD or ISO 8601)") from exc
    return day if day.tzinfo else day.replace(tzinfo=UTC)


def export_labelled_command(
    since: Annotated[str, typer.Option(help="Verdicts given on or after this date "
                                            "(YYYY-MM-DD, UTC, or an ISO 8601 time).")],
    out: Annotated[Path, typer.Option(help="A new folder: labels.csv and images/ are written there.")],
    include_partial: Annotated[bool, typer.Option(
        help="Also write images with findings not assessed (named in 'Not Assessed'; "
             "training reads them as absent).")] = False,
) -> None:
    """Write the ER-judged images and a Data_Entry-style labels.csv for
    'goldenhour train classify --extra-labelled DIR' (settings: GOLDENHOUR_HUB_*;
    the patient pseudonyms are keyed with the hub's secret key)."""
    from hospital_hub.auth import load_secret_key
    from hospital_hub.db import make_engine, migrate
    from hospital_hub.export_labelled import export_labelled
    from hospital_hub.settings import load_hub_settings
    from shared.errors import GoldenhourError

    start = _since(since)
    settings = load_hub_settings()
    engine = make_engine(settings.database_url)
    try:
        migrate(engine)
        summary = export_labelled(engine, load_secret_key(settings), start, out,
                                  include_partial=include_partial)
    except GoldenhourError as exc:
        typer.echo(f"cannot export: {exc}", err=True)
        raise typer.Exit(1) from exc
    finally:
        engine.dispose()
    typer.echo(f"{out}: {summary.images} images of {summary.patients} patients; left out: "
               f"{summary.partial_skipped} with findings not assessed, {summary.no_image} without "
               f"a full image, {summary.unreadable} unreadable")
