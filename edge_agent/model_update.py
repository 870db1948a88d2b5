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

This module is the update loop; the hub's offer and files are fetched by
:mod:`edge_agent.update_fetch`, the files are installed and removed by
:mod:`edge_agent.update_files`, and what was done is kept by
:mod:`edge_agent.update_state`.
"""

from __future__ import annotations

import logging
import shutil
import threading
from pathlib import Path

from edge_agent.backends import OpenVinoConfig
from edge_agent.classifier import load_classifier
from edge_agent.detector import load_detector
from edge_agent.pipeline import DiagnosisPipeline
from edge_agent.pipeline_slot import PipelineSlot, Probation, self_test, self_test_image
from edge_agent.settings import PLACEHOLDER, EdgeSettings
from edge_agent.update_fetch import HubReleases, TransientFetchError, warn_if_cleartext
from edge_agent.update_files import (
    STAGING,
    add_to_manifest,
    check_writable,
    is_installed,
    move_into_place,
    pipeline_keys,
    remove_models,
)
from edge_agent.update_state import UpdateResult, UpdateState
from shared.background import BackgroundLoop
from shared.errors import GoldenhourError, ModelUpdateError
from shared.manifest import Manifest, ModelEntry, load_manifest, save_manifest
from shared.signing import Release, load_public_key, verify_release

logger = logging.getLogger(__name__)


# -- the updater -------------------------------------------------------------------------------
class ModelUpdater:
    """Polls the hub for a signed release and installs it as the module docstring describes."""

    def __init__(self, settings: EdgeSettings, slot: PipelineSlot) -> None:
        config = settings.model_update
        if not config.url or config.public_key is None:
            raise ModelUpdateError("model updates need an offer URL and a public key")
        self.settings, self.config, self.slot = settings, config, slot
        self.url = config.url
        self.public_key = load_public_key(config.public_key)
        self.models_dir = settings.models_dir
        check_writable(self.models_dir)
        self.state = UpdateState(config.state_file or settings.state_dir / "model-updates.json")
        self.status: UpdateResult | None = None
        self.hub = HubReleases(config)
        self._poll_lock = threading.Lock()
        self._files_lock = threading.RLock()
        """Guards the manifest and the state file; held only briefly, as diagnoses wait
        for it at the end of a probation."""
        self._loop = BackgroundLoop("edge-model-update", self._poll, config.interval_s,
                                    first_delay_s=min(10.0, config.interval_s), join_timeout_s=60,
                                    failure="model update check failed")
        warn_if_cleartext(config.url)

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
                release = self.hub.offer()
            except TransientFetchError as exc:
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
            except TransientFetchError as exc:
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
        if all(is_installed(active, entry) for entry in entries):
            return UpdateResult("current", "already installed", release.label, release.digest)
        staging = self.models_dir / STAGING / release.digest[:16]
        shutil.rmtree(staging, ignore_errors=True)
        try:
            self.hub.download(entries, staging)
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
    def _candidate(self, entries: list[ModelEntry], staging: Path) -> DiagnosisPipeline:
        """The current pipeline (its guard too) with the release's models, loaded from the staged files."""
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
        return DiagnosisPipeline(classifier, detector, current.guard.parameters)

    def _install(self, entries: list[ModelEntry], staging: Path) -> None:
        """Move the staged files into place, then add the entries to the manifest."""
        move_into_place(self.models_dir, entries, staging)
        with self._files_lock:
            add_to_manifest(self.models_dir, entries)
        logger.info("model installed", extra={"models": ", ".join(e.key for e in entries)})

    # -- the end of a probation ----------------------------------------------------------------
    def _passed(self, release: Release, entries: list[ModelEntry], previous: DiagnosisPipeline) -> None:
        with self._files_lock:
            self.state.install(release, entries)
            keep = {e.key for e in entries} | pipeline_keys(previous)
            names = {e.name for e in entries}
            old = {row["key"] for row in self.state.installed
                   if row["name"] in names and row["key"] not in keep}
            if old:
                remove_models(self.models_dir, old)
                self.state.forget(old)
            self._report(UpdateResult("passed", f"{self.config.probation} diagnoses on the new model "
                                      f"went well (removed: {', '.join(sorted(old)) or 'nothing'})",
                                      release.label, release.digest))

    def _rolled_back(self, release: Release, entries: list[ModelEntry], problem: str) -> None:
        with self._files_lock:
            remove_models(self.models_dir, {e.key for e in entries})
            self.state.reject(release, f"failed on a real diagnosis: {problem}")
            self._report(UpdateResult("rolled-back", problem, release.label, release.digest))

    def _report(self, result: UpdateResult) -> UpdateResult:
        self.status = result
        level = {"installed": logging.INFO, "passed": logging.INFO, "current": logging.DEBUG,
                 "no-offer": logging.DEBUG, "known-rejected": logging.DEBUG, "skipped": logging.INFO,
                 "retry": logging.WARNING}.get(result.outcome, logging.ERROR)
        logger.log(level, "model update %s: %s", result.outcome, result.detail,
                   extra={"release": result.release, "digest": result.digest})
        return result
