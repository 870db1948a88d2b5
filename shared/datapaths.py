"""Where the team's data folder is: ``GOLDENHOUR_DATA_DIR``, else ``../shared/data``
beside the checkout when present. Nothing is ever copied into the repository."""

from __future__ import annotations

import os
from pathlib import Path

ENV_VAR = "GOLDENHOUR_DATA_DIR"
REPO_ROOT = Path(__file__).resolve().parent.parent


def data_dir() -> Path | None:
    """The data folder, or None when neither the variable nor the default exists."""
    configured = os.environ.get(ENV_VAR)
    if configured:
        path = Path(configured).expanduser()
        return path if path.is_dir() else None
    default = REPO_ROOT.parent / "shared" / "data"
    return default if default.is_dir() else None
