"""Full-resolution images: chunks in, one verified image out.

Chunks may arrive twice (at-least-once) or out of order (a resumed upload, two
hub workers); each is stored once, and when the last one is in, the image is
assembled, its sha256 checked against the one the ambulance computed, and
the chunks dropped. A mismatch is logged and the chunks discarded, so a
resend can succeed.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any

from sqlalchemy.engine import Engine
from sqlmodel import col, select

from hospital_hub import messages
from hospital_hub.cases import lock_case, record_event
from hospital_hub.db import session_scope
from hospital_hub.models import CaseImage, ImageChunk, utcnow
from shared.errors import CaseError, NotFound
from shared.messages import Envelope, ImageChunkV1

logger = logging.getLogger(__name__)


class ImageStore:
    """Stores chunks and assembles images."""

    def __init__(self, engine: Engine, sender: str) -> None:
        self._engine = engine
        self._sender = sender

    def receive_chunk(self, case_id: str, envelope: Envelope[Any]) -> bool:
        """Store one chunk; returns True when it completed its image.

        Raises:
            NotFound: the case is not known (yet: its diagnosis may be late).
            CaseError: the chunk disagrees with chunks already received.
        """
        chunk: ImageChunkV1 = envelope.payload
        with session_scope(self._engine) as session:
            case = lock_case(session, case_id)
            if case is None:
                raise NotFound(f"no case {case_id} for an image chunk")
            if case.ambulance_id != chunk.ambulance_id:
                raise CaseError(f"case {case_id} belongs to ambulance {case.ambulance_id}")
            image = session.exec(select(CaseImage).where(
                CaseImage.case_id == case_id,
                CaseImage.image_sha256 == chunk.image_sha256)).first()
            if image is None:
                image = CaseImage(case_id=case_id, image_sha256=chunk.image_sha256,
                                  media_type=chunk.media_type, total_bytes=chunk.total_bytes,
                                  chunk_count=chunk.count)
                session.add(image)
                session.flush()
            elif (image.total_bytes, image.chunk_count) != (chunk.total_bytes, chunk.count):
                raise CaseError(f"chunk {chunk.index} of image {chunk.image_sha256[:12]} "
                                "disagrees with the chunks already received")
            if image.complete:
                return False
            assert image.id is not None
            known = session.exec(select(ImageChunk.id).where(
                ImageChunk.image_id == image.id, ImageChunk.index == chunk.index)).first()
            if known is not None:
                return False  # a duplicate
            session.add(ImageChunk(image_id=image.id, index=chunk.index, data=chunk.data))
            image.received_chunks += 1
            session.add(image)
            if image.received_chunks < image.chunk_count:
                return False
            parts = session.exec(select(ImageChunk).where(ImageChunk.image_id == image.id)
                                 .order_by(col(ImageChunk.index))).all()
            data = b"".join(part.data for part in parts)
            for part in parts:
                session.delete(part)
            if len(data) != image.total_bytes or \
                    hashlib.sha256(data).hexdigest() != image.image_sha256:
                image.received_chunks = 0
                record_event(session, case, "image_corrupt", chunk.ambulance_id,
                             image_sha256=image.image_sha256)
                logger.error("image failed verification; chunks discarded",
                             extra={"case_id": case_id, "image_sha256": image.image_sha256})
                return False
            image.data, image.complete, image.completed_at = data, True, utcnow()
            record_event(session, case, "image_received", chunk.ambulance_id,
                         image_sha256=image.image_sha256, bytes=len(data))
            messages.case_status(session, self._sender, case,
                                 f"Full image received and verified ({len(data)} bytes).")
        logger.info("image assembled and verified",
                    extra={"case_id": case_id, "bytes": chunk.total_bytes, "chunks": chunk.count})
        return True
