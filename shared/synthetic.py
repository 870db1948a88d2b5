"""The mark that every synthetic (GAN-generated) image carries, and how to read it.

A synthetic image is never a patient. ``goldenhour train synthesize`` writes
this mark into each PNG (a ``tEXt`` chunk named :data:`MARK_KEY` holding JSON)
and into its ``synthetic.json`` manifest. Readers refuse marked images where
a real one is required: the edge never diagnoses one (so it can never reach a
clinician as a case), and the training loaders never put one in an
evaluation set. Pure Python, so every service can check without extra packages.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

MARK_KEY = "goldenhour-synthetic"
"""PNG text chunk key (and JSON field) that marks an image as generated."""

FILE_PREFIX = "synthetic-"
"""Every synthetic file name starts with this, so people see it too."""


def mark_text(generator: str, checkpoint_sha256: str, labels: list[str], seed: int) -> str:
    """The JSON stored under :data:`MARK_KEY`."""
    return json.dumps({"synthetic": True, "generator": generator, "checkpoint_sha256": checkpoint_sha256,
                       "labels": labels, "seed": seed, "not_for_clinical_use": True}, sort_keys=True)


def read_mark(info: Mapping[str, Any]) -> dict[str, Any] | None:
    """The mark in an image's metadata (Pillow's ``image.info``/``text``), or None.

    A key that is present but unreadable still counts as synthetic: the safe answer.
    """
    value = info.get(MARK_KEY)
    if value is None:
        return None
    try:
        parsed = json.loads(value if isinstance(value, str) else bytes(value).decode("utf-8", "replace"))
    except (TypeError, ValueError):
        return {"synthetic": True}
    return parsed if isinstance(parsed, dict) else {"synthetic": True}
