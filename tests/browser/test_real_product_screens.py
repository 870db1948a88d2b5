"""The real product on real X-rays, end to end, and the screenshots the README
shows: a crew uploads NIH ChestX-ray14 images on the crew page of a real edge
agent running the shipped classifier (the newest version in models/manifest.json,
OpenVINO, with the shipped detector), the diagnosis goes through a real
Mosquitto to a live hub, an ER doctor sees the offer, opens the case with the
model's boxes and heat map on, and accepts; the crew page shows the diagnosis
and the accepting ER.

The images are picked by a rule, never by what the model says of them: the
first image in ``labels.csv`` order labelled with the finding that also has a
radiologist box for it in ``boxes.csv`` (Pneumothorax, then Effusion). The
shipped model's final fit used every image of the sample, so these screens show
the product working, not its accuracy (see the model card)."""

from __future__ import annotations

import csv
import hashlib
import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from edge_agent.agent import EdgeAgent
from edge_agent.classifier import ModelClassifier
from edge_agent.heatmap import heat_map, overlay_base, overlay_jpeg
from edge_agent.imaging import load_image
from edge_agent.settings import load_edge_settings
from edge_agent.web import CrewServer
from shared.broker import free_port
from shared.findings import FINDINGS
from shared.manifest import load_manifest
from shared.messages import DiagnosisV1
from shared.settings import MqttSettings
from tests.browser.conftest import SCREENSHOTS, LiveHub, sign_in
from tests.services import wait_until

pytestmark = [pytest.mark.browser, pytest.mark.realdata]

VIEWPORT = {"width": 1280, "height": 900}
MAX_PNG_BYTES = 400_000
"""The screenshots live in the repository: each is kept under this size."""
FINDINGS_SHOWN = ("Pneumothorax", "Effusion")
FENWAY = (42.3467, -71.0972)


@dataclass(frozen=True)
class NihImage:
    """One image of the NIH sample, with what its label row says."""

    path: Path
    labels: list[str]
    age: int
    sex: str


def first_boxed(data_folder: Path, finding: str) -> NihImage:
    """The first image in labels.csv order labelled ``finding`` that has a radiologist box for it."""
    sample = data_folder / "nih-cxr14-sample"
    with (sample / "boxes.csv").open(newline="") as handle:
        boxed = {row["Image Index"] for row in csv.DictReader(handle) if row["Finding"] == finding}
    with (sample / "labels.csv").open(newline="") as handle:
        for row in csv.DictReader(handle):
            labels = row["Finding Labels"].split("|")
            if finding in labels and row["Image Index"] in boxed:
                return NihImage(sample / "images" / row["Image Index"], labels,
                                int(row["Patient Age"]), row["Patient Gender"])
    raise AssertionError(f"no {finding} image with a box in {sample}")


@pytest.fixture
def shipped_edge(mqtt_settings: MqttSettings, uid: str) -> Iterator[EdgeAgent]:
    """A real edge agent in Fenway, a few minutes from the downtown ERs, with the
    edge's default model settings: the shipped classifier (newest manifest
    version) and detector."""
    agent = EdgeAgent(load_edge_settings(ambulance_id=f"amb-{uid}", mqtt=mqtt_settings,
                                         lat=FENWAY[0], lon=FENWAY[1]))
    agent.start()
    yield agent
    agent.stop()


@pytest.fixture
def crew_url(shipped_edge: EdgeAgent) -> Iterator[str]:
    server = CrewServer(shipped_edge, port=free_port())
    server.start()
    yield server.url
    server.stop()


@pytest.fixture
def open_page(browser: Any) -> Iterator[Any]:
    """Pages in contexts of their own at 1280x900."""
    contexts = []

    def make() -> Any:
        context = browser.new_context(viewport=VIEWPORT)
        contexts.append(context)
        return context.new_page()

    yield make
    for context in contexts:
        context.close()


def _shot(page: Any, name: str) -> Path:
    """Save docs/screenshots/<name>.png, reduced to 256 colours if it is over the size limit."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    png = page.screenshot()
    if len(png) > MAX_PNG_BYTES:
        image = Image.open(io.BytesIO(png)).convert("RGB").quantize(256, method=Image.Quantize.MEDIANCUT)
        out = io.BytesIO()
        image.save(out, format="PNG", optimize=True)
        png = out.getvalue()
    assert len(png) <= MAX_PNG_BYTES, (name, len(png))
    path.write_bytes(png)
    return path


def _upload(page: Any, crew_url: str, image: NihImage) -> str:
    page.goto(f"{crew_url}/")
    page.set_input_files("#xray", str(image.path))
    page.fill("#age", str(image.age))
    page.check(f"input[name=sex][value={image.sex}]")
    page.click("#send-case")
    page.wait_for_url(f"{crew_url}/cases/**", timeout=60_000)
    return page.inner_text("#case-id").strip()


def _decoded(jpeg: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(jpeg)).convert("RGB"), np.float32)


def _check_model_overlays(edge: EdgeAgent, image: NihImage, sent: DiagnosisV1) -> None:
    """The overlays the edge sent are the classifier's class activation maps on this very image."""
    classifier = edge.pipeline.classifier
    assert isinstance(classifier, ModelClassifier)
    pixels = load_image(image.path).pixels
    prediction = classifier.infer(classifier.preprocess(pixels))
    assert prediction.cam is not None
    np.testing.assert_allclose(prediction.probabilities, [s.probability for s in sent.findings], atol=1e-4)
    base = overlay_base(pixels)
    assert sent.overlays is not None and [o.finding for o in sent.overlays] == sent.top3
    for overlay in sent.overlays:
        heat = heat_map(overlay.finding, prediction.cam[FINDINGS.index(overlay.finding)])
        assert (overlay.peak_x, overlay.peak_y) == pytest.approx((heat.peak_x, heat.peak_y), abs=0.02)
        ours, theirs = _decoded(overlay_jpeg(base, heat)), _decoded(overlay.jpeg)
        assert ours.shape == theirs.shape and float(np.abs(ours - theirs).mean()) < 2.0
        # a heat map, not the grey X-ray: colour at the model's peak
        chroma = theirs.max(axis=2) - theirs.min(axis=2)
        h, w = chroma.shape
        assert chroma[int(overlay.peak_y * h), int(overlay.peak_x * w)] > 40, overlay.finding
        assert float((chroma > 40).mean()) > 0.005, overlay.finding


def test_the_shipped_model_on_real_xrays_from_the_crew_page_to_the_er(
        data_folder: Path, live_hub: LiveHub, shipped_edge: EdgeAgent, crew_url: str,
        open_page: Any) -> None:
    entry = load_manifest().find(shipped_edge.settings.model)  # the newest version, as the edge loads it
    info = shipped_edge.pipeline.classifier.info
    assert (info.name, info.version, info.placeholder) == (entry.name, entry.version, False)
    images = [first_boxed(data_folder, finding) for finding in FINDINGS_SHOWN]

    crew = open_page()
    case_ids: list[str] = []
    for image in images:
        case_ids.append(_upload(crew, crew_url, image))
        sent = shipped_edge.cases[case_ids[-1]].diagnosis
        assert sent is not None
        assert sent.image.sha256 == hashlib.sha256(image.path.read_bytes()).hexdigest()
        assert (sent.model.name, sent.model.version, sent.model.placeholder) == (
            entry.name, entry.version, False)
        assert sent.model.sha256 and len(sent.findings) == 14
        _check_model_overlays(shipped_edge, image, sent)
    pneumothorax_id = case_ids[0]
    diagnosis = shipped_edge.cases[pneumothorax_id].diagnosis
    assert diagnosis is not None and diagnosis.overlays is not None

    # the crew page: the model's top 3, triage, heat maps, no placeholder banner
    crew.goto(f"{crew_url}/cases/{pneumothorax_id}")
    assert crew.locator("#placeholder").count() == 0
    assert f"{entry.name} {entry.version}" in crew.inner_text("#model-info")
    assert "AI result, not for clinical use" in crew.inner_text("#diagnosis")
    assert [li.get_attribute("data-finding") for li in crew.locator("#top3 li").all()] == [
        f.value for f in diagnosis.top3]
    assert crew.inner_text("#triage").strip() == str(diagnosis.triage.level)
    crew.wait_for_function("""() => [...document.querySelectorAll('#heatmaps img')]
        .every(img => img.complete && img.naturalWidth > 0)""", timeout=10_000)
    for i, overlay in enumerate(diagnosis.overlays):
        served = crew.request.get(f"{crew_url}/cases/{pneumothorax_id}/overlays/{overlay.finding.value}.jpg")
        assert served.ok and served.body() == overlay.jpeg, i

    # the hub offers both cases; the doctor of an ER offered both signs in
    assert wait_until(lambda: all(live_hub.offered(c) for c in case_ids), timeout=20)
    both = [h for h in live_hub.offered(pneumothorax_id) if h in live_hub.offered(case_ids[1])]
    hospital = both[0] if both else live_hub.offered(pneumothorax_id)[0]
    doctor = open_page()
    sign_in(doctor, live_hub, f"er-{hospital}", f"/er/{hospital}")
    for case_id in case_ids:
        row = doctor.locator(f"#open-offers tr[data-case='{case_id}']")
        if case_id == pneumothorax_id or both:
            row.wait_for(timeout=5_000)
            text = row.inner_text()
            assert "AI result, not for clinical use" in text and "placeholder" not in text.lower()
    doctor.wait_for_function("""() => [...document.querySelectorAll('#open-offers img.thumb')]
        .every(img => img.complete && img.naturalWidth > 0)""", timeout=10_000)
    _shot(doctor, "real-er-console")

    # the case view: the real X-ray with the model's boxes and its heat map, the 14 findings
    doctor.goto(f"{live_hub.url}/er/{hospital}/cases/{pneumothorax_id}")
    doctor.wait_for_function("document.getElementById('xray').dataset.source === 'full'", timeout=15_000)
    assert doctor.locator("#placeholder-flag").count() == 0
    model_text = doctor.inner_text("#model-info")
    assert entry.name in model_text and entry.version in model_text
    assert diagnosis.model.sha256 is not None and diagnosis.model.sha256[:12] in model_text
    rows = doctor.locator("#findings-table tbody tr")
    assert rows.count() == 14
    by_probability = sorted(diagnosis.findings, key=lambda f: -f.probability)
    assert [r.get_attribute("data-finding") for r in rows.all()] == [f.finding.value for f in by_probability]
    for score in diagnosis.findings:
        cells = doctor.locator(f"#findings-table tr[data-finding={score.finding.value}] td").all_inner_texts()
        assert cells[1] == f"{score.probability * 100:.0f}%" and cells[3] == f"{score.threshold * 100:.0f}%"
        assert ("suspected" in doctor.get_attribute(
            f"#findings-table tr[data-finding={score.finding.value}]", "class")) == score.suspected
    figures = doctor.locator("#ai-evidence figure.heatmap")
    assert [figures.nth(i).get_attribute("data-finding") for i in range(figures.count())] == [
        f.value for f in diagnosis.top3]
    for overlay in diagnosis.overlays:
        served = doctor.request.get(f"{live_hub.url}/api/cases/{pneumothorax_id}/overlays/"
                                    f"{overlay.finding.value}.jpg")
        assert served.status == 200 and served.body() == overlay.jpeg
    regions = doctor.locator("#regions-figure .region")
    assert regions.count() == len(diagnosis.regions)
    assert sorted(r.get_attribute("data-source") or "" for r in regions.all()) == sorted(
        r.source or "" for r in diagnosis.regions)
    assert doctor.is_checked("#toggle-boxes")
    before = doctor.evaluate("window.ghViewer.checksum()")
    doctor.check("#toggle-heatmap")
    doctor.wait_for_function("window.ghViewer.state().heatmap === true")
    doctor.wait_for_function(f"window.ghViewer.checksum() !== {before}", timeout=5_000)
    doctor.wait_for_function("""() => [...document.querySelectorAll('#ai-evidence img')]
        .every(img => img.complete && img.naturalWidth > 0)""", timeout=10_000)
    _shot(doctor, "real-er-case-view")
    doctor.evaluate("document.getElementById('ai-evidence').scrollIntoView()")
    _shot(doctor, "real-er-case-evidence")

    # the doctor accepts; the crew page shows the diagnosis and the accepting ER by itself
    doctor.locator("#decision-region button.accept").click()
    doctor.wait_for_url(f"{live_hub.url}/er/{hospital}/cases/{pneumothorax_id}")
    crew.locator("#accepted-hospital").wait_for(timeout=15_000)
    decision = shipped_edge.cases[pneumothorax_id].decision
    assert decision is not None and decision.hospital_id == hospital
    assert crew.inner_text("#accepted-hospital") == decision.hospital_name
    crew.wait_for_function("""() => [...document.querySelectorAll('#heatmaps img')]
        .every(img => img.complete && img.naturalWidth > 0)""", timeout=10_000)
    assert crew.locator("#heatmaps figure.heatmap").count() == len(diagnosis.overlays)
    _shot(crew, "real-crew-accepted")
    crew.evaluate("document.getElementById('diagnosis').scrollIntoView()")
    _shot(crew, "real-crew-diagnosis")


def test_the_crew_page_marks_the_peak_and_box_where_the_model_put_them(
        data_folder: Path, shipped_edge: EdgeAgent, crew_url: str, open_page: Any) -> None:
    page = open_page()
    case_id = _upload(page, crew_url, first_boxed(data_folder, FINDINGS_SHOWN[0]))
    diagnosis = shipped_edge.cases[case_id].diagnosis
    assert diagnosis is not None and diagnosis.overlays
    for overlay in diagnosis.overlays:
        figure = page.locator(f"#heatmaps figure.heatmap[data-finding={overlay.finding.value}]")
        frame, peak = figure.locator(".frame").bounding_box(), figure.locator(".peak").bounding_box()
        assert frame is not None and peak is not None
        centre = (peak["x"] + peak["width"] / 2 - frame["x"], peak["y"] + peak["height"] / 2 - frame["y"])
        assert centre == pytest.approx((overlay.peak_x * frame["width"], overlay.peak_y * frame["height"]),
                                       abs=4), overlay.finding
