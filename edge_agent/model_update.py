"""Signed model updates on the edge.

:class:`ModelUpdater` polls the hub's offer (``GOLDENHOUR_EDGE_MODEL_UPDATE__URL``)
in a background thread. A release is installed only when, in this order:

1. its ed25519 signature verifies against the configured public key (before
   anything is downloaded: the signature covers every file's sha256 and size);
2. it is for this edge (the configured classifier or detector, version not pinned)
   and not installed already;
3. every file, streamed into ``<models_dir>/.staging/`` and never longer than
   its signed size, has its signed sha256;
4. a pipeline built from the staged files passes a self-test on a built-in
   synthetic chest-like image (the right model, the 14 findings in canonical
   order, finite probabilities).

Then the files move into ``<models_dir>/<name>/<version>/``, the entry is
written into the edge's manifest (atomically) and the agent's
:class:`PipelineSlot` swaps to the new pipeline between diagnoses: a diagnosis
in progress finishes on the model it started with. The first
``probation`` real diagnoses on the new model are watched; one that fails for
any reason but a bad image rolls back to the previous pipeline, is diagnosed
again on it, and the release is removed. A rejected release is remembered in
the state file and never retried. The previous version's files are kept; only
versions older than the previous one that this updater installed itself are
deleted once a new model has passed its probation.
"""

from __future__ import annotations

import hashlib
import http.client
import ipaddress
import json
import logging
import os
import shutil
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote, urlsplit

from edge_agent.backends import OpenVinoConfig
from edge_agent.classifier import load_classifier
from edge_agent.detector import load_detector
from edge_agent.pipeline import DiagnosisPipeline
from edge_agent.pipeline_slot import PipelineSlot, Probation, self_test, self_test_image
from edge_agent.settings import PLACEHOLDER, EdgeSettings
from shared.background import BackgroundLoop
from shared.errors import GoldenhourError, ModelUpdateError
from shared.manifest import Manifest, ModelEntry, ModelFile, load_manifest, save_manifest
from shared.signing import Release, file_segments, load_public_key, parse_release, verify_release

logger = logging.getLogger(__name__)

Outcome = Literal["no-offer", "current", "skipped", "installed", "passed", "rejected", "known-rejected",
                  "rolled-back", "retry"]
STAGING = ".staging"
MAX_OFFER_BYTES = 1 << 20
BLOCK = 1 << 20


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass(frozen=True)
class UpdateResult:
    """What a poll (or a probation) did with the release on offer."""

    outcome: Outcome
    detail: str = ""
    release: str | None = None
    """``name@version`` of the release's entries."""
    digest: str | None = None
    at: str = field(default_factory=_now)


class _Transient(ModelUpdateError):
    """The hub could not be reached or a download broke off: try again at the next poll."""


# -- what this edge has done with releases -------------------------------------------------------
class UpdateState:
    """Installed and rejected releases, kept in a small JSON file (written atomically)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.rejected: dict[str, dict[str, str]] = {}
        self.installed: list[dict[str, str]] = []
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            self.rejected, self.installed = dict(data["rejected"]), list(data["installed"])
        except FileNotFoundError:
            pass
        except (ValueError, KeyError, TypeError) as exc:
            logger.error("model update state unreadable: starting afresh", extra={"path": str(path),
                                                                                   "error": str(exc)})

    def reject(self, release: Release, reason: str) -> None:
        """Never try ``release`` again."""
        self.rejected[release.digest] = {"release": release.label, "reason": reason[:1000], "at": _now()}
        self._save()

    def install(self, release: Release, entries: list[ModelEntry]) -> None:
        """Remember that this updater installed ``entries``."""
        self.installed += [{"key": e.key, "name": e.name, "version": e.version, "digest": release.digest,
                            "at": _now()} for e in entries]
        self._save()

    def forget(self, keys: set[str]) -> None:
        """Drop installed entries once their files are gone."""
        self.installed = [row for row in self.installed if row["key"] not in keys]
        self._save()

    def _save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps({"rejected": self.rejected, "installed": self.installed}, indent=2),
                       encoding="utf-8")
        os.replace(tmp, self.path)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Redirects are refused: they would carry the token to wherever they point."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def _check_writable(models_dir: Path) -> None:
    """Refuse at start-up a models folder the updater could never install into
    (e.g. the checkout's ``models/`` under a systemd unit's ``ProtectSystem=strict``).

    Raises:
        ModelUpdateError: the folder (or, when it does not exist yet, the
            nearest folder above it) is not writable.
    """
    existing = next((p for p in (models_dir, *models_dir.parents) if p.exists()), models_dir)
    if not os.access(existing, os.W_OK):
        raise ModelUpdateError(
            f"the models folder {models_dir} is not writable, so no update could be installed: "
            "set GOLDENHOUR_EDGE_MODELS_DIR to a writable copy of the models "
            "(see docs/model-updates.md)")


# -- the updater -------------------------------------------------------------------------------
class ModelUpdater:
    """Polls the hub for a signed release and installs it as the module docstring describes."""

    def __init__(self, settings: EdgeSettings, slot: PipelineSlot) -> None:
        config = settings.model_update
        if not config.url or config.public_key is None:
            raise ModelUpdateError("model updates need an offer URL and a public key")
        self.settings, self.config, self.slot = settings, config, slot
        self.url = config.url
        self.files_url = config.url.rstrip("/").rsplit("/", 1)[0] + "/files/"
        self.public_key = load_public_key(config.public_key)
        self.models_dir = settings.models_dir
        _check_writable(self.models_dir)
        self.state = UpdateState(config.state_file or settings.state_dir / "model-updates.json")
        self.status: UpdateResult | None = None
        self._opener = urllib.request.build_opener(_NoRedirect)
        self._poll_lock = threading.Lock()
        self._files_lock = threading.RLock()
        """Guards the manifest and the state file; held only briefly, as diagnoses wait
        for it at the end of a probation."""
        self._loop = BackgroundLoop("edge-model-update", self._poll, config.interval_s,
                                    first_delay_s=min(10.0, config.interval_s), join_timeout_s=60,
                                    failure="model update check failed")
        _warn_if_cleartext(config.url)

    @classmethod
    def from_settings(cls, settings: EdgeSettings, slot: PipelineSlot) -> ModelUpdater | None:
        """An updater for the agent's slot, or None when updates are off or misconfigured
        (logged: a bad update setting must not stop the ambulance's agent)."""
        if not settings.model_update.url:
            return None
        try:
            return cls(settings, slot)
        except GoldenhourError as exc:
            logger.error("model updates are off", extra={"error": str(exc)})
            return None

    def start(self) -> None:
        """Poll in a background thread: soon after the start, then every ``interval_s``."""
        self._loop.start()
        logger.info("model updates on", extra={"url": self.url, "interval_s": self.config.interval_s})

    def stop(self) -> None:
        """Stop polling (an update in progress finishes first)."""
        self._loop.stop()

    # -- one poll ------------------------------------------------------------------------------
    def _poll(self) -> None:
        self.check_now()

    def check_now(self) -> UpdateResult:
        """Poll the offer once and install what it holds if it passes every check."""
        with self._poll_lock:
            if self.slot.on_probation:
                return self._report(UpdateResult("skipped", "a new model is still on probation"))
            try:
                release = self._fetch_offer()
            except _Transient as exc:
                return self._report(UpdateResult("retry", str(exc)))
            except ModelUpdateError as exc:
                return self._report(UpdateResult("rejected", str(exc)))
            if release is None:
                return self._report(UpdateResult("no-offer", "the hub offers no model"))
            known = self.state.rejected.get(release.digest)
            if known is not None:
                return self._report(UpdateResult("known-rejected", known["reason"], release.label,
                                                 release.digest))
            try:
                return self._report(self._consider(release))
            except _Transient as exc:
                return self._report(UpdateResult("retry", str(exc), release.label, release.digest))
            except ModelUpdateError as exc:
                with self._files_lock:
                    self.state.reject(release, str(exc))
                return self._report(UpdateResult("rejected", str(exc), release.label, release.digest))

    def _consider(self, release: Release) -> UpdateResult:
        entries = verify_release(release, self.public_key)
        active = load_manifest(self.models_dir, missing_ok=True)
        reason = self._not_for_us(entries)
        if reason is not None:
            return UpdateResult("skipped", reason, release.label, release.digest)
        if all(_installed(active, entry) for entry in entries):
            return UpdateResult("current", "already installed", release.label, release.digest)
        staging = self.models_dir / STAGING / release.digest[:16]
        shutil.rmtree(staging, ignore_errors=True)
        try:
            self._download(entries, staging)
            save_manifest(Manifest(models=entries), staging)
            candidate = self._candidate(entries, staging)
            diagnosis = self_test(candidate, entries, self_test_image(staging / "self-test.png"),
                                  self.settings.ambulance_id)
            self._install(entries, staging)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        logger.info("new model passed its self-test", extra={
            "release": release.label, "top3": ",".join(diagnosis.top3)})
        previous = self.slot.current
        probation = Probation(previous, self.config.probation,
                              on_pass=lambda: self._passed(release, entries, previous),
                              on_fail=lambda problem: self._rolled_back(release, entries, problem))
        self.slot.swap(candidate, probation)
        return UpdateResult("installed", f"on probation for {self.config.probation} diagnoses",
                            release.label, release.digest)

    def _not_for_us(self, entries: list[ModelEntry]) -> str | None:
        """Why this edge takes no release of these entries; raises for a release it must refuse.

        Raises:
            ModelUpdateError: an entry for a model this edge does not run, or two of a kind.
        """
        wanted = {"classifier": self.settings.model, "detector": self.settings.detector}
        tasks = [entry.task for entry in entries]
        if len(set(tasks)) != len(tasks):
            raise ModelUpdateError("a release carries at most one classifier and one detector")
        if "classifier" in tasks and self.settings.model == PLACEHOLDER:
            return "this edge runs the placeholder classifier"
        if "classifier" in tasks and self.settings.model_version is not None:
            return f"the classifier version is pinned to {self.settings.model_version}"
        for entry in entries:
            if entry.name != wanted[entry.task]:
                raise ModelUpdateError(f"release of {entry.key} is not for this edge (its {entry.task} is "
                                       f"{wanted[entry.task]})")
        return None

    # -- steps ---------------------------------------------------------------------------------
    def _open(self, url: str) -> http.client.HTTPResponse:
        headers = {"Accept": "application/json, application/octet-stream"}
        if self.config.token is not None:
            headers["Authorization"] = f"Bearer {self.config.token.get_secret_value()}"
        request = urllib.request.Request(url, headers=headers)
        try:
            response: http.client.HTTPResponse = self._opener.open(request, timeout=self.config.timeout_s)
        except urllib.error.HTTPError as exc:
            exc.close()
            raise _Transient(f"{url}: HTTP {exc.code} {exc.reason}") from exc
        except (OSError, http.client.HTTPException) as exc:
            raise _Transient(f"{url}: {exc}") from exc
        return response

    def _fetch_offer(self) -> Release | None:
        try:
            with self._open(self.url) as response:
                data = response.read(MAX_OFFER_BYTES + 1)
        except _Transient as exc:
            if isinstance(exc.__cause__, urllib.error.HTTPError) and exc.__cause__.code == 404:
                return None
            raise
        except (OSError, http.client.HTTPException) as exc:
            raise _Transient(f"{self.url}: {exc}") from exc
        if len(data) > MAX_OFFER_BYTES:
            raise ModelUpdateError(f"the offer is larger than {MAX_OFFER_BYTES} bytes")
        return parse_release(data)

    def _download(self, entries: list[ModelEntry], staging: Path) -> None:
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
            _Transient: the download broke off.
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
            raise _Transient(f"{file.path}: download failed: {exc}") from exc
        if size != file.bytes:
            raise _Transient(f"{file.path}: download cut short at {size} of {file.bytes} bytes")
        if digest.hexdigest() != file.sha256:
            raise ModelUpdateError(f"{file.path}: sha256 {digest.hexdigest()[:16]}... is not the signed "
                                   f"{file.sha256[:16]}...")
        os.replace(part, target)

    def _candidate(self, entries: list[ModelEntry], staging: Path) -> DiagnosisPipeline:
        """The current pipeline with the release's models, loaded from the staged files."""
        current = self.slot.current
        classifier, detector = current.classifier, current.detector
        try:
            for entry in entries:
                if entry.task == "classifier":
                    classifier = load_classifier(self.settings.backend, name=entry.name,
                                                 version=entry.version, models_dir=staging)
                else:
                    detector = load_detector(OpenVinoConfig(), name=entry.name, models_dir=staging)
        except Exception as exc:  # a model that does not even load fails its self-test
            raise ModelUpdateError(f"self-test failed: the new model does not load: "
                                   f"{type(exc).__name__}: {exc}") from exc
        return DiagnosisPipeline(classifier, detector)

    def _install(self, entries: list[ModelEntry], staging: Path) -> None:
        """Move the staged files into place, then add the entries to the manifest."""
        for entry in entries:
            target = self.models_dir / entry.name / entry.version
            if target.exists():  # not in the manifest (checked): a leftover of an earlier try
                shutil.rmtree(target)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(staging / entry.name / entry.version, target)
        with self._files_lock:
            manifest = load_manifest(self.models_dir, missing_ok=True)
            for entry in entries:
                manifest = manifest.upsert(entry)
            save_manifest(manifest, self.models_dir)
        logger.info("model installed", extra={"models": ", ".join(e.key for e in entries)})

    # -- the end of a probation ----------------------------------------------------------------
    def _passed(self, release: Release, entries: list[ModelEntry], previous: DiagnosisPipeline) -> None:
        with self._files_lock:
            self.state.install(release, entries)
            keep = {e.key for e in entries} | _keys(previous)
            names = {e.name for e in entries}
            old = {row["key"] for row in self.state.installed
                   if row["name"] in names and row["key"] not in keep}
            if old:
                self._remove(old)
                self.state.forget(old)
            self._report(UpdateResult("passed", f"{self.config.probation} diagnoses on the new model "
                                      f"went well (removed: {', '.join(sorted(old)) or 'nothing'})",
                                      release.label, release.digest))

    def _rolled_back(self, release: Release, entries: list[ModelEntry], problem: str) -> None:
        with self._files_lock:
            self._remove({e.key for e in entries})
            self.state.reject(release, f"failed on a real diagnosis: {problem}")
            self._report(UpdateResult("rolled-back", problem, release.label, release.digest))

    def _remove(self, keys: set[str]) -> None:
        """Take entries out of the manifest first, then delete their files."""
        manifest = load_manifest(self.models_dir, missing_ok=True)
        gone = [m for m in manifest.models if m.key in keys]
        save_manifest(manifest.model_copy(update={"models": [m for m in manifest.models
                                                             if m.key not in keys]}), self.models_dir)
        for entry in gone:
            shutil.rmtree(self.models_dir / entry.name / entry.version, ignore_errors=True)

    def _report(self, result: UpdateResult) -> UpdateResult:
        self.status = result
        level = {"installed": logging.INFO, "passed": logging.INFO, "current": logging.DEBUG,
                 "no-offer": logging.DEBUG, "known-rejected": logging.DEBUG, "skipped": logging.INFO,
                 "retry": logging.WARNING}.get(result.outcome, logging.ERROR)
        logger.log(level, "model update %s: %s", result.outcome, result.detail,
                   extra={"release": result.release, "digest": result.digest})
        return result


def _installed(active: Manifest, entry: ModelEntry) -> bool:
    """Whether ``entry`` is in the manifest already.

    Raises:
        ModelUpdateError: the same name and version with other content.
    """
    same = [m for m in active.models if m.key == entry.key]
    if same and same[-1] != entry:
        raise ModelUpdateError(f"{entry.key} is installed with other content: a new release "
                               "needs a new version")
    return bool(same)


def _keys(pipeline: DiagnosisPipeline) -> set[str]:
    info = pipeline.classifier.info
    keys = {f"{info.name}@{info.version}"}
    if pipeline.detector is not None:
        keys.add(pipeline.detector.entry.key)
    return keys


def _warn_if_cleartext(url: str) -> None:
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
