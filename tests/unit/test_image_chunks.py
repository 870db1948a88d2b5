"""Chunking an image and reassembling it in the hub, whatever the order."""

from __future__ import annotations

import hashlib
import os

import pytest
from sqlmodel import Session, select

from edge_agent.chunks import image_chunks
from hospital_hub.models import CaseEvent, CaseImage, ImageChunk
from shared import topics
from shared.messages import CHUNK_BYTES, Envelope, ImageChunkV1, encode
from tests import samples
from tests.hub_world import World


def test_chunks_are_bounded_and_verifiable() -> None:
    data = os.urandom(CHUNK_BYTES * 2 + 123)
    chunks = image_chunks(data, "application/dicom", "amb-1")
    assert [len(c.data) for c in chunks] == [CHUNK_BYTES, CHUNK_BYTES, 123]
    assert {c.count for c in chunks} == {3} and [c.index for c in chunks] == [0, 1, 2]
    assert all(c.image_sha256 == hashlib.sha256(data).hexdigest() for c in chunks)
    assert all(len(encode(Envelope.wrap(c, sender="amb-1", case_id="c"))) < 1024 * 1024
               for c in chunks)
    with pytest.raises(ValueError, match="sha256"):
        ImageChunkV1(**{**chunks[0].model_dump(), "data": b"tampered"})


def _send(world: World, chunk: ImageChunkV1) -> None:
    data = encode(Envelope.wrap(chunk, sender="amb-1", case_id=samples.CASE_ID))
    world.edge.communicator.publish(
        topics.CASE_IMAGE.topic(ambulance_id="amb-1", case_id=samples.CASE_ID), data)


def _image(world: World) -> CaseImage | None:
    with Session(world.hub.engine) as session:
        return session.exec(select(CaseImage)).first()


def test_out_of_order_and_duplicate_chunks_assemble_once(world: World) -> None:
    world.send_case()
    data = os.urandom(5000)
    chunks = image_chunks(data, "image/png", "amb-1", chunk_bytes=1000)
    for chunk in [chunks[4], chunks[0], chunks[0], chunks[2], chunks[1], chunks[4]]:
        _send(world, chunk)
    image = _image(world)
    assert image is not None and not image.complete and image.received_chunks == 4
    _send(world, chunks[3])
    image = _image(world)
    assert image is not None and image.complete and image.data == data
    _send(world, chunks[2])  # a late duplicate changes nothing
    with Session(world.hub.engine) as session:
        assert session.exec(select(ImageChunk)).all() == []
        kinds = [e.kind for e in session.exec(select(CaseEvent)).all()]
    assert kinds.count("image_received") == 1
    statuses = [p.message for _, p in world.published(topics.CASE_STATUS)]
    assert any("Full image received and verified" in m for m in statuses)


def test_an_image_that_fails_its_digest_is_discarded(world: World) -> None:
    world.send_case()
    chunks = image_chunks(b"A" * 1500, "image/png", "amb-1", chunk_bytes=1000)
    lie = "0" * 64
    for chunk in chunks:
        _send(world, chunk.model_copy(update={"image_sha256": lie}))
    image = _image(world)
    assert image is not None and not image.complete and image.data is None
    with Session(world.hub.engine) as session:
        assert [e.kind for e in session.exec(select(CaseEvent)).all()][-1] == "image_corrupt"
        assert session.exec(select(ImageChunk)).all() == []
