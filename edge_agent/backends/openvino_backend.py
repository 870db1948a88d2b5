"""OpenVINO runtime backend (default on the edge)."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

import numpy as np

from edge_agent.backends.base import OpenVinoConfig, model_file, register
from shared.errors import ConfigurationError
from shared.manifest import ModelEntry

logger = logging.getLogger(__name__)


def import_openvino() -> Any:
    """``import openvino`` without its model converter: the edge only runs IR
    files, and the converter's import (asyncio and friends) costs ~0.25 s of a
    one-file diagnose. ``openvino.tools.ovc`` stays importable afterwards."""
    if "openvino" in sys.modules or "openvino.tools.ovc" in sys.modules:
        import openvino

        return openvino
    sys.modules["openvino.tools.ovc"] = None  # type: ignore[assignment]  # openvino skips an ImportError
    try:
        import openvino
    finally:
        if sys.modules.get("openvino.tools.ovc", 0) is None:
            del sys.modules["openvino.tools.ovc"]
    return openvino


def usable_cache_dir(folder: Path | None) -> Path | None:
    """``folder``, created, when this process can write there; else None (no cache)."""
    if folder is None:
        return None
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / ".write-probe"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        logger.warning("OpenVINO compile cache off: %s is not writable (%s)", folder, exc)
        return None
    return folder


def compile_properties(config: OpenVinoConfig) -> dict[str, Any]:
    """The edge's OpenVINO compile settings: latency first, its thread count and
    arithmetic precision (also what ``train edge-cost`` times candidates with)."""
    return {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": config.threads,
            "INFERENCE_PRECISION_HINT": config.inference_precision}


class OpenVinoBackend:
    """Compiles the IR once with a latency hint (or loads the compiled blob from
    the cache); one infer request reused."""

    name = "openvino"

    def __init__(self, entry: ModelEntry, models_dir: Path, config: OpenVinoConfig) -> None:
        try:
            ov = import_openvino()
        except ImportError as exc:
            raise ConfigurationError("the openvino backend needs the 'openvino' package (edge extra)"
                                     ) from exc
        xml = model_file(entry, models_dir, "openvino-xml", config.precision)
        model_file(entry, models_dir, "openvino-bin", config.precision)
        self.sha256 = entry.file("openvino-bin", config.precision).sha256
        self.precision = f"{config.precision}/{config.inference_precision}"
        properties = compile_properties(config)
        cache = usable_cache_dir(config.cache_dir)
        core = ov.Core()
        if cache is not None:
            properties["CACHE_DIR"] = str(cache)
        try:
            self._compiled = core.compile_model(str(xml), config.device, properties)
        except RuntimeError as exc:
            if cache is None:
                raise
            # A cache blob this OpenVINO cannot read must not stop the ambulance.
            logger.warning("OpenVINO compile with cache %s failed (%s); compiling without it", cache, exc)
            properties.pop("CACHE_DIR")
            self._compiled = core.compile_model(str(xml), config.device, properties)
        self.cache_dir = cache
        self.loaded_from_cache = bool(cache and self._compiled.get_property("LOADED_FROM_CACHE"))
        self._request = self._compiled.create_infer_request()
        self._names = [output.get_any_name() for output in self._compiled.outputs]

    def infer(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        results = self._request.infer({0: np.ascontiguousarray(batch, dtype=np.float32)})
        return {name: np.asarray(results[output]) for name, output in
                zip(self._names, self._compiled.outputs, strict=True)}


@register("openvino")
def _create(entry: ModelEntry, models_dir: Path, config: OpenVinoConfig) -> OpenVinoBackend:
    return OpenVinoBackend(entry, models_dir, config)
