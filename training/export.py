"""Export a trained classifier for the edge: ONNX, OpenVINO IR (FP16 weights)
and NNCF INT8 IR, with parity checks against torch, a manifest entry and a
model card.

Parity and the INT8 AUC change are measured on real images of the data
folder; the run's out-of-fold figures (made before the final fit) are the
model's metrics.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch
from rich.console import Console

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
from training.calibrate import sigmoid
from training.classify import JRZECH, read_oof
from training.data import load_pixels, load_sample
from training.metrics import auc_table, mean_auc
from training.models import ChestClassifier, build, export_wrapper
from training.region_sources import FILE as REGION_SOURCES_FILE
from training.run_operating_points import FILE as OPERATING_POINTS_FILE
from training.train import MEAN, STD, TrainConfig

logger = logging.getLogger(__name__)

PARITY_IMAGES = 32
CALIBRATION_IMAGES = 300
OUTPUTS = {"logits": "(N, 14) raw scores in label order; calibrate with temperature and bias",
           "cam": "(N, 14, h, w) class activation map: final-layer weights x last feature map"}


def load_run_model(run: Path) -> tuple[ChestClassifier, TrainConfig, dict[str, object]]:
    """The final model of a run folder and its configuration."""
    path = run / "model.pt"
    if not path.is_file():
        raise ConfigurationError(f"{path} not found: run 'goldenhour train classify' with --final first")
    saved = torch.load(path, weights_only=False, map_location="cpu")
    raw = dict(saved["config"])
    raw.pop("augment", None)
    config = TrainConfig(**raw)
    model, _ = build(config.backbone, config.cut)
    model.load_state_dict(saved["state_dict"])
    summary = json.loads((run / "run.json").read_text(encoding="utf-8"))
    return export_wrapper(model), config, summary


def export_onnx(model: ChestClassifier, size: int, path: Path) -> None:
    """ONNX with a dynamic batch axis and outputs ``logits`` and ``cam``."""
    dummy = torch.zeros(1, 1, size, size)
    torch.onnx.export(model, (dummy,), str(path), dynamo=False, input_names=["image"],
                      output_names=["logits", "cam"], opset_version=17,
                      dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}, "cam": {0: "batch"}})


def _inputs(pixels: np.ndarray) -> np.ndarray:
    return ((pixels.astype(np.float32) - MEAN) / STD)[:, None]


@dataclass
class ExportReport:
    """Parity and INT8 figures of one export."""

    onnx_max_abs: float
    openvino_max_abs: float
    int8_max_abs: float | None
    auc_fp32: float
    auc_int8: float | None
    images: int


def _run_openvino(path: Path, batch: np.ndarray) -> np.ndarray:
    import openvino as ov

    compiled = ov.Core().compile_model(str(path), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    return np.concatenate([compiled(batch[i:i + 1])["logits"] for i in range(len(batch))])


def export_run(run: Path, name: str, version: str, models_dir: Path, *, int8: bool, data_root: Path,
               console: Console, command: str) -> ModelEntry:
    """Export, verify and register the final model of ``run``."""
    import onnxruntime as ort
    import openvino as ov

    model, config, summary = load_run_model(run)
    # Round the weights to FP16 once, here: the torch file (stored FP16), the ONNX
    # file and the FP16 IR then hold the very same numbers, so parity checks
    # compare runtimes, not roundings.
    with torch.no_grad():
        for tensor in model.state_dict().values():
            if tensor.is_floating_point():
                tensor.copy_(tensor.half().float())
    target = models_dir / name / version
    target.mkdir(parents=True, exist_ok=True)
    onnx_path = target / "model.onnx"
    export_onnx(model, config.size, onnx_path)
    # from ovc itself: an edge import earlier in this process may have left openvino without it
    from openvino.tools.ovc import convert_model

    ov_model = convert_model(str(onnx_path))
    xml = target / "model.xml"
    ov.save_model(ov_model, str(xml), compress_to_fp16=True)

    torch_path = target / "model-torch.pt"
    torch.save({"backbone": config.backbone, "cut": config.cut,
                "state_dict": {k: v.half() if v.is_floating_point() else v
                               for k, v in model.state_dict().items()}}, torch_path)
    dataset = load_sample(data_root, with_teacher=False)
    pixels = load_pixels(dataset, config.size)
    rng = np.random.default_rng(0)
    probe = rng.choice(len(dataset), PARITY_IMAGES, replace=False)
    batch = _inputs(pixels[probe])
    with torch.no_grad():
        reference = model(torch.from_numpy(batch))[0].numpy()
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    onnx_out = session.run(["logits"], {"image": batch})[0]
    ov_out = _run_openvino(xml, batch)
    files = [describe_file(models_dir, onnx_path, "onnx"),
             describe_file(models_dir, xml, "openvino-xml", "fp16"),
             describe_file(models_dir, xml.with_suffix(".bin"), "openvino-bin", "fp16"),
             describe_file(models_dir, torch_path, "torch", "fp16")]
    report = ExportReport(float(np.abs(onnx_out - reference).max()), float(np.abs(ov_out - reference).max()),
                          None, 0.0, None, len(dataset))
    all_inputs = _inputs(pixels)
    fp32_logits = np.concatenate([session.run(["logits"], {"image": all_inputs[i:i + 16]})[0]
                                  for i in range(0, len(all_inputs), 16)])
    report.auc_fp32 = mean_auc(dataset.labels, fp32_logits)
    if int8:
        import nncf

        pick = rng.choice(len(dataset), min(CALIBRATION_IMAGES, len(dataset)), replace=False)
        calibration = nncf.Dataset([all_inputs[i:i + 1] for i in pick])
        quantised = nncf.quantize(ov.Core().read_model(str(onnx_path)), calibration,
                                  preset=nncf.QuantizationPreset.MIXED, subset_size=len(pick))
        int8_xml = target / "model-int8.xml"
        ov.save_model(quantised, str(int8_xml), compress_to_fp16=False)
        int8_logits = _run_openvino(int8_xml, all_inputs)
        report.int8_max_abs = float(np.abs(int8_logits[probe] - reference).max())
        report.auc_int8 = mean_auc(dataset.labels, int8_logits)
        files += [describe_file(models_dir, int8_xml, "openvino-xml", "int8"),
                  describe_file(models_dir, int8_xml.with_suffix(".bin"), "openvino-bin", "int8")]
    console.print(f"parity on {PARITY_IMAGES} real images, max |logit - torch|: ONNX Runtime "
                  f"{report.onnx_max_abs:.2e}, OpenVINO FP16 {report.openvino_max_abs:.2e}"
                  + (f", OpenVINO INT8 {report.int8_max_abs:.2e}" if report.int8_max_abs is not None else ""))
    if report.auc_int8 is not None:
        console.print(f"mean AUC on all {len(dataset)} sample images (the final model trained on them, so "
                      f"in-sample; only the change matters): FP32 {report.auc_fp32:.4f}, INT8 "
                      f"{report.auc_int8:.4f} (change {report.auc_int8 - report.auc_fp32:+.4f})")
    entry = _entry(name, version, config, summary, files, report, run, command)
    save_manifest(load_manifest(models_dir, missing_ok=True).upsert(entry), models_dir)
    (target / "export.json").write_text(json.dumps(report.__dict__, indent=2) + "\n", encoding="utf-8")
    from training.card import write_card

    write_card(models_dir / name, entry, run, report)
    console.print(f"registered {entry.key} in {models_dir / 'manifest.json'}")
    return entry


def _metrics(run: Path, summary: dict[str, object], report: ExportReport,
             points: dict | None) -> list[Metric]:
    """``points``: the run's operating points (``_operating_points``), read once by the caller."""
    oof = read_oof(run / "oof.csv")
    calibration = summary["calibration"]
    assert isinstance(calibration, dict)
    k = int(summary["folds"])  # type: ignore[call-overload]
    metrics = []
    subsets = [("all", np.ones(len(oof["image"]), bool)), (JRZECH, oof["source"] == JRZECH)]
    for label, mask in subsets:
        if mask.sum() < 20:
            continue
        _, mean = auc_table(oof["labels"][mask], oof["logits"][mask], oof["patient"][mask], rounds=1000)
        metrics.append(Metric(name="mean_auc_oof", value=round(mean.auc, 4),
                              ci95=(round(mean.low, 4), round(mean.high, 4)),
                              data=f"out-of-fold, {len(np.unique(oof['fold']))} of {k} folds of a "
                                   f"patient-wise stratified CV on the NIH "
                                   f"ChestX-ray14 sample ({int(mask.sum())} images, subset: {label}, "
                                   "v2020 labels)"))
    if points is not None:
        for name in ("sensitivity", "specificity"):
            metrics.append(Metric(name=f"mean_{name}_at_operating_point",
                                  value=round(float(np.mean([p[name] for p in points["points"]])), 4),
                                  data=f"{points['data']}; mean over the 14 findings"))
    else:
        probabilities = sigmoid(oof["logits"] / np.array(calibration["temperature"])
                                + np.array(calibration["bias"]))
        sens = [float(((probabilities[:, j] >= calibration["thresholds"][j])
                       & (oof["labels"][:, j] == 1)).sum() / max(oof["labels"][:, j].sum(), 1))
                for j in range(len(FINDINGS))]
        metrics.append(Metric(name="mean_sensitivity_at_threshold", value=round(float(np.mean(sens)), 4),
                              data=f"out-of-fold, the {len(oof['image'])} sample images scored"))
    metrics.append(Metric(name="ece_before_calibration", value=round(float(summary["ece_before"]), 4),
                          data=f"out-of-fold, the {len(oof['image'])} sample images scored, 10 bins"))
    metrics.append(Metric(name="ece_after_calibration", value=round(float(summary["ece_after"]), 4),
                          data=f"out-of-fold, the {len(oof['image'])} sample images scored, 10 bins "
                               "(calibration fitted on the same predictions, so optimistic)"))
    if report.auc_int8 is not None:
        metrics.append(Metric(name="int8_mean_auc_change", value=round(report.auc_int8 - report.auc_fp32, 4),
                              data=f"final model, FP32 vs INT8 on all {report.images} sample images "
                                   "(in-sample)"))
    return metrics


def _entry(name: str, version: str, config: TrainConfig, summary: dict[str, object], files: list,
           report: ExportReport, run: Path, command: str) -> ModelEntry:
    calibration = summary["calibration"]
    assert isinstance(calibration, dict)
    points = _operating_points(run)
    sources = step_result(run, REGION_SOURCES_FILE)  # train region-sources
    shipped: dict[str, object] = {
        "thresholds": [round(t, 6) for t in calibration["thresholds"]],
        "threshold_rule": str(calibration["rule"])}
    if points is not None:
        shipped = {"thresholds": [p["threshold"] for p in points["points"]],
                   "threshold_rule": points["rule"], "operating_points": points["points"],
                   "operating_points_data": points["data"],
                   "reference_prevalence_source": points["reference_prevalence_source"],
                   "reference_histogram": points["reference_histogram"]}
    if sources is not None:
        shipped["region_sources"] = sources["sources"]
    return ModelEntry(
        name=name, version=version, task="classifier", labels=[str(f) for f in FINDINGS],
        input=InputContract(size=config.size, mean=MEAN, std=STD), files=files, outputs=OUTPUTS,
        temperature=[round(t, 6) for t in calibration["temperature"]],
        bias=[round(b, 6) for b in calibration["bias"]],
        **shipped, metrics=_metrics(run, summary, report, points),  # type: ignore[arg-type]
        command=command_chain(str(summary["command"]), command, [points, sources]),
        data=f"NIH ChestX-ray14 sample: {summary.get('images_final', summary['images'])} images "
             f"of {summary.get('patients_final', summary['patients'])} patients "
             f"({summary['data']}); backbone {summary['backbone']}",
        created_at=datetime.now(UTC).replace(microsecond=0).isoformat(),
        notes="Not for clinical use. Research prototype trained on a small public sample.")


def command_chain(training: str, export: str, steps: list[dict | None]) -> str:
    """The commands that made an entry, in order: training, then the steps whose results
    the entry ships (``steps``: e.g. operating points and region sources, as ``step_result``
    reads them; a step not run, or run before steps recorded their command, adds nothing),
    then the export itself."""
    recorded = [str(r["command"]) for r in steps if r is not None and r.get("command")]
    return " && ".join([training, *recorded, export])


def step_result(run: Path, name: str) -> dict | None:
    """A ``train`` step's JSON result in the run folder, when the step has run."""
    path = run / name
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def _operating_points(run: Path) -> dict | None:
    """The run's ``train operating-points`` result, when it has one."""
    return step_result(run, OPERATING_POINTS_FILE)
