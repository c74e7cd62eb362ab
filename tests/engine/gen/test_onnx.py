"""ONNX export: the exported network runs in onnxruntime with any batch size and matches PyTorch."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from app.engine import jobs as J
from app.engine.training.checkpoints import load_checkpoint
from app.engine.export import ExportOnnxSpec, export_onnx
from tests.engine.gen.test_sampling import make_checkpoint, tiny_unet


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("num_classes", [0, 2])
def test_onnx_model_matches_pytorch_at_several_batch_sizes(tmp_path, num_classes):
    net = tiny_unet(num_classes=num_classes)
    path = tmp_path / "net.onnx"
    io = export_onnx(net, path)
    assert io["inputs"] == (["x", "level", "y"] if num_classes else ["x", "level"])
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    g = torch.Generator().manual_seed(4)
    for batch in (1, 2, 5):
        x = torch.randn(batch, 1, 16, 16, generator=g)
        level = torch.rand(batch, generator=g) * 999
        feeds = {"x": x.numpy(), "level": level.numpy()}
        y = None
        if num_classes:
            y = torch.randint(0, num_classes + 1, (batch,), generator=g)
            feeds["y"] = y.numpy()
        got = sess.run(None, feeds)[0]
        with torch.no_grad():
            want = net(x, level, y).numpy()
        assert got.shape == (batch, 1, 16, 16)
        assert np.abs(want).max() > 1e-2  # a network whose output is not trivially zero
        np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-4)


def test_export_onnx_job_writes_a_verified_model_with_its_card(workspace, tmp_path, capsys):
    run_id = make_checkpoint(workspace, "vpsde", num_classes=2)
    out = tmp_path / "m" / "score.onnx"
    final = J.run_collect(ExportOnnxSpec(run=run_id, out=str(out)), workspace=workspace)[-1]
    assert isinstance(final, J.Done), final
    res = final.result
    assert res["max_abs_diff"] < 1e-4 and res["conditional"] is True and out.exists()
    card = json.loads(out.with_suffix(".json").read_text())
    model = load_checkpoint(run_id, workspace)
    assert card["checkpoint_sha256"] == model.sha256 and card["process"]["name"] == "vpsde"
    props = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert json.loads(props["radsynth"])["class_names"] == ["normal", "pneumonia"]
    bad = J.run_collect(ExportOnnxSpec(run=run_id, out=str(tmp_path / "x.pt")), workspace=workspace)[-1]
    assert isinstance(bad, J.Failed) and ".onnx" in bad.message
