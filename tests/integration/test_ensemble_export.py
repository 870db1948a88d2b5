"""A two-backbone ensemble (Lite0 + Lite1) exported as one model: the classifier's
contract holds, and ONNX and OpenVINO agree with torch on real X-rays."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the train extra (torch) is not installed")

from training.data import load_pixels, load_sample  # noqa: E402
from training.ensemble import MeanEnsemble  # noqa: E402
from training.export import _inputs, _run_openvino, export_onnx  # noqa: E402
from training.models import build  # noqa: E402

pytestmark = pytest.mark.realdata


def test_an_ensemble_exports_as_one_model_with_parity(data_folder, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import onnxruntime as ort
    import openvino as ov

    members = [build("efficientnet-lite0", -1)[0].eval(), build("efficientnet-lite1", -1)[0].eval()]
    torch.manual_seed(0)
    with torch.no_grad():  # distinct heads, so the mean is not either member
        for member in members:
            member.head.fc.weight.normal_(0, 0.05)
            member.head.fc.bias.normal_(0, 0.5)
    ensemble = MeanEnsemble(members).eval()
    dataset = load_sample(data_folder, with_teacher=False)
    batch = _inputs(load_pixels(dataset.subset(np.arange(4)), 224))
    with torch.no_grad():
        logits, cam = ensemble(torch.from_numpy(batch))
        each = [member(torch.from_numpy(batch)) for member in members]
    assert torch.allclose(logits, (each[0][0] + each[1][0]) / 2, atol=1e-6)
    assert not torch.allclose(each[0][0], each[1][0], atol=1e-2)
    # the single model's CAM contract still holds: logits are the map's mean plus the (mean) bias
    bias = (members[0].head.fc.bias + members[1].head.fc.bias) / 2
    assert cam.shape == (4, 14, 7, 7) and torch.allclose(logits, cam.mean((2, 3)) + bias, atol=1e-4)

    path = tmp_path / "ensemble.onnx"
    export_onnx(ensemble, 224, path)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    onnx_logits, onnx_cam = session.run(["logits", "cam"], {"image": batch})
    assert np.abs(onnx_logits - logits.numpy()).max() < 1e-3
    assert np.abs(onnx_cam - cam.numpy()).max() < 1e-3
    xml = tmp_path / "ensemble.xml"
    from openvino.tools.ovc import convert_model  # the edge imports openvino without it

    ov.save_model(convert_model(str(path)), str(xml), compress_to_fp16=False)
    assert np.abs(_run_openvino(xml, batch) - logits.numpy()).max() < 1e-2
