"""The model manifest (``models/manifest.json``): what every shipped model file
is, how to feed it, how to read its outputs and how it was made. Besides the
classifiers and the detector it lists the image guard's fitted parameters
(task ``guard``, JSON files; ``edge_agent/guard_model.py``).

Training writes entries; the edge reads them and refuses a model whose file is
missing or whose sha256 differs from the entry. One canonical input contract
for every classifier: one grey channel, square, ``(pixel - mean) / std`` on
the 8-bit scale.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from shared.datapaths import REPO_ROOT
from shared.errors import ConfigurationError
from shared.findings import FINDINGS

logger = logging.getLogger(__name__)

MANIFEST_VERSION = 1
DEFAULT_MODELS_DIR = REPO_ROOT / "models"


class ModelManifestError(ConfigurationError):
    """The manifest is unreadable, names no such model, or a file fails its check."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class InputContract(_Strict):
    """How to turn an 8-bit grey image into the model's input tensor."""

    size: int = Field(gt=15, le=2048)
    """Square side in pixels."""
    resize: Literal["stretch", "letterbox"] = "stretch"
    """stretch: the whole image resized to the square; letterbox: aspect kept,
    padded with grey 114 (ultralytics' convention)."""
    channels: Literal[1, 3] = 1
    """3: the grey image copied into three channels."""
    mean: float = 127.0
    std: float = 128.0
    layout: Literal["NCHW"] = "NCHW"
    dtype: Literal["float32"] = "float32"


class ModelFile(_Strict):
    """One file of a model, relative to the models folder."""

    path: str
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    bytes: int = Field(ge=0)
    format: Literal["openvino-xml", "openvino-bin", "onnx", "torch", "json"]
    precision: Literal["fp32", "fp16", "int8"] = "fp32"


class Metric(_Strict):
    """A figure with the data it was measured on."""

    name: str
    value: float
    ci95: tuple[float, float] | None = None
    data: str
    """Which images, how split, how many."""


class OperatingPoint(_Strict):
    """A finding's operating point: the threshold above which it is "suspected", the
    specificity it was chosen for, and what it measured out of fold (cross-fitted)."""

    finding: str
    target_specificity: float = Field(gt=0, lt=1)
    threshold: float = Field(ge=0, le=1)
    positives: int = Field(ge=0)
    images: int = Field(ge=0)
    sensitivity: float
    sensitivity_ci95: tuple[float, float]
    specificity: float
    specificity_ci95: tuple[float, float]
    ppv: float
    ppv_ci95: tuple[float, float]
    npv: float
    npv_ci95: tuple[float, float]
    reference_prevalence: float
    """The prevalence PPV and NPV are also given at (``ModelEntry.reference_prevalence_source``)."""
    ppv_reference: float
    ppv_reference_ci95: tuple[float, float]
    npv_reference: float
    npv_reference_ci95: tuple[float, float]


class ReferenceHistogram(_Strict):
    """Out-of-fold probabilities per finding in equal bins: what field predictions are
    compared with to detect drift."""

    bins: list[float]
    counts: list[list[int]]
    """One row of ``len(bins) - 1`` counts per label."""


class ModelEntry(_Strict):
    """One model version and everything needed to run and judge it."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]{1,63}$")
    version: str = Field(max_length=32)
    task: Literal["classifier", "detector", "guard"]
    """guard: the chest-radiograph guard's fitted statistics (its labels are the statistics' names)."""
    labels: list[str]
    input: InputContract
    files: list[ModelFile]
    outputs: dict[str, str]
    """Output tensor name -> meaning (e.g. ``logits``: 14 raw scores)."""
    temperature: list[float] | None = None
    """Per-label temperature: calibrated p = sigmoid(logit / T + bias)."""
    bias: list[float] | None = None
    """Per-label shift after the temperature (0 when absent)."""
    thresholds: list[float] | None = None
    """Per-label operating threshold on the calibrated probability."""
    threshold_rule: str | None = None
    operating_points: list[OperatingPoint] | None = None
    """Per label, in label order: how each threshold was chosen and what it measured."""
    operating_points_data: str | None = None
    """The predictions the operating points were fitted and measured on."""
    reference_prevalence_source: str | None = None
    reference_histogram: ReferenceHistogram | None = None
    region_sources: dict[str, Literal["heatmap", "detector"]] | None = None
    """Per label, what draws its regions: the heat map or the detector, whichever
    localised better out of fold (``train region-sources``); None: both."""
    metrics: list[Metric] = Field(default_factory=list)
    command: str
    """The exact command that produced the files."""
    data: str
    """The data the model was trained on."""
    created_at: str
    notes: str = "Not for clinical use."

    @model_validator(mode="after")
    def _consistent(self) -> ModelEntry:
        n = len(self.labels)
        named = (("temperature", self.temperature), ("bias", self.bias), ("thresholds", self.thresholds))
        for name, values in named:
            if values is not None and len(values) != n:
                raise ValueError(f"{name} has {len(values)} values for {n} labels")
        if self.operating_points is not None:
            if [p.finding for p in self.operating_points] != self.labels:
                raise ValueError("operating_points must list every label in label order")
            if self.thresholds is not None and any(
                    abs(p.threshold - t) > 1e-6 for p, t in zip(self.operating_points, self.thresholds,
                                                                strict=True)):
                raise ValueError("thresholds must be the operating points' thresholds")
        if self.region_sources is not None and not set(self.region_sources) <= set(self.labels):
            raise ValueError("region_sources names a label the model does not have")
        if self.reference_histogram is not None and len(self.reference_histogram.counts) != n:
            raise ValueError("reference_histogram needs one row of counts per label")
        if self.task == "classifier" and tuple(self.labels) != tuple(str(f) for f in FINDINGS):
            raise ValueError("a classifier's labels must be the 14 findings in canonical order")
        return self

    def file(self, fmt: str, precision: str = "fp32") -> ModelFile:
        """The file of this format and precision.

        Raises:
            ModelManifestError: the entry has no such file.
        """
        for entry in self.files:
            if entry.format == fmt and entry.precision == precision:
                return entry
        raise ModelManifestError(f"model {self.name} {self.version} has no {precision} {fmt} file")

    @property
    def key(self) -> str:
        return f"{self.name}@{self.version}"


class Manifest(_Strict):
    """The whole manifest file."""

    manifest_version: Literal[1] = MANIFEST_VERSION
    models: list[ModelEntry] = Field(default_factory=list)

    def find(self, name: str, version: str | None = None) -> ModelEntry:
        """The named model, newest entry when no version is given.

        Raises:
            ModelManifestError: no such model.
        """
        matches = [m for m in self.models if m.name == name and version in (None, m.version)]
        if not matches:
            known = ", ".join(sorted({m.key for m in self.models})) or "none"
            raise ModelManifestError(f"no model {name}{'@' + version if version else ''} in the "
                                     f"manifest (known: {known})")
        return matches[-1]

    def upsert(self, entry: ModelEntry) -> Manifest:
        """A copy with ``entry`` replacing any entry of the same name and version."""
        kept = [m for m in self.models if m.key != entry.key]
        return self.model_copy(update={"models": [*kept, entry]})


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_manifest(models_dir: Path = DEFAULT_MODELS_DIR, *, missing_ok: bool = False) -> Manifest:
    """Read and validate ``manifest.json``; ``missing_ok`` gives an empty one for a new folder.

    Raises:
        ModelManifestError: missing or invalid.
    """
    path = models_dir / "manifest.json"
    if missing_ok and not path.exists():
        return Manifest()
    try:
        return Manifest.model_validate(json.loads(path.read_text(encoding="utf-8")))
    except FileNotFoundError as exc:
        raise ModelManifestError(f"no model manifest at {path}") from exc
    except (json.JSONDecodeError, ValidationError) as exc:
        raise ModelManifestError(f"invalid model manifest {path}: {exc}") from exc


def save_manifest(manifest: Manifest, models_dir: Path = DEFAULT_MODELS_DIR) -> None:
    """Write the manifest atomically, pretty-printed for review in diffs."""
    path = models_dir / "manifest.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(manifest.model_dump(mode="json"), indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)


def verified_path(models_dir: Path, entry: ModelEntry, file: ModelFile) -> Path:
    """The file's path after checking that it exists and matches its sha256.

    Raises:
        ModelManifestError: missing, or a different file than the manifest names.
    """
    path = models_dir / file.path
    if not path.is_file():
        raise ModelManifestError(f"model file {path} of {entry.key} is missing")
    actual = sha256_file(path)
    if actual != file.sha256:
        raise ModelManifestError(f"model file {path} of {entry.key} has sha256 {actual[:16]}..., "
                                 f"the manifest says {file.sha256[:16]}...: refusing to load it")
    return path


def describe_file(models_dir: Path, path: Path, fmt: str, precision: str = "fp32") -> ModelFile:
    """A :class:`ModelFile` for a file written under ``models_dir``."""
    return ModelFile(path=path.relative_to(models_dir).as_posix(), sha256=sha256_file(path),
                     bytes=path.stat().st_size, format=fmt,  # type: ignore[arg-type]
                     precision=precision)  # type: ignore[arg-type]
