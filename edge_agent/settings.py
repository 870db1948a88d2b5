"""Edge agent settings (environment prefix ``GOLDENHOUR_EDGE_``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from edge_agent.backends import BackendConfig, OpenVinoConfig
from edge_agent.update_settings import ModelUpdateSettings
from shared.ids import Identifier
from shared.manifest import DEFAULT_MODELS_DIR
from shared.settings import LogFormat, MqttSettings

PLACEHOLDER = "placeholder"


class EdgeSettings(BaseSettings):
    """One ambulance computer. Nested: ``GOLDENHOUR_EDGE_MQTT__HOST=broker``."""

    model_config = SettingsConfigDict(
        env_prefix="GOLDENHOUR_EDGE_", env_nested_delimiter="__", extra="forbid"
    )

    ambulance_id: Identifier = "amb-1"
    lat: float = Field(default=42.3601, ge=-90, le=90)
    lon: float = Field(default=-71.0589, ge=-180, le=180)
    """Start position; a GPS source replaces it in a real deployment."""
    position_interval_s: float = Field(default=20.0, gt=0)
    """Seconds between position reports with no case under way (the hub keeps only
    the newest; docs/scaling.md)."""
    position_interval_active_s: float = Field(default=1.0, gt=0)
    """Seconds between position reports while a case is under way: from when it is
    queued to its handover or cancellation (ranking and the ER's live ETA use it)."""
    position_active_for_s: float = Field(default=7200.0, gt=0)
    """A case counts as under way for at most this long after it was queued."""
    state_dir: Path = Path(".goldenhour-edge")
    """Where the durable outbox lives (one SQLite file per ambulance)."""
    outbox_max_mb: float = Field(default=512.0, gt=0)
    """Disk budget of the outbox; a case that would pass it is refused loudly."""
    confirm_timeout_s: float = Field(default=60.0, gt=0)
    """Send a case again if the hub has not confirmed it in this time."""
    send_full_image: bool = True
    """Send the full-resolution image in chunks after the diagnosis."""
    decision_timeout_s: float = Field(default=300.0, gt=0)
    mqtt: MqttSettings = Field(default_factory=MqttSettings)
    http_port: int | None = Field(default=None, ge=1, le=65535)
    """Serve the crew page on this port (``goldenhour edge run --http-port``); None: off."""
    http_host: str = "127.0.0.1"
    """Where the crew page listens; loopback only unless deliberately changed."""
    crew_pin: SecretStr | None = None
    """When set, the crew page asks for this PIN before anything else."""
    crew_session_secret: SecretStr | None = None
    """Key that signs the crew page's session cookie; random per start when unset
    (sessions then end with a restart)."""
    crew_session_ttl_s: float = Field(default=12 * 3600.0, gt=0)
    """How long a crew page session lasts (one shift)."""
    dicom_port: int | None = Field(default=None, ge=1, le=65535)
    """Receive X-rays by DICOM C-STORE on this port (``edge run --dicom-port``); None: off."""
    dicom_host: str = "0.0.0.0"
    """The X-ray unit is another box on the ambulance's network, so all interfaces."""
    dicom_ae_title: str = Field(default="GOLDENHOUR", max_length=16)
    dicom_inbox_retention_h: float = Field(default=24.0, gt=0)
    """How long a refused DICOM object is kept (0600, with its reason) in ``<state>/dicom-inbox/refused``;
    accepted ones are deleted as soon as their case is in the outbox."""
    dicom_inbox_max_mb: float = Field(default=256.0, gt=0)
    """The most that refused DICOM objects may hold; the oldest are deleted first."""
    watch_dir: Path | None = None
    """Diagnose every X-ray file dropped into this folder (``edge run --watch``)."""
    model: str = "chest-effnetlite0"
    """Classifier name in the manifest; ``placeholder`` runs the labelled non-model
    stand-in (demos of the messaging only)."""
    model_version: str | None = None
    """None: the newest version of ``model`` in the manifest."""
    models_dir: Path = DEFAULT_MODELS_DIR
    guard_models_dir: Path = DEFAULT_MODELS_DIR
    """The models folder the chest-radiograph guard (``chest-guard``) is read from
    when the edge starts; the package's own by default (model updates never
    replace the guard, so it need not be in ``models_dir``)."""
    detector: str | None = "chest-yolo"
    """Box detector in the manifest; None (or absent from the manifest): heat-map regions only."""
    backend: BackendConfig = Field(default_factory=OpenVinoConfig)
    """Inference backend by kind: ``GOLDENHOUR_EDGE_BACKEND__KIND=onnxruntime``."""
    model_update: ModelUpdateSettings = Field(default_factory=ModelUpdateSettings)
    """Signed model updates from the hub (``GOLDENHOUR_EDGE_MODEL_UPDATE__URL``); off by default."""
    log_level: str = "INFO"
    log_format: LogFormat = "text"


def load_edge_settings(**overrides: Any) -> EdgeSettings:
    """Read settings from the environment, with ``overrides`` taking precedence."""
    return EdgeSettings(**overrides)
