"""Splitting an image file into verified chunks for a weak link."""

from __future__ import annotations

import hashlib
from typing import Literal

from shared.messages import CHUNK_BYTES, ImageChunkV1

MediaType = Literal["application/dicom", "image/png", "image/jpeg"]
MEDIA_TYPES: dict[str, MediaType] = {
    "dicom": "application/dicom", "png": "image/png", "jpeg": "image/jpeg"}


def image_chunks(data: bytes, media_type: MediaType, ambulance_id: str,
                 chunk_bytes: int = CHUNK_BYTES, *, sha256: str | None = None) -> list[ImageChunkV1]:
    """Cut ``data`` into chunks of at most ``chunk_bytes``, each with its digest
    and the digest of the whole (``sha256`` when the caller has it already)."""
    if not 0 < chunk_bytes <= CHUNK_BYTES:
        raise ValueError(f"chunk size must be 1..{CHUNK_BYTES} bytes")
    whole = sha256 or hashlib.sha256(data).hexdigest()
    parts = [data[i:i + chunk_bytes] for i in range(0, len(data), chunk_bytes)]
    return [ImageChunkV1(ambulance_id=ambulance_id, image_sha256=whole, media_type=media_type,
                         total_bytes=len(data), index=index, count=len(parts),
                         sha256=hashlib.sha256(part).hexdigest(), data=part)
            for index, part in enumerate(parts)]
