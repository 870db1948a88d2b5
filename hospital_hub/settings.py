"""Hub settings (environment prefix ``GOLDENHOUR_HUB_``), built by :func:`load_hub_settings`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field
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


def load_hub_settings(**overrides: Any) -> HubSettings:
    """Read settings from the environment, with ``overrides`` taking precedence."""
    return HubSettings(**overrides)
