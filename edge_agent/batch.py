"""Batch screening for ``goldenhour diagnose PATH...``: expand files, folders
and globs into X-ray files, and diagnose them in one process (the model loaded
once) or in ``workers`` processes (each loads it once)."""

from __future__ import annotations

import glob
import logging
import multiprocessing
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shared.errors import InputImageError

logger = logging.getLogger(__name__)
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".dcm", ".dicom"}
_GLOB_CHARS = set("*?[")


@dataclass(frozen=True)
class Item:
    """One input: a file to diagnose, or an argument that named none (``error`` says why)."""

    path: Path
    error: str | None = None


@dataclass
class Outcome:
    """What became of one input: its diagnosis, or why there is none."""

    path: Path
    diagnosis: Any = None  # DiagnosisV1; typed loosely so this module imports no pydantic models
    error: str | None = None
    error_type: str | None = None


def _is_dicom(path: Path) -> bool:
    """A file without an image suffix that is DICOM (PACS exports often have none)."""
    try:
        with path.open("rb") as handle:
            return handle.read(132)[128:132] == b"DICM"
    except OSError:
        return False


def _folder_images(folder: Path) -> list[Path]:
    found = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        if path.suffix.lower() in IMAGE_SUFFIXES or (not path.suffix and _is_dicom(path)):
            found.append(path)
    return found


def collect(arguments: list[str]) -> list[Item]:
    """Files as given, folders searched recursively for DICOM, PNG and JPEG, and
    globs (when the shell did not expand them), in order and without repeats.
    An argument that names nothing becomes an :class:`Item` with its error."""
    items: list[Item] = []
    seen: set[Path] = set()

    def add(path: Path) -> None:
        key = path.resolve()
        if key not in seen:
            seen.add(key)
            items.append(Item(path))

    for argument in arguments:
        path = Path(argument)
        if path.is_dir():
            found = _folder_images(path)
            if not found:
                items.append(Item(path, "no DICOM, PNG or JPEG file in this folder"))
            for image in found:
                add(image)
        elif path.exists():
            add(path)
        elif _GLOB_CHARS & set(argument):
            matches = sorted(Path(m) for m in glob.glob(argument, recursive=True))
            files = [m for m in matches if m.is_file()] + [
                image for m in matches if m.is_dir() for image in _folder_images(m)]
            if not files:
                items.append(Item(path, "no file matches this pattern"))
            for image in files:
                add(image)
        else:
            items.append(Item(path, "no such file or folder"))
    return items


@dataclass(frozen=True)
class PipelineSpec:
    """How to build the pipeline: plain values, so a worker process can build its own."""

    backend: str
    model: str
    models_dir: Path
    threads: int = 2


def backend_config(name: str, threads: int) -> Any:
    """The backend config for a ``--backend`` name."""
    from edge_agent.backends import OnnxRuntimeConfig, OpenVinoConfig, TorchConfig

    configs: dict[str, Callable[[], Any]] = {
        "openvino": lambda: OpenVinoConfig(threads=threads),
        "openvino-int8": lambda: OpenVinoConfig(precision="int8", threads=threads),
        "onnxruntime": lambda: OnnxRuntimeConfig(threads=threads),
        "torch": lambda: TorchConfig(threads=threads)}
    return configs[name]()


def build(spec: PipelineSpec) -> Any:
    """The diagnosis pipeline for ``spec`` (raises ConfigurationError when the model cannot load)."""
    from edge_agent.classifier import load_classifier
    from edge_agent.pipeline import DiagnosisPipeline

    return DiagnosisPipeline(load_classifier(backend_config(spec.backend, spec.threads), name=spec.model,
                                             models_dir=spec.models_dir))


def diagnose_one(pipeline: Any, path: Path, vitals: Any) -> Outcome:
    """One file through ``pipeline``; any failure becomes the outcome's error, so
    one bad file never stops the batch."""
    from edge_agent.case_message import diagnosis_message
    from edge_agent.operators import XrayInput
    from shared.messages import Position

    try:
        result = pipeline.run(XrayInput.read(path, vitals))
        return Outcome(path, diagnosis_message(result, ambulance_id="offline",
                                               position=Position(lat=0, lon=0)))
    except InputImageError as exc:
        return Outcome(path, error=str(exc), error_type=type(exc).__name__)
    except Exception as exc:  # a decoder crash on one odd file must not lose the others
        logger.debug("diagnosis of %s failed", path, exc_info=True)
        return Outcome(path, error=f"{type(exc).__name__}: {exc}", error_type=type(exc).__name__)


_worker: dict[str, Any] = {}


def _init_worker(spec: PipelineSpec, vitals: Any) -> None:
    _worker["pipeline"] = build(spec)
    _worker["vitals"] = vitals


def _work(path: Path) -> Outcome:
    return diagnose_one(_worker["pipeline"], path, _worker["vitals"])


def run(items: list[Item], spec: PipelineSpec, vitals: Any = None, workers: int = 1,
        pipeline: Any = None) -> Iterator[Outcome]:
    """Outcomes in input order. With ``workers`` > 1 each worker process loads the
    model once and uses ``spec.threads`` threads; ``pipeline`` (one already built)
    serves the single-process case."""
    files = [item.path for item in items if item.error is None]
    errors = {item.path: item.error for item in items if item.error is not None}
    if workers <= 1 or len(files) < 2:
        pipeline = pipeline or build(spec)
        results: Iterator[Outcome] = (diagnose_one(pipeline, path, vitals) for path in files)
        executor = None
    else:
        # spawn: OpenVINO's and ONNX Runtime's thread pools do not survive a fork.
        executor = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                                       initializer=_init_worker, initargs=(spec, vitals))
        results = executor.map(_work, files, chunksize=4)
    try:
        pending = iter(results)
        for item in items:
            if item.error is not None:
                yield Outcome(item.path, error=errors[item.path], error_type="NotFound")
            else:
                yield next(pending)
    finally:
        if executor is not None:
            executor.shutdown(cancel_futures=True)
