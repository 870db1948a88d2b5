"""The project's exception hierarchy, rooted in :class:`GoldenhourError`.

Callers catch the narrowest class that they can act on; a service's outer loop
catches :class:`GoldenhourError` to log and carry on.
"""

from __future__ import annotations


class GoldenhourError(Exception):
    """Root of every error that goldenhour raises on purpose."""


class ConfigurationError(GoldenhourError):
    """Settings or files needed at start-up are missing or invalid."""


class ContractError(GoldenhourError):
    """A message does not honour the message contract."""


class MalformedMessage(ContractError):
    """Bytes that are not a valid msgpack envelope, or fields of the wrong type."""


class OversizeMessage(ContractError):
    """A message larger than the limit for its kind."""


class UnknownSchema(ContractError):
    """An envelope names a schema that this build does not know."""


class UnsupportedVersion(ContractError):
    """An envelope names a known schema at a version this build cannot read."""


class TopicMismatch(ContractError):
    """A topic outside the contract, or one that disagrees with the envelope."""


class MessagingError(GoldenhourError):
    """The broker could not be reached or did not acknowledge in time."""


class BrokerUnavailable(MessagingError):
    """No connection to the broker."""


class PublishTimeout(MessagingError):
    """The broker did not acknowledge a publish within the timeout."""


class BrokerRefused(BrokerUnavailable):
    """The broker refused the connection (CONNACK failure: bad user name or
    password, not authorized); ``reason_code`` is the MQTT reason code."""

    def __init__(self, message: str, reason_code: int | None = None) -> None:
        super().__init__(message)
        self.reason_code = reason_code


class PublishRefused(MessagingError):
    """The broker acknowledged a publish with a failure reason code (MQTT 5
    PUBACK, e.g. 0x87 Not authorized when the ACL forbids the topic)."""

    def __init__(self, message: str, reason_code: int | None = None) -> None:
        super().__init__(message)
        self.reason_code = reason_code


class SubscribeRefused(MessagingError):
    """The broker answered a subscription with a failure reason code (SUBACK,
    e.g. 0x87 Not authorized, or 0x80 on MQTT 3.1.1)."""

    def __init__(self, message: str, reason_code: int | None = None) -> None:
        super().__init__(message)
        self.reason_code = reason_code


class BrokerStartError(MessagingError):
    """An embedded broker could not be started."""


class InputImageError(GoldenhourError):
    """An image that cannot be read or is not usable for diagnosis."""


class CaseError(GoldenhourError):
    """A case-level operation is not allowed in the case's current state."""


class NotFound(CaseError):
    """A case, offer or hospital that does not exist."""


# --- Image ingest (edge_agent/imaging.py, edge_agent/ood.py): specific kinds of
# InputImageError, so that a caller can tell the crew what to do about each.


class CorruptImageError(InputImageError):
    """A file that is truncated, damaged or not the format it claims to be."""


class NoPixelDataError(InputImageError):
    """A DICOM object that carries no image (a report, a structured document)."""


class UnsupportedImageError(InputImageError):
    """A readable image in a form the edge does not handle (transfer syntax
    without a decoder, bit depth, several frames, file format)."""


class PhotometricInterpretationError(UnsupportedImageError):
    """A colour (RGB, YBR, palette) or unknown DICOM photometric interpretation:
    a radiograph is MONOCHROME1 or MONOCHROME2."""


class ImageTooLargeError(InputImageError):
    """Dimensions beyond any chest X-ray (a decompression bomb), refused from
    the header before any pixels are decoded."""


class ImageTooSmallError(InputImageError):
    """Dimensions too small to be a diagnostic chest X-ray."""


class BlankImageError(InputImageError):
    """An image with no contrast: every pixel shows the same grey."""


class NotFrontalViewError(InputImageError):
    """The DICOM View Position says lateral, oblique or decubitus: not a
    frontal (PA or AP) chest view, which is all the model reads."""


class NotChestRadiographError(InputImageError):
    """The out-of-distribution guard judged the image not to be a chest
    radiograph (a colour photo, a document, a negative, noise, ...)."""


class SyntheticImageError(InputImageError):
    """A GAN-generated image (it carries goldenhour's synthetic mark): never a
    patient, so never diagnosed as a case nor used to evaluate a model."""


# --- Signed model updates (shared/signing.py, edge_agent/model_update.py, edge_agent/update_*.py).


class ModelUpdateError(GoldenhourError):
    """A model release that cannot be fetched, verified, installed or trusted."""


class SignatureError(ModelUpdateError):
    """A release signature that does not verify (tampered, or signed with another
    key), or a signing key that cannot be read."""


# --- Hospital formats (hospital_hub/dicom_*.py, hospital_hub/pacs.py).


class DicomExportError(GoldenhourError):
    """A case's AI result cannot be written as DICOM (a source image without the
    identifiers that a reference needs, an unreadable heat map)."""


class PacsError(GoldenhourError):
    """A hospital's PACS could not be reached, refused the association, or did
    not acknowledge a C-STORE with success."""
