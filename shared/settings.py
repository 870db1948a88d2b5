"""Settings shared by the services, read with pydantic-settings.

Nothing here is built at import time: each service calls its own ``load_*``
function, so tests and the demo can pass values or environment variables.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr, model_validator


class MqttSettings(BaseModel):
    """How to reach the broker. Nested in each service's settings as ``mqtt``.

    Environment example: ``GOLDENHOUR_HUB_MQTT__PORT=1884``.
    """

    host: str = "127.0.0.1"
    port: int = Field(default=1883, ge=1, le=65535)
    protocol: Literal["5", "3.1.1"] = "5"
    """MQTT 5 unless the broker only speaks 3.1.1 (the in-process amqtt fallback)."""
    username: str | None = None
    password: SecretStr | None = None
    tls_ca_file: Path | None = None
    """Set to use TLS; the broker's certificate must chain to this CA and name the host."""
    tls_cert_file: Path | None = None
    """Client certificate (PEM) for a broker with ``require_certificate true``; needs TLS."""
    tls_key_file: Path | None = None
    """The private key of ``tls_cert_file`` (PEM, unencrypted)."""
    keepalive_s: int = Field(default=30, ge=5, le=3600)
    session_expiry_s: int = Field(default=24 * 3600, ge=0)
    """How long the broker keeps this client's subscriptions and queued QoS 1 messages."""
    publish_timeout_s: float = Field(default=10.0, gt=0)
    connect_timeout_s: float = Field(default=10.0, gt=0)
    reconnect_min_s: float = Field(default=0.5, gt=0)
    reconnect_max_s: float = Field(default=30.0, gt=0)

    @model_validator(mode="after")
    def _client_certificate_needs_tls(self) -> MqttSettings:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("tls_cert_file and tls_key_file go together")
        if self.tls_cert_file is not None and self.tls_ca_file is None:
            raise ValueError("a client certificate needs TLS: set tls_ca_file too")
        return self


LogFormat = Literal["text", "json"]
