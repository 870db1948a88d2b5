"""OpenVINO runtime backend (default on the edge)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edge_agent.backends.base import OpenVinoConfig, model_file, register
from shared.errors import ConfigurationError
from shared.manifest import ModelEntry


class OpenVinoBackend:
    """Compiles the IR once with a latency hint; one infer request reused."""

    name = "openvino"

    def __init__(self, entry: ModelEntry, models_dir: Path, config: OpenVinoConfig) -> None:
        try:
            import openvino as ov
        except ImportError as exc:
            raise ConfigurationError("the openvino backend needs the 'openvino' package (edge extra)"
                                     ) from exc
        xml = model_file(entry, models_dir, "openvino-xml", config.precision)
        model_file(entry, models_dir, "openvino-bin", config.precision)
        self.sha256 = entry.file("openvino-bin", config.precision).sha256
        core = ov.Core()
        self.precision = f"{config.precision}/{config.inference_precision}"
        self._compiled = core.compile_model(str(xml), config.device, {
            "PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": config.threads,
            "INFERENCE_PRECISION_HINT": config.inference_precision})
        self._request = self._compiled.create_infer_request()
        self._names = [output.get_any_name() for output in self._compiled.outputs]

    def infer(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        results = self._request.infer({0: np.ascontiguousarray(batch, dtype=np.float32)})
        return {name: np.asarray(results[output]) for name, output in
                zip(self._names, self._compiled.outputs, strict=True)}


@register("openvino")
def _create(entry: ModelEntry, models_dir: Path, config: OpenVinoConfig) -> OpenVinoBackend:
    return OpenVinoBackend(entry, models_dir, config)
