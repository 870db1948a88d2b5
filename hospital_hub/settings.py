"""Hub settings (environment prefix ``GOLDENHOUR_HUB_``), built by :func:`load_hub_settings`."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.ids import Identifier
from shared.settings import LogFormat, MqttSettings

SAMPLE_REGISTRY = Path(__file__).parent / "data" / "sample_hospitals.csv"


class HubSettings(BaseSettings):
    """Everything one hub worker needs. Nested fields use ``__``:
    ``GOLDENHOUR_HUB_MQTT__PORT=1884``."""

    model_config = SettingsConfigDict(
        env_prefix="GOLDENHOUR_HUB_", env_nested_delimiter="__", extra="forbid"
    )

    hub_id: Identifier = "hub-1"
    """Unique per worker: it is the MQTT client id and the status topic."""
    database_url: str = "sqlite:///goldenhour-hub.db"
    """SQLAlchemy URL; PostgreSQL as ``postgresql+psycopg://user:pass@host/db``."""
    registry_csv: Path = SAMPLE_REGISTRY
    """Hospitals loaded at start-up (inserted or updated by id)."""
    offer_count: int = Field(default=3, ge=1, le=20)
    offer_ttl_s: float = Field(default=120.0, gt=0)
    """An offer not answered in this time counts as declined."""
    capacity_stale_s: float = Field(default=600.0, gt=0)
    """Capacity reports older than this are treated as unknown when ranking."""
    routing_url: str | None = None
    """OSRM-compatible routing service (``/table`` API); unset: straight-line estimate."""
    routing_timeout_s: float = Field(default=2.0, gt=0)
    dedup_retention_s: float = Field(default=7 * 24 * 3600, gt=0)
    """How long message ids are remembered for deduplication and sent
    messages kept in the outbox."""
    share_group: Identifier | None = None
    """Set on every worker of a multi-worker hub: MQTT 5 shared subscription group."""
    maintenance_interval_s: float = Field(default=0.5, gt=0)
    """How often the outbox is flushed and expired offers are handled."""
    http_host: str = "127.0.0.1"
    http_port: int = Field(default=8000, ge=0, le=65535)
    mqtt: MqttSettings = Field(default_factory=MqttSettings)
    log_level: str = "INFO"
    log_format: LogFormat = "text"
    metrics_token: SecretStr | None = None
    """When set, ``GET /metrics`` needs ``Authorization: Bearer <token>``; unset, it is
    open like ``/health`` (its figures hold no patient data). See docs/deploy.md."""
    secret_key: SecretStr | None = None
    """Signs the session cookies of the web pages. Unset: a random key is made
    once and kept in ``secret_key_file``, by default beside a SQLite database
    (``<database file>.secret-key``); with any other database it lives only as
    long as the process, so set this (the same on every ``hub serve``) there."""
    secret_key_file: Path | None = None
    """Where the generated key is kept (default: beside the SQLite database)."""
    session_max_age_s: float = Field(default=12 * 3600, gt=0)
    """A sign-in lasts this long (one shift)."""
    cookie_secure: bool = False
    """Send the session cookie over HTTPS only (set behind a TLS proxy)."""
    login_max_failures: int = Field(default=5, ge=1)
    """Failed sign-ins allowed per username and per client address in ``login_window_s``."""
    login_window_s: float = Field(default=300.0, gt=0)
    audit_view_interval_s: float = Field(default=600.0, ge=0)
    """Repeated views of a case by the same user through the same page or route
    within this time are logged once (pages refresh every few seconds)."""
    retention_days: float | None = Field(default=30.0, gt=0)
    """After this many days a case's images and personal data are deleted;
    the anonymous statistics stay. None keeps everything."""
    pacs_calling_ae_title: str = Field(default="GOLDENHOUR", pattern=r"^[\x20-\x5b\x5d-\x7e]{1,16}$")
    """The hub's own AE title when it pushes accepted cases to an ER's PACS
    (the PACS itself is set per hospital in the registry; docs/hospital-formats.md)."""
    pacs_interval_s: float = Field(default=2.0, gt=0)
    """How often due PACS pushes are sent."""
    pacs_retry_initial_s: float = Field(default=5.0, gt=0)
    pacs_retry_max_s: float = Field(default=600.0, gt=0)
    """A failed push is retried after ``pacs_retry_initial_s``, doubling up to this."""
    pacs_timeout_s: float = Field(default=30.0, gt=0)
    """Connection, association and C-STORE response timeout."""
    model_offer_dir: Path | None = None
    """The signed model release offered to edges (``goldenhour models publish
    --hub-dir``), served at ``/api/models/offer``; None: no offer."""
    # -- load: positions, overload and ER status (docs/scaling.md) ----------------------
    position_lane: Literal["auto", "process", "thread"] = "auto"
    """Where ambulance positions are handled, always on a broker connection of their
    own: ``process`` (a child process at lower CPU priority), ``thread`` (in the
    worker), ``auto``: a process with PostgreSQL, a thread with SQLite."""
    position_flush_interval_s: float = Field(default=1.0, gt=0)
    """How often the newest position of each ambulance is written (one upsert)."""
    position_max_lag_s: float = Field(default=10.0, gt=0)
    """A position lane this far behind drops the broker's queue of stale reports."""
    position_lane_nice: int = Field(default=10, ge=0, le=19)
    """How much lower the position lane's process runs than the worker (``nice``)."""
    overload_lag_s: float = Field(default=1.0, gt=0)
    """A worker whose case messages wait longer than this (from sent to handled)
    is overloaded: it defers capacity refreshes and says so in readiness and metrics."""
    er_offline_grace_s: float = Field(default=30.0, ge=0)
    """An ER whose console or gateway went offline (its last will) gets no new
    offers at once; after this grace its open offers pass to the next ERs."""
    metrics_port: int | None = Field(default=None, ge=1, le=65535)
    """``hub worker`` (no HTTP pages) serves ``/metrics`` on ``http_host`` at this port."""


def load_hub_settings(**overrides: Any) -> HubSettings:
    """Read settings from the environment, with ``overrides`` taking precedence."""
    return HubSettings(**overrides)
