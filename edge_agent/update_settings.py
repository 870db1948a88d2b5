"""Settings of the edge's model updater (``GOLDENHOUR_EDGE_MODEL_UPDATE__*``)."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator


class ModelUpdateSettings(BaseModel):
    """Where to look for signed model releases and how to judge them.
    ``GOLDENHOUR_EDGE_MODEL_UPDATE__URL=https://hub/api/models/offer``."""

    model_config = ConfigDict(extra="forbid")

    url: str | None = None
    """The hub's offer URL (``.../api/models/offer``); files are fetched from
    ``.../api/models/files/...`` beside it. None: no updates."""
    token: SecretStr | None = None
    """This ambulance's service-client API token on the hub (``goldenhour hub create-token``)."""
    public_key: Path | None = None
    """The release signers' ed25519 public key (PEM or raw base64); required with ``url``."""
    interval_s: float = Field(default=900.0, gt=0)
    """Seconds between polls of the offer."""
    timeout_s: float = Field(default=30.0, gt=0)
    """Per HTTP request (connect and each read)."""
    max_mb: float = Field(default=1024.0, gt=0)
    """A release whose files add up to more than this is refused before any download."""
    probation: int = Field(default=3, ge=0)
    """The first this many real diagnoses on a new model are watched: one that fails
    (other than for a bad image) rolls back to the previous model."""
    state_file: Path | None = None
    """Installed and rejected releases (default: ``<state_dir>/model-updates.json``)."""

    @model_validator(mode="after")
    def _key_with_url(self) -> ModelUpdateSettings:
        if self.url and self.public_key is None:
            raise ValueError("model updates need public_key (the signers' public key) with url")
        return self
