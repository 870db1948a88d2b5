"""The key that signs the hub's session cookies."""

from __future__ import annotations

from pathlib import Path


def test_a_short_session_key_file_is_replaced(tmp_path: Path) -> None:
    """A crash between creating the key file and writing it must not leave an
    empty signing key behind."""
    from hospital_hub.auth import load_secret_key
    from hospital_hub.settings import load_hub_settings

    key_file = tmp_path / "hub.secret-key"
    key_file.write_bytes(b"")
    settings = load_hub_settings(database_url=f"sqlite:///{tmp_path / 'hub.db'}",
                                 secret_key_file=key_file)
    key = load_secret_key(settings)
    assert len(key) >= 32 and key_file.read_bytes() == key
    assert load_secret_key(settings) == key  # kept from then on
