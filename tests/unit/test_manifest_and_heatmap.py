"""The model manifest's checks and the numpy heat-map code."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edge_agent.heatmap import heat_map, overlay_jpeg
from shared.findings import FINDINGS, Finding
from shared.manifest import (
    DEFAULT_MODELS_DIR,
    InputContract,
    ModelEntry,
    ModelManifestError,
    describe_file,
    load_manifest,
    save_manifest,
    verified_path,
)


def _entry(models_dir: Path, **changes: object) -> ModelEntry:
    weights = models_dir / "mm" / "model.onnx"
    weights.parent.mkdir(parents=True, exist_ok=True)
    weights.write_bytes(b"not really onnx")
    fields: dict[str, object] = dict(
        name="mm", version="1", task="classifier", labels=[str(f) for f in FINDINGS],
        input=InputContract(size=64), files=[describe_file(models_dir, weights, "onnx")],
        outputs={"logits": "x"}, command="goldenhour train ...", data="test", created_at="2026-11-26")
    fields.update(changes)
    return ModelEntry.model_validate(fields)


def test_manifest_round_trip_and_checksum(tmp_path: Path) -> None:
    entry = _entry(tmp_path)
    save_manifest(load_manifest(tmp_path, missing_ok=True).upsert(entry), tmp_path)
    loaded = load_manifest(tmp_path).find("mm")
    path = verified_path(tmp_path, loaded, loaded.file("onnx"))
    assert path.read_bytes() == b"not really onnx"
    path.write_bytes(b"tampered")
    with pytest.raises(ModelManifestError, match="sha256"):
        verified_path(tmp_path, loaded, loaded.file("onnx"))
    path.unlink()
    with pytest.raises(ModelManifestError, match="missing"):
        verified_path(tmp_path, loaded, loaded.file("onnx"))


def test_manifest_refuses_wrong_label_order_and_lengths(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="canonical order"):
        _entry(tmp_path, labels=sorted(str(f) for f in FINDINGS)[::-1])
    with pytest.raises(ValueError, match="thresholds"):
        _entry(tmp_path, thresholds=[0.5] * 13)


def test_manifest_errors_are_clear(tmp_path: Path) -> None:
    with pytest.raises(ModelManifestError, match="no model manifest"):
        load_manifest(tmp_path)
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(ModelManifestError, match="invalid"):
        load_manifest(tmp_path)
    save_manifest(load_manifest(tmp_path / "absent", missing_ok=True), tmp_path)
    with pytest.raises(ModelManifestError, match="known: none"):
        load_manifest(tmp_path).find("chest")


def test_every_shipped_model_file_matches_its_manifest_entry() -> None:
    manifest = load_manifest(DEFAULT_MODELS_DIR)
    assert manifest.models, "models/manifest.json lists no model"
    for entry in manifest.models:
        assert "clinical" in entry.notes.lower()
        assert entry.command.startswith("goldenhour train")
        for file in entry.files:
            verified_path(DEFAULT_MODELS_DIR, entry, file)
        assert (DEFAULT_MODELS_DIR / entry.name / "README.md").is_file()
        card = (DEFAULT_MODELS_DIR / entry.name / "README.md").read_text()
        assert "NOT FOR CLINICAL USE" in card
    total = sum(f.bytes for e in manifest.models for f in e.files)
    assert total < 45e6, f"committed model files total {total / 1e6:.1f} MB"
    raw = json.loads((DEFAULT_MODELS_DIR / "manifest.json").read_text())
    assert raw["manifest_version"] == 1


def test_shipped_manifest_and_cards_name_no_machine_paths() -> None:
    """Committed files name paths relative to the repository or the data folder."""
    import re

    texts = [(DEFAULT_MODELS_DIR / "manifest.json").read_text()]
    texts += [p.read_text() for p in DEFAULT_MODELS_DIR.glob("*/README.md")]
    for text in texts:
        found = re.findall(r"(?<![\w.<>-])/(?:work|root|home|tmp|opt|usr|var|mnt)/[^\s'\")]*", text)
        assert not found, found


def test_operating_points_must_match_the_thresholds(tmp_path: Path) -> None:
    point = dict(target_specificity=0.9, threshold=0.3, positives=10, images=100, sensitivity=0.5,
                 sensitivity_ci95=(0.3, 0.7), specificity=0.9, specificity_ci95=(0.85, 0.95), ppv=0.4,
                 ppv_ci95=(0.2, 0.6), npv=0.9, npv_ci95=(0.8, 0.95), reference_prevalence=0.05,
                 ppv_reference=0.2, ppv_reference_ci95=(0.1, 0.3), npv_reference=0.97,
                 npv_reference_ci95=(0.95, 0.99))
    points = [{"finding": str(f), **point} for f in FINDINGS]
    entry = _entry(tmp_path, thresholds=[0.3] * 14, operating_points=points)
    assert entry.operating_points is not None and entry.operating_points[0].specificity == 0.9
    with pytest.raises(ValueError, match="operating points' thresholds"):
        _entry(tmp_path, thresholds=[0.5] * 14, operating_points=points)
    with pytest.raises(ValueError, match="label order"):
        _entry(tmp_path, thresholds=[0.3] * 14, operating_points=points[::-1])


def test_heat_map_peak_and_region() -> None:
    cam = np.zeros((12, 12), np.float32)
    cam[2:5, 7:10] = 1.0
    cam[3, 8] = 2.0
    cam[10, 1] = 1.5  # a second, separate hot spot stays out of the region
    heat = heat_map(Finding.PNEUMOTHORAX, cam)
    assert heat.peak_x == pytest.approx(8.5 / 12) and heat.peak_y == pytest.approx(3.5 / 12)
    assert heat.box == pytest.approx((7 / 12, 2 / 12, 10 / 12, 5 / 12))
    assert heat.map.max() == 1.0 and heat.map.min() >= 0


def test_overlay_is_a_small_colour_jpeg_of_the_image_shape() -> None:
    pixels = np.tile(np.linspace(0, 255, 400, dtype=np.uint8), (300, 1))
    cam = np.random.default_rng(0).normal(size=(12, 12)).astype(np.float32)
    data = overlay_jpeg(pixels, heat_map(Finding.EFFUSION, cam))
    image = Image.open(io.BytesIO(data))
    assert image.format == "JPEG" and image.mode == "RGB"
    assert image.size == (320, 240)
    assert len(data) < 24 * 1024


def test_flat_map_has_no_peak_but_no_error() -> None:
    heat = heat_map(Finding.MASS, np.full((8, 8), -1.0, np.float32))
    assert heat.map.max() == 0
