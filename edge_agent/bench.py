"""``goldenhour bench edge``: per-stage latency of one diagnosis on this CPU,
for every backend in the same run, and the edge process's peak memory.

Inputs are made from real images of the data folder: a 1024 px PNG (NIH
original resolution) and a 2048 px 12-bit DICOM (the same pixels enlarged
and stored as MONOCHROME2 with a rescale and a window, like a portable
unit's output). Memory is measured in a separate process that serves with
the default backend only, so the figure is the ambulance's, not this
benchmark's (which also loads torch for the reference backend).
"""

from __future__ import annotations

import json
import logging
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer
from PIL import Image
from rich.console import Console
from rich.table import Table

from edge_agent.backends import OnnxRuntimeConfig, OpenVinoConfig, TorchConfig
from edge_agent.case_message import diagnosis_message
from edge_agent.classifier import DEFAULT_CLASSIFIER, load_classifier
from edge_agent.detector import load_detector
from edge_agent.operators import XrayInput
from edge_agent.pipeline import DiagnosisPipeline
from shared.datapaths import data_dir
from shared.errors import GoldenhourError
from shared.messages import Position
from shared.mqtt import build_message
from shared.stats import percentile
from shared.topics import CASE_DIAGNOSIS

logger = logging.getLogger(__name__)
console = Console()

STAGES = ("decode", "ood", "preprocess", "classify", "postprocess", "heatmap", "localise", "triage",
          "encode")
BACKENDS: dict[str, Any] = {
    "openvino-fp16": OpenVinoConfig(precision="fp16"),
    "openvino-fp16-bf16": OpenVinoConfig(precision="fp16", inference_precision="bf16"),
    "openvino-int8": OpenVinoConfig(precision="int8"),
    "onnxruntime-fp32": OnnxRuntimeConfig(),
    "torch-eager": TorchConfig(),
}


def make_inputs(folder: Path) -> dict[str, Path]:
    """A 1024 px PNG and a 2048 px 12-bit DICOM from a real NIH image."""
    root = data_dir()
    source = None
    if root is not None:
        fullres = sorted((root / "nih-cxr14-sample" / "fullres").glob("*.png"))
        source = fullres[0] if fullres else None
    if source is None:
        raise GoldenhourError("bench edge needs the data folder's real images (set GOLDENHOUR_DATA_DIR)")
    with Image.open(source) as image:
        grey = image.convert("L").resize((1024, 1024), Image.Resampling.BILINEAR)
    png = folder / "nih-1024.png"
    grey.save(png)
    big = np.asarray(grey.resize((2048, 2048), Image.Resampling.BICUBIC), dtype=np.float32)
    dicom = folder / "nih-2048-12bit.dcm"
    write_12bit_dicom((big / 255.0 * 4095).astype(np.uint16), dicom)
    return {"png-1024": png, "dicom-2048-12bit": dicom}


def write_12bit_dicom(pixels: np.ndarray, path: Path) -> None:
    """A DX-like 12-bit MONOCHROME2 file with rescale and window, explicit VR little endian."""
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "DX"
    ds.ViewPosition = "AP"
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.RescaleSlope, ds.RescaleIntercept = 1, 0
    ds.WindowCenter, ds.WindowWidth = 2048, 4096
    ds.PixelData = pixels.astype(np.uint16).tobytes()
    ds.save_as(path, enforce_file_format=True)


def time_backend(config: Any, inputs: dict[str, Path], runs: int, warmup: int = 3
                 ) -> dict[str, dict[str, list[float]]]:
    """Stage timings in ms per input for one backend."""
    # The detector ships as OpenVINO IR only and runs there whatever the classifier's
    # backend (as on the edge); only the classify stage differs between rows.
    pipeline = DiagnosisPipeline(load_classifier(config), load_detector(OpenVinoConfig()))
    position = Position(lat=42.36, lon=-71.06)
    out: dict[str, dict[str, list[float]]] = {}
    for label, path in inputs.items():
        samples: dict[str, list[float]] = {stage: [] for stage in (*STAGES, "total")}
        for i in range(warmup + runs):
            started = time.perf_counter()  # the total includes reading the file, as the agent does
            result = pipeline.run(XrayInput.read(path))
            diagnosis = diagnosis_message(result, ambulance_id="amb-bench", position=position)
            encode_start = time.perf_counter()
            build_message(CASE_DIAGNOSIS, diagnosis, sender="amb-bench", case_id="bench-case",
                          ambulance_id="amb-bench")
            done = time.perf_counter()
            if i < warmup:
                continue
            for stage, ms in diagnosis.timings_ms.items():
                samples.setdefault(stage, []).append(ms)
            samples["encode"].append((done - encode_start) * 1000)
            samples["total"].append((done - started) * 1000)
        out[label] = samples
    return out


def _serving_memory(inputs: dict[str, Path], runs: int) -> dict[str, Any]:
    """Peak RSS of a fresh process that loads the default backend and diagnoses."""
    code = (
        "import json,sys\n"
        "from pathlib import Path\n"
        "from edge_agent.operators import XrayInput\n"
        "from edge_agent.pipeline import build_pipeline\n"
        "from edge_agent.settings import load_edge_settings\n"
        "p=build_pipeline(load_edge_settings())\n"
        f"paths=[Path(x) for x in {json.dumps([str(p) for p in inputs.values()])}]\n"
        f"[p.run(XrayInput.read(x)) for _ in range({runs}) for x in paths]\n"
        # VmHWM, not ru_maxrss: Linux carries ru_maxrss over exec from the forking parent.
        "hwm=[l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1]\n"
        "print(json.dumps({'peak_rss_mb': int(hwm)/1024,"
        "'torch_loaded': 'torch' in sys.modules, 'ultralytics_loaded': 'ultralytics' in sys.modules}))\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def bench_edge(
    runs: Annotated[int, typer.Option(min=3, help="Timed diagnoses per input and backend.")] = 30,
    backends: Annotated[str, typer.Option(help="Comma-separated: " + ", ".join(BACKENDS))
                        ] = ",".join(BACKENDS),
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON document.")] = False,
) -> None:
    """Latency per stage (p50/p95) of a whole diagnosis for each backend, on a
    1024 px PNG and a 2048 px 12-bit DICOM made from real images, and the
    serving process's peak memory."""
    logging.getLogger().setLevel(logging.WARNING)
    chosen = [b.strip() for b in backends.split(",") if b.strip()]
    unknown = [b for b in chosen if b not in BACKENDS]
    if unknown:
        raise typer.BadParameter(f"unknown backends {unknown}")
    report: dict[str, Any] = {"model": DEFAULT_CLASSIFIER, "runs": runs,
                              "at": datetime.now(UTC).isoformat(timespec="seconds"), "backends": {}}
    with tempfile.TemporaryDirectory() as tmp:
        inputs = make_inputs(Path(tmp))
        for name in chosen:
            try:
                samples = time_backend(BACKENDS[name], inputs, runs)
            except GoldenhourError as exc:
                report["backends"][name] = {"error": str(exc)}
                continue
            report["backends"][name] = {
                label: {stage: {"p50": round(percentile(v, 0.5), 2), "p95": round(percentile(v, 0.95), 2)}
                        for stage, v in stages.items() if v}
                for label, stages in samples.items()}
        report["serving"] = _serving_memory(inputs, 5)
    report["bench_process_peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    _ratios(report)
    if as_json:
        typer.echo(json.dumps(report, indent=2))
    else:
        _print(report)


def _ratios(report: dict[str, Any]) -> None:
    """torch eager p50 / each backend's p50, whole diagnosis and classify stage."""
    torch_run = report["backends"].get("torch-eager", {})
    ratios: dict[str, Any] = {}
    for name, result in report["backends"].items():
        if "error" in result or "error" in torch_run or not torch_run:
            continue
        ratios[name] = {label: {stage: round(torch_run[label][stage]["p50"] / stages[stage]["p50"], 2)
                                for stage in ("classify", "total")}
                        for label, stages in result.items()}
    report["speedup_vs_torch_eager"] = ratios


def _print(report: dict[str, Any]) -> None:
    for name, result in report["backends"].items():
        if "error" in result:
            console.print(f"[red]{name}[/]: {result['error']}")
            continue
        table = Table(title=f"{name}: ms per diagnosis, p50 / p95 over {report['runs']} runs")
        table.add_column("stage")
        labels = list(result)
        for label in labels:
            table.add_column(label, justify="right")
        for stage in (*STAGES, "total"):
            table.add_row(stage, *[f"{result[lb][stage]['p50']:.1f} / {result[lb][stage]['p95']:.1f}"
                                   if stage in result[lb] else "-" for lb in labels])
        console.print(table)
    for name, ratio in report["speedup_vs_torch_eager"].items():
        console.print(f"{name} vs torch eager (p50 ratio): " + ", ".join(
            f"{label}: classify {r['classify']}x, whole {r['total']}x" for label, r in ratio.items()))
    serving = report["serving"]
    console.print(f"serving process (OpenVINO, default settings): peak RSS {serving['peak_rss_mb']:.0f} MB; "
                  f"torch loaded: {serving['torch_loaded']}, "
                  f"ultralytics loaded: {serving['ultralytics_loaded']}")
