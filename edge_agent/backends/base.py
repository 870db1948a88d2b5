"""The backend interface, the registry and the per-backend configs.

OpenVINO and ONNX Runtime are built in. Other packages contribute backends
through the ``goldenhour.backends`` entry-point group (training's torch
reference, ``pyproject.toml``), loaded only when a config asks for their kind:
the edge never imports training.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from typing import Annotated, Literal, Protocol

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from shared.errors import ConfigurationError
from shared.manifest import ModelEntry, verified_path

logger = logging.getLogger(__name__)


class _Config(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    threads: int = Field(default=2, ge=1, le=256)
    """CPU threads for one inference."""


def default_cache_dir() -> Path:
    """Compiled-model cache: ``$GOLDENHOUR_CACHE_DIR``, else ``$XDG_CACHE_HOME/goldenhour``,
    else ``~/.cache/goldenhour``; OpenVINO's blobs go in its ``openvino/`` folder."""
    root = os.environ.get("GOLDENHOUR_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "goldenhour")
    return Path(root) / "openvino"


class OpenVinoConfig(_Config):
    """OpenVINO runtime (the default): IR files, FP16 weights or NNCF INT8."""

    kind: Literal["openvino"] = "openvino"
    device: str = "CPU"
    precision: Literal["fp16", "int8"] = "fp16"
    """Which IR file: FP16-compressed weights, or NNCF INT8."""
    inference_precision: Literal["f32", "bf16"] = "f32"
    """Arithmetic precision. OpenVINO's CPU default is bf16 where the CPU has it
    (faster, but logits move by ~0.04); f32 keeps parity with the reference."""
    cache_dir: Path | None = Field(default_factory=default_cache_dir)
    """OpenVINO's CACHE_DIR: compiled models are kept here, so the next start
    loads the blob instead of compiling (keyed by model, device, settings and
    OpenVINO version). None: no cache. An unwritable folder only costs speed."""


class OnnxRuntimeConfig(_Config):
    """ONNX Runtime on the CPU execution provider, FP32 ONNX file."""

    kind: Literal["onnxruntime"] = "onnxruntime"


class TorchConfig(_Config):
    """The torch eager reference (``training/torch_backend.py``, an entry point): tests and
    benchmarks only (needs the train extra)."""

    kind: Literal["torch"] = "torch"


BackendConfig = Annotated[OpenVinoConfig | OnnxRuntimeConfig | TorchConfig, Field(discriminator="kind")]


class Backend(Protocol):
    """A loaded model: NCHW float32 batch in, named output arrays out."""

    name: str
    precision: str
    sha256: str
    """Digest of the weights file this backend loaded (verified at load)."""

    def infer(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """Run one batch; returns every output by name."""


Factory = Callable[[ModelEntry, Path, "_Config"], Backend]
_REGISTRY: dict[str, Factory] = {}
PLUGIN_GROUP = "goldenhour.backends"
"""Entry-point group of backends from other packages: ``kind = "module:factory"``."""


def register(kind: str) -> Callable[[Factory], Factory]:
    """Class or function decorator adding a backend factory under ``kind``."""

    def add(factory: Factory) -> Factory:
        _REGISTRY[kind] = factory
        return factory

    return add


def registered_backends() -> list[str]:
    """Keys of every registered backend, built in or an entry point."""
    _load_builtin()
    return sorted(set(_REGISTRY) | set(_plugins()))


def _load_builtin() -> None:
    from edge_agent.backends import onnxruntime_backend, openvino_backend  # noqa: F401


def _plugins() -> dict[str, EntryPoint]:
    """The ``goldenhour.backends`` entry points of every installed package, by kind."""
    return {entry.name: entry for entry in entry_points(group=PLUGIN_GROUP)}


def _plugin(kind: str) -> Factory | None:
    """The factory an entry point contributes for ``kind`` (imported now, then registered).

    Raises:
        ConfigurationError: the entry point's module cannot be imported.
    """
    entry = _plugins().get(kind)
    if entry is None:
        return None
    try:
        factory: Factory = entry.load()
    except ImportError as exc:
        raise ConfigurationError(f"inference backend {kind!r} ({entry.value}) cannot be loaded: "
                                 f"{exc}") from exc
    _REGISTRY[kind] = factory
    return factory


def create_backend(entry: ModelEntry, models_dir: Path, config: _Config) -> Backend:
    """Load ``entry``'s file for ``config.kind`` after verifying its sha256.

    Raises:
        ConfigurationError: unknown backend, missing runtime, or a file that
            is missing or fails its checksum (ModelManifestError).
    """
    _load_builtin()
    kind = config.kind
    factory = _REGISTRY.get(kind) or _plugin(kind)
    if factory is None:
        raise ConfigurationError(f"no inference backend {kind!r} (known: {', '.join(registered_backends())})")
    backend = factory(entry, models_dir, config)
    logger.info("model loaded", extra={"model": entry.key, "backend": kind, "precision": backend.precision})
    return backend


def model_file(entry: ModelEntry, models_dir: Path, fmt: str, precision: str) -> Path:
    """The verified path of one of ``entry``'s files."""
    return verified_path(models_dir, entry, entry.file(fmt, precision))
