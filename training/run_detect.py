"""The ``train detect`` job: dataset -> training -> test-split evaluation ->
export -> manifest entry and model card."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console

from shared.findings import FINDINGS
from shared.manifest import InputContract, Metric, ModelEntry, describe_file, load_manifest, save_manifest
from training.detect import (
    AUGMENT,
    build_dataset,
    evaluate_detector,
    export_detector,
    map50_over,
    train_detector,
)

OUTPUTS = {"output0": "(1, 4 + 14, anchors): box centre x, centre y, width, height in input pixels, "
                      "then a score per finding; no NMS (the edge decodes in numpy)"}


def run_detect(data_root: Path, out: Path, models_dir: Path, *, model: str, size: int, epochs: int,
               batch: int, patience: int, seed: int, name: str, version: str, register: bool,
               command: str, console: Console, weights: Path | None = None,
               formats: tuple[str, ...] = ("onnx", "openvino"), min_val_map50: float = 0.3,
               conf: float = 0.25) -> dict[str, object]:
    """Train (unless ``weights`` are given: then only evaluate), evaluate on
    held-out patients and (with ``register``) ship the detector."""
    started = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    data = build_dataset(data_root, out / "dataset", seed)
    console.print(f"boxes per split: { {k: v.get('images', 0) for k, v in data.counts.items()} } images")
    previous = out / "detector.json"
    if weights is None:
        weights = train_detector(data, out, model=model, size=size, epochs=epochs, batch=batch,
                                 patience=patience, seed=seed)
        train_s = time.perf_counter() - started
    else:
        from training.detect import offline_ultralytics

        offline_ultralytics(out)
        earlier = json.loads(previous.read_text(encoding="utf-8")) if previous.is_file() else {}
        train_s = float(earlier.get("train_seconds", 0.0))
        command = f"{earlier['command']} && {command}" if earlier.get("command") else command
    test = evaluate_detector(weights, data, size, "test")
    val = evaluate_detector(weights, data, size, "val")
    test_counts = data.counts["test"]
    headline = map50_over(test["per_finding"], test_counts)  # type: ignore[arg-type]
    summary: dict[str, object] = {"model": model, "size": size, "epochs": epochs, "seed": seed,
                                  "train_seconds": train_s, "test": test, "val": val, "counts": data.counts,
                                  "test_map50_findings_10_boxes": headline, "command": command}
    (out / "detector.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    _report(summary, out / "detector.md")
    console.print((out / "detector.md").read_text(encoding="utf-8"))
    if register:
        target = models_dir / name / version
        onnx, xml = export_detector(weights, size, target)
        files = [describe_file(models_dir, xml, "openvino-xml", "fp16"),
                 describe_file(models_dir, xml.with_suffix(".bin"), "openvino-bin", "fp16")]
        if "onnx" in formats:
            files.insert(0, describe_file(models_dir, onnx, "onnx"))
        else:
            onnx.unlink()
        # Boxes are shown only for findings the detector can localise: chosen on the
        # validation patients, so the test figures stay unbiased.
        per_val = val["per_finding"]
        assert isinstance(per_val, dict)
        thresholds = [conf if per_val.get(str(f), {}).get("map50", 0.0) >= min_val_map50 else 1.0
                      for f in FINDINGS]
        shown = [str(f) for f, t in zip(FINDINGS, thresholds, strict=True) if t < 1.0]
        console.print(f"boxes shown on the edge for: {', '.join(shown) or 'no finding'}")
        data_text = (f"NIH ChestX-ray14 sample boxes (NIH BBox_List_2017 and ChestX-Det): "
                     f"{sum(v.get('images', 0) for v in data.counts.values())} boxed images, "
                     "patient-wise split "
                     f"train/val/test {[data.counts[s].get('images', 0) for s in ('train', 'val', 'test')]}")
        metrics = [Metric(name="map50_test", value=round(float(test["map50"]), 4),  # type: ignore[arg-type]
                          data=f"held-out test patients ({test_counts.get('images', 0)} images), "
                               "all findings"),
                   Metric(name="map50_95_test", value=round(float(test["map50_95"]), 4),  # type: ignore[arg-type]
                          data="held-out test patients, all findings"),
                   Metric(name="map50_test_findings_with_10_boxes", value=round(headline, 4),
                          data="held-out test patients, findings with >= 10 test boxes")]
        entry = ModelEntry(name=name, version=version, task="detector", labels=[str(f) for f in FINDINGS],
                           thresholds=thresholds,
                           threshold_rule=f"score >= {conf} for findings whose validation mAP50 >= "
                                          f"{min_val_map50}; 1.0 = never shown (the detector cannot "
                                          "localise that finding yet)",
                           input=InputContract(size=size, resize="letterbox", channels=3, mean=0.0,
                                               std=255.0),
                           files=files, outputs=OUTPUTS, metrics=metrics, command=command, data=data_text,
                           created_at=datetime.now(UTC).replace(microsecond=0).isoformat(),
                           notes="Not for clinical use. Trained from scratch on a few hundred images.")
        save_manifest(load_manifest(models_dir, missing_ok=True).upsert(entry), models_dir)
        _card(models_dir / name, entry, summary, out / "detector.md")
        console.print(f"registered {entry.key}")
    return summary


def _report(summary: dict[str, object], path: Path) -> None:
    test, val = summary["test"], summary["val"]
    counts = summary["counts"]
    assert isinstance(test, dict) and isinstance(val, dict) and isinstance(counts, dict)
    lines = ["## Detector evaluation", "",
             f"{summary['model']} from scratch at {summary['size']} px, up to {summary['epochs']} epochs "
             f"({float(summary['train_seconds']) / 60:.0f} min on this machine). Test = held-out patients "
             "(fold 0 of the classifier's stratified folds). Not for clinical use.", "",
             "| finding | test boxes | test mAP50 | test mAP50-95 | val mAP50 |", "|---|---:|---:|---:|---:|"]
    for finding in FINDINGS:
        key = str(finding)
        t = test["per_finding"].get(key)
        v = val["per_finding"].get(key)
        n = counts["test"].get(key, 0)
        if t or n:
            lines.append(f"| {key} | {n} | {t['map50'] if t else 0:.3f} | {t['map50_95'] if t else 0:.3f} | "
                         f"{v['map50'] if v else 0:.3f} |")
    lines.append(f"| **all** | | **{test['map50']:.3f}** | {test['map50_95']:.3f} | {val['map50']:.3f} |")
    lines.append("")
    lines.append(f"Mean test mAP50 over findings with at least 10 test boxes: "
                 f"**{float(summary['test_map50_findings_10_boxes']):.3f}**.")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _card(folder: Path, entry: ModelEntry, summary: dict[str, object], report: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    text = f"""# {entry.name} {entry.version}: suspicious-region detector (YOLO)

> **NOT FOR CLINICAL USE.** Trained from scratch on a few hundred public
> images; boxes show where the network looks, and are often wrong.

- Architecture: ultralytics `{summary['model']}`, from scratch (no pretrained detection weights offline).
- Input: {entry.input.size} px letterbox (grey 114 padding), the grey image in 3 channels, /255.
- Output: raw head, decoded with numpy on the edge (`edge_agent/detector.py`): best finding per anchor
  above 0.25, per-finding NMS at IoU 0.7.
- Augmentation: {AUGMENT}.
- Made by: `{entry.command}`
- Data: {entry.data}.

{report.read_text(encoding="utf-8")}

## Limits
- A few hundred boxed images; most findings have a handful of test boxes,
  so per-finding figures are very uncertain.
- NIH boxes mark one instance per finding per image; others in the same
  image count as false positives.
"""
    (folder / "README.md").write_text(text, encoding="utf-8")
