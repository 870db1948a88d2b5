"""ONNX Runtime backend (CPU execution provider)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edge_agent.backends.base import OnnxRuntimeConfig, model_file, register
from shared.errors import ConfigurationError
from shared.manifest import ModelEntry


class OnnxRuntimeBackend:
    """One session, threads as configured."""

    name = "onnxruntime"
    precision = "fp32"

    def __init__(self, entry: ModelEntry, models_dir: Path, config: OnnxRuntimeConfig) -> None:
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise ConfigurationError("the onnxruntime backend needs the 'onnxruntime' package") from exc
        path = model_file(entry, models_dir, "onnx", "fp32")
        self.sha256 = entry.file("onnx", "fp32").sha256
        options = ort.SessionOptions()
        options.intra_op_num_threads = config.threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        self._session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self._input = self._session.get_inputs()[0].name
        self._names = [output.name for output in self._session.get_outputs()]

    def infer(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        outputs = self._session.run(self._names, {self._input: np.ascontiguousarray(batch, dtype=np.float32)})
        return dict(zip(self._names, outputs, strict=True))


@register("onnxruntime")
def _create(entry: ModelEntry, models_dir: Path, config: OnnxRuntimeConfig) -> OnnxRuntimeBackend:
    return OnnxRuntimeBackend(entry, models_dir, config)
