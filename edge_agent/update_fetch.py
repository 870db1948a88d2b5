"""The hub's side of a model update, as the edge fetches it: the signed offer
(at most :data:`MAX_OFFER_BYTES`) and each file of a release, streamed into
the staging folder, never longer than its signed size and checked against its
signed sha256. Redirects are refused and the token goes only to the
configured hub."""

from __future__ import annotations

import hashlib
import http.client
import ipaddress
import logging
import os
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from edge_agent.update_settings import ModelUpdateSettings
from shared.errors import ModelUpdateError
from shared.manifest import ModelEntry, ModelFile
from shared.signing import Release, file_segments, parse_release

logger = logging.getLogger(__name__)

MAX_OFFER_BYTES = 1 << 20
BLOCK = 1 << 20


class TransientFetchError(ModelUpdateError):
    """The hub could not be reached or a download broke off: try again at the next poll."""


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Redirects are refused: they would carry the token to wherever they point."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


class HubReleases:
    """The offer at ``config.url`` and the release files beside it (``.../files/``)."""

    def __init__(self, config: ModelUpdateSettings) -> None:
        if not config.url:
            raise ModelUpdateError("model updates need an offer URL")
        self.config = config
        self.url = config.url
        self.files_url = config.url.rstrip("/").rsplit("/", 1)[0] + "/files/"
        self._opener = urllib.request.build_opener(_NoRedirect)

    def _open(self, url: str) -> http.client.HTTPResponse:
        headers = {"Accept": "application/json, application/octet-stream"}
        if self.config.token is not None:
            headers["Authorization"] = f"Bearer {self.config.token.get_secret_value()}"
        request = urllib.request.Request(url, headers=headers)
        try:
            response: http.client.HTTPResponse = self._opener.open(request, timeout=self.config.timeout_s)
        except urllib.error.HTTPError as exc:
            exc.close()
            raise TransientFetchError(f"{url}: HTTP {exc.code} {exc.reason}") from exc
        except (OSError, http.client.HTTPException) as exc:
            raise TransientFetchError(f"{url}: {exc}") from exc
        return response

    def offer(self) -> Release | None:
        """The release on offer, or None when the hub offers none (HTTP 404).

        Raises:
            TransientFetchError: the hub could not be reached.
            ModelUpdateError: the offer is too large or not a signed release.
        """
        try:
            with self._open(self.url) as response:
                data = response.read(MAX_OFFER_BYTES + 1)
        except TransientFetchError as exc:
            if isinstance(exc.__cause__, urllib.error.HTTPError) and exc.__cause__.code == 404:
                return None
            raise
        except (OSError, http.client.HTTPException) as exc:
            raise TransientFetchError(f"{self.url}: {exc}") from exc
        if len(data) > MAX_OFFER_BYTES:
            raise ModelUpdateError(f"the offer is larger than {MAX_OFFER_BYTES} bytes")
        return parse_release(data)

    def download(self, entries: list[ModelEntry], staging: Path) -> None:
        """Every file of ``entries`` into ``staging``, each checked against its signed sha256.

        Raises:
            TransientFetchError: a download broke off.
            ModelUpdateError: too large a release, or other bytes than the signed ones.
        """
        total = sum(file.bytes for entry in entries for file in entry.files)
        if total > self.config.max_mb * 1024 * 1024:
            raise ModelUpdateError(f"the release's files take {total / 2**20:.0f} MB, more than the "
                                   f"{self.config.max_mb:.0f} MB this edge accepts")
        for entry in entries:
            for file in entry.files:
                segments = file_segments(entry, file)
                url = self.files_url + "/".join(quote(part, safe="") for part in segments)
                self._fetch_file(url, staging / file.path, file)

    def _fetch_file(self, url: str, target: Path, file: ModelFile) -> None:
        """Stream one file to ``target``, never past its signed size, and check its sha256.

        Raises:
            TransientFetchError: the download broke off.
            ModelUpdateError: the hub sent other bytes than the signed ones.
        """
        target.parent.mkdir(parents=True, exist_ok=True)
        part = target.with_name(target.name + ".part")
        digest, size = hashlib.sha256(), 0
        try:
            with self._open(url) as response, part.open("wb") as out:
                length = response.headers.get("Content-Length")
                if length is not None and length.isdigit() and int(length) != file.bytes:
                    raise ModelUpdateError(f"{file.path}: the hub sends {length} bytes, the signed entry "
                                           f"says {file.bytes}")
                while block := response.read(BLOCK):
                    size += len(block)
                    if size > file.bytes:
                        raise ModelUpdateError(f"{file.path}: longer than its signed {file.bytes} bytes")
                    digest.update(block)
                    out.write(block)
        except (OSError, http.client.HTTPException) as exc:
            raise TransientFetchError(f"{file.path}: download failed: {exc}") from exc
        if size != file.bytes:
            raise TransientFetchError(f"{file.path}: download cut short at {size} of {file.bytes} bytes")
        if digest.hexdigest() != file.sha256:
            raise ModelUpdateError(f"{file.path}: sha256 {digest.hexdigest()[:16]}... is not the signed "
                                   f"{file.sha256[:16]}...")
        os.replace(part, target)


def warn_if_cleartext(url: str) -> None:
    """Log a warning when ``url`` sends the token in clear text to another machine."""
    parts = urlsplit(url)
    if parts.scheme == "https":
        return
    try:
        loopback = ipaddress.ip_address(parts.hostname or "").is_loopback
    except ValueError:
        loopback = parts.hostname == "localhost"
    if not loopback:
        logger.warning("model updates over plain HTTP: the token travels in clear text (the signature "
                       "still protects the model)", extra={"url": url})
