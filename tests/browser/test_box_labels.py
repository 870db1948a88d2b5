"""Outside-client defect 11: AI box labels that overlap on the X-ray are moved apart,
on the viewer's canvas and on the thumbnail figure."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from shared.findings import Finding
from shared.messages import Region
from shared.settings import MqttSettings
from tests.browser.conftest import LiveHub, send_sample_case, sign_in
from tests.services import wait_until

CROWDED = [Region(finding=f, x1=0.20 + 0.01 * i, y1=0.20 + 0.01 * i, x2=0.55, y2=0.60, score=0.6 - 0.05 * i,
                  source="heatmap" if i % 2 else "detector")
           for i, f in enumerate((Finding.PNEUMOTHORAX, Finding.EFFUSION, Finding.MASS, Finding.NODULE))]


def _overlap(a: dict[str, float], b: dict[str, float]) -> bool:
    return a["x"] < b["x"] + b["width"] - 0.5 and b["x"] < a["x"] + a["width"] - 0.5 \
        and a["y"] < b["y"] + b["height"] - 0.5 and b["y"] < a["y"] + a["height"] - 0.5


def test_overlapping_boxes_get_labels_that_do_not_overlap(live_hub: LiveHub, new_page: Callable[[], Any],
                                                          mqtt_settings: MqttSettings, uid: str) -> None:
    case_id, _ = send_sample_case(mqtt_settings, uid, "l", heat_maps=True, regions=CROWDED)
    assert wait_until(lambda: len(live_hub.offered(case_id)) == 3)
    first, *_ = live_hub.offered(case_id)
    doctor = new_page()
    sign_in(doctor, live_hub, f"er-{first}", f"/er/{first}/cases/{case_id}")
    assert doctor.is_checked("#toggle-boxes")  # boxes are on by default
    doctor.wait_for_function("window.ghViewer.labels().length === 4", timeout=10_000)
    drawn = [{"x": b["x"], "y": b["y"], "width": b["w"], "height": b["h"]}
             for b in doctor.evaluate("window.ghViewer.labels()")]
    assert not any(_overlap(a, b) for i, a in enumerate(drawn) for b in drawn[i + 1:]), drawn
    labels = doctor.locator("#regions-figure .region-label")
    assert labels.count() == 4
    doctor.wait_for_timeout(300)  # the figure's labels are moved after layout
    boxes = [labels.nth(i).bounding_box() for i in range(4)]
    assert all(boxes)
    assert not any(_overlap(a, b) for i, a in enumerate(boxes) for b in boxes[i + 1:]), boxes  # type: ignore[arg-type]
