"""Bring a Keras classifier to the edge: ``goldenhour train import-keras``.

The Keras model (``.keras``, ``.h5`` or a SavedModel folder; NHWC, RGB or grey,
with its own normalisation) is wrapped so that it takes the edge's input
contract (NCHW float32, one grey channel, 0..255) and gives 14 logits in the
canonical finding order, converted by OpenVINO's converter to IR (FP16
weights), written under ``<models>/<name>/<version>/`` with its manifest entry,
and checked against Keras itself on real images through the edge's own
classifier. TensorFlow comes from the ``keras`` extra; the edge runtime never
imports it.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from shared.errors import ConfigurationError
from shared.findings import FINDINGS
from shared.manifest import (
    InputContract,
    Metric,
    ModelEntry,
    describe_file,
    load_manifest,
    save_manifest,
)

logger = logging.getLogger(__name__)
PRESETS = {"raw": "scale=1", "unit": "scale=0.00392156862745098",
           "imagenet": "scale=0.00392156862745098,mean=0.485/0.456/0.406,std=0.229/0.224/0.225",
           "tf": "scale=0.00784313725490196,mean=1"}


@dataclass(frozen=True)
class Normalisation:
    """The Keras model's own input normalisation: ``(pixel * scale - mean) / std``
    per channel, pixel in 0..255."""

    scale: float = 1.0
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)

    @classmethod
    def parse(cls, text: str) -> Normalisation:
        """``raw``, ``unit``, ``imagenet``, ``tf`` or ``scale=S,mean=M[/M/M],std=S[/S/S]``."""
        text = PRESETS.get(text.strip(), text)
        values: dict[str, Any] = {}
        for part in filter(None, (p.strip() for p in text.split(","))):
            key, sep, value = part.partition("=")
            try:
                numbers = tuple(float(v) for v in value.split("/"))
            except ValueError:
                numbers = ()
            if not sep or key not in ("scale", "mean", "std") or not numbers or (key == "scale"
                                                                             and len(numbers) != 1):
                raise ConfigurationError(f"--input: cannot read {part!r} (want {', '.join(PRESETS)} or "
                                         "scale=S,mean=M[/M/M],std=S[/S/S])")
            values[key] = numbers[0] if key == "scale" else numbers
        if any(s == 0 for s in values.get("std", (1.0,))):
            raise ConfigurationError("--input: std must not be 0")
        return cls(**values)

    def apply(self, pixels: np.ndarray, channels: int) -> np.ndarray:
        """NHWC 0..255 (one channel) -> the model's input (``channels`` channels), in numpy."""
        x = np.repeat(pixels, channels, axis=-1) * self.scale
        return ((x - np.asarray(self.mean, np.float32)) / np.asarray(self.std, np.float32)).astype(np.float32)


def parse_labels(text: str) -> list[int]:
    """``--labels``: the model's outputs in order, each one of the 14 findings;
    returns, for each canonical finding, the index of the model's output."""
    labels = [label.strip() for label in text.split(",") if label.strip()]
    names = [str(f) for f in FINDINGS]
    unknown = [label for label in labels if label not in names]
    if unknown or sorted(labels) != sorted(names):
        missing = sorted(set(names) - set(labels))
        raise ConfigurationError(
            "--labels must name each of the 14 findings once, in the model's output order"
            + (f"; unknown: {', '.join(unknown)}" if unknown else "")
            + (f"; missing: {', '.join(missing)}" if missing else ""))
    return [labels.index(name) for name in names]


def load_keras(path: Path) -> Any:
    """The Keras model (or a SavedModel's serving function) at ``path``."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        import keras
        import tensorflow as tf
    except ImportError as exc:
        raise ConfigurationError("import-keras needs TensorFlow: pip install 'goldenhour[keras]'") from exc
    if not path.exists():
        raise ConfigurationError(f"no Keras model at {path}")
    try:
        if path.is_dir():  # a SavedModel: call its serving signature
            loaded = tf.saved_model.load(str(path))
            serve = loaded.signatures["serving_default"]
            spec = next(iter(serve.structured_input_signature[1].values()))
            name = next(iter(serve.structured_outputs))

            def call(x: Any) -> Any:
                return serve(x)[name]

            call.input_shape = tuple(spec.shape)  # type: ignore[attr-defined]
            call.keep_alive = loaded  # type: ignore[attr-defined]
            return call
        return keras.models.load_model(str(path), compile=False)
    except (OSError, ValueError, KeyError, StopIteration) as exc:
        raise ConfigurationError(f"cannot load the Keras model {path}: {exc}") from exc


def _input_shape(model: Any) -> tuple[int, int]:
    shape = tuple(getattr(model, "input_shape", ()) or ())
    if len(shape) != 4 or shape[1] is None or shape[1] != shape[2] or shape[3] not in (1, 3):
        raise ConfigurationError(
            f"the Keras model's input must be NHWC, square, 1 or 3 channels; it is {shape}")
    return int(shape[1]), int(shape[3])


def edge_function(model: Any, size: int, channels: int, norm: Normalisation, order: list[int],
                  outputs: str) -> Any:
    """A tf.function under the edge's contract: (N, 1, S, S) 0..255 -> (N, 14) logits, canonical order."""
    import tensorflow as tf

    @tf.function(input_signature=[tf.TensorSpec([None, 1, size, size], tf.float32, name="image")])
    def edge(image: Any) -> Any:
        x = tf.repeat(tf.transpose(image, [0, 2, 3, 1]), channels, axis=-1) * norm.scale
        x = (x - tf.constant(norm.mean, tf.float32)) / tf.constant(norm.std, tf.float32)
        y = tf.cast(model(x), tf.float32)
        if outputs == "probabilities":
            y = tf.clip_by_value(y, 1e-7, 1 - 1e-7)
            y = tf.math.log(y) - tf.math.log1p(-y)
        return tf.gather(y, order, axis=-1)

    return edge


def _grey(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("L"))


def keras_probabilities(model: Any, pixels: np.ndarray, size: int, channels: int, norm: Normalisation,
                        order: list[int], outputs: str) -> np.ndarray:
    """Keras itself on one 8-bit grey image, resized as the edge does, with its own normalisation."""
    resized = np.asarray(Image.fromarray(pixels).resize((size, size), Image.Resampling.BILINEAR), np.float32)
    y = np.asarray(model(norm.apply(resized[None, :, :, None], channels)), dtype=np.float64)[0]
    if outputs == "logits":
        y = 1 / (1 + np.exp(-y))
    return y[order]


@dataclass
class ImportResult:
    """The manifest entry written and the parity measured."""

    entry: ModelEntry
    max_abs_diff: float
    images: int


def import_keras(model_path: Path, *, name: str, labels: str, input_spec: str, parity_images: list[Path],
                 models_dir: Path, version: str = "1.0.0", outputs: str = "probabilities",
                 thresholds: str | None = None, data: str = "not stated: a Keras model brought by its user",
                 tolerance: float = 0.01, command: str = "goldenhour train import-keras") -> ImportResult:
    """Convert, write the IR and the manifest entry, and check parity on ``parity_images``.

    Raises:
        ConfigurationError: unreadable model or options, no parity images, or
            OpenVINO disagreeing with Keras by more than ``tolerance`` (nothing is
            added to the manifest then).
    """
    if outputs not in ("probabilities", "logits"):
        raise ConfigurationError("--outputs must be probabilities or logits")
    order = parse_labels(labels)
    norm = Normalisation.parse(input_spec)
    if not parity_images:
        raise ConfigurationError("parity needs real X-rays: give --parity-images (a folder of PNG/JPEG)")
    model = load_keras(model_path)
    size, channels = _input_shape(model)
    if len(norm.mean) not in (1, channels) or len(norm.std) not in (1, channels):
        raise ConfigurationError(f"--input: mean and std need 1 or {channels} values")
    canonical_thresholds = None
    if thresholds:
        given = [float(t) for t in thresholds.split(",")]
        if len(given) != 14 or not all(0 <= t <= 1 for t in given):
            raise ConfigurationError("--thresholds: 14 values in 0..1, in the --labels order")
        canonical_thresholds = [given[i] for i in order]

    import openvino as ov
    from openvino.tools.ovc import convert_model

    converted = convert_model(edge_function(model, size, channels, norm, order, outputs))
    converted.outputs[0].get_tensor().set_names({"logits"})
    folder = models_dir / name / version
    folder.mkdir(parents=True, exist_ok=True)
    xml = folder / "model.xml"
    ov.save_model(converted, str(xml), compress_to_fp16=True)
    files = [describe_file(models_dir, xml, "openvino-xml", "fp16"),
             describe_file(models_dir, xml.with_suffix(".bin"), "openvino-bin", "fp16")]
    entry = ModelEntry(
        name=name, version=version, task="classifier", labels=[str(f) for f in FINDINGS],
        input=InputContract(size=size, channels=1, mean=0.0, std=1.0), files=files,
        outputs={"logits": "14 raw scores, canonical finding order (converted from Keras)"},
        thresholds=canonical_thresholds, command=command, data=data,
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        notes=f"Imported from Keras ({model_path.name}); input normalisation {input_spec}. "
              "Not for clinical use.")

    from edge_agent.backends import OpenVinoConfig, create_backend
    from edge_agent.classifier import ModelClassifier

    edge = ModelClassifier(entry, create_backend(entry, models_dir, OpenVinoConfig(cache_dir=None)))
    diffs = []
    for path in parity_images:
        pixels = _grey(path)
        diffs.append(float(np.abs(edge.predict(pixels) - keras_probabilities(
            model, pixels, size, channels, norm, order, outputs)).max()))
    worst = max(diffs)
    if worst > tolerance:
        raise ConfigurationError(f"OpenVINO differs from Keras by {worst:.4f} (> {tolerance}) on "
                                 f"{len(diffs)} images: not added to the manifest ({folder} kept)")
    entry = entry.model_copy(update={"metrics": [Metric(
        name="parity_max_abs_diff_vs_keras", value=round(worst, 6),
        data=f"{len(diffs)} real X-rays, probabilities, OpenVINO FP16 IR vs Keras")]})
    save_manifest(load_manifest(models_dir, missing_ok=True).upsert(entry), models_dir)
    logger.info("imported %s from Keras: parity %.5f on %d images", entry.key, worst, len(diffs))
    return ImportResult(entry, worst, len(diffs))
