"""The torch eager reference backend, for parity tests and benchmarks only.

It lives in training/ because it rebuilds the network from
:mod:`training.models`; the edge finds it through the ``goldenhour.backends``
entry point (``pyproject.toml``) without importing training, and only when a
test or benchmark asks for ``TorchConfig``. Needs the train extra (torch); the
ambulance never runs it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edge_agent.backends.base import TorchConfig, model_file
from shared.errors import ConfigurationError
from shared.manifest import ModelEntry


class TorchBackend:
    """The network rebuilt from ``training.models`` with the manifest's weights."""

    name = "torch"
    precision = "fp32"

    def __init__(self, entry: ModelEntry, models_dir: Path, config: TorchConfig) -> None:
        try:
            import torch

            from training.models import build_for_inference
        except ImportError as exc:
            raise ConfigurationError("the torch backend needs the train extra") from exc
        path = model_file(entry, models_dir, "torch", "fp16")
        self.sha256 = entry.file("torch", "fp16").sha256
        saved = torch.load(path, map_location="cpu", weights_only=True)
        torch.set_num_threads(config.threads)
        self._torch = torch
        self._model = build_for_inference(saved["backbone"], int(saved["cut"]),
                                          {k: v.float() for k, v in saved["state_dict"].items()})

    def infer(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        with self._torch.inference_mode():
            logits, cam = self._model(self._torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)))
        return {"logits": logits.numpy(), "cam": cam.numpy()}
