"""``train edge-cost``: what a candidate classifier would cost the edge, before it is
trained: each candidate (a backbone, or several joined by ``+`` as one
:class:`~training.ensemble.MeanEnsemble`) exported to an FP16 OpenVINO IR and
timed with the edge's own compile settings, in one run, as a ratio to the first.

Cost depends on the architecture and input size, not on the weights, so the
candidates carry ImageNet trunks and untrained heads. The classify stage is the
only stage a new classifier changes; ``goldenhour bench edge`` gives the others.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from edge_agent.backends import OpenVinoConfig
from edge_agent.backends.openvino_backend import compile_properties
from shared.stats import percentile
from training.ensemble import MeanEnsemble
from training.export import export_onnx
from training.models import build


@dataclass(frozen=True)
class Cost:
    """Classify-stage latency of one candidate on this CPU."""

    candidate: str
    p50_ms: float
    p95_ms: float
    ratio: float
    """p50 over the first candidate's p50."""
    ir_mb: float


def _model(spec: str) -> torch.nn.Module:
    members = [build(name, -1)[0].eval() for name in spec.split("+")]
    return members[0] if len(members) == 1 else MeanEnsemble(members).eval()


def _time(xml: Path, size: int, runs: int, warmup: int = 5) -> list[float]:
    import openvino as ov

    config = OpenVinoConfig()
    compiled = ov.Core().compile_model(str(xml), config.device, compile_properties(config))
    request = compiled.create_infer_request()
    batch = np.random.default_rng(0).normal(size=(1, 1, size, size)).astype(np.float32)
    samples = []
    for i in range(warmup + runs):
        started = time.perf_counter()
        request.infer({0: batch})
        if i >= warmup:
            samples.append((time.perf_counter() - started) * 1000)
    return samples


def measure(candidates: list[str], size: int, runs: int) -> list[Cost]:
    """Export and time every candidate, interleaved round by round so that a busy
    moment of the machine falls on all of them alike."""
    import openvino as ov
    from openvino.tools.ovc import convert_model

    with tempfile.TemporaryDirectory() as tmp:
        xmls = {}
        for spec in candidates:
            onnx = Path(tmp) / f"{len(xmls)}.onnx"
            export_onnx(_model(spec), size, onnx)
            xmls[spec] = onnx.with_suffix(".xml")
            ov.save_model(convert_model(str(onnx)), str(xmls[spec]), compress_to_fp16=True)
        samples: dict[str, list[float]] = {spec: [] for spec in candidates}
        rounds = 5
        for _ in range(rounds):
            for spec in candidates:
                samples[spec] += _time(xmls[spec], size, max(1, runs // rounds))
        sizes = {spec: (xml.stat().st_size + xml.with_suffix(".bin").stat().st_size) / 1e6
                 for spec, xml in xmls.items()}
    first = percentile(samples[candidates[0]], 0.5)
    return [Cost(spec, percentile(v, 0.5), percentile(v, 0.95), percentile(v, 0.5) / first, sizes[spec])
            for spec, v in samples.items()]
