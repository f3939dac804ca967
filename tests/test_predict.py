"""In-process prediction, the CLI, the SageMaker entry points and the model artifact."""

from __future__ import annotations

import importlib.util
import json
import tarfile

import cv2
import numpy as np
import pytest
import SimpleITK as sitk

from discscope import cli
from discscope.artifact import pack
from discscope.dataset import find_cases, load_case
from discscope.io import read_study
from discscope.metrics import dice
from discscope.predictor import Predictor

from conftest import REPO


def test_predict_phantom_finds_and_names_discs(predictor, phantom_dir):
    case = find_cases([phantom_dir])[0]
    volume, truth, _ = load_case(case)
    pred = predictor.predict(volume)
    assert pred.labels.shape == truth.shape
    assert dice(pred.labels > 0, truth > 0) > 0.7
    assert [d.level for d in pred.discs][:5] == ["L5-S1", "L4-L5", "L3-L4", "L2-L3", "L1-L2"]
    for d in pred.discs:
        x1, y1, x2, y2 = d.box
        assert 0 <= x1 < x2 <= volume.shape[2] and 0 <= y1 < y2 <= volume.shape[1]
        assert 0.0 <= d.probability <= 1.0
    assert set(pred.timings_ms) >= {"segment", "classify", "total"}


def test_a_few_nan_voxels_change_nothing_and_no_disc_is_an_error(predictor, phantom_dir):
    """Non-finite voxels are left out of the normalisation (before, 20 NaN made every voxel NaN and the
    model found nothing); a study with no disc is NO_SPINE_FOUND, never a success with 0 discs."""
    from discscope.errors import NoSpineFound

    volume = read_study(find_cases([phantom_dir])[3].image_path)
    clean = predictor.predict(volume)
    volume.array.ravel()[np.random.default_rng(5).choice(volume.array.size, 20, replace=False)] = np.nan
    dirty = predictor.predict(volume)
    assert np.isfinite(dirty.norm).all()
    assert [d.level for d in dirty.discs] == [d.level for d in clean.discs] and len(clean.discs) >= 5
    for a, b in zip(dirty.discs, clean.discs):
        assert np.abs(np.subtract(a.box, b.box)).max() <= 1
    volume.array[:] = 7.0  # blank: a volume that reads fine but holds no spine
    with pytest.raises(NoSpineFound) as ei:
        predictor.result(volume)
    assert ei.value.code == "NO_SPINE_FOUND" and ei.value.http_status == 422


def test_result_matches_endpoint_contract(predictor, phantom_dir):
    import base64

    import cv2

    volume = read_study(find_cases([phantom_dir])[1].image_path)
    body = predictor.result(volume)
    assert body["model_version"] == predictor.version
    assert body["image_size"] == list(volume.shape[1:])
    assert 0 <= body["slice_index"] < volume.shape[0]
    for disc in body["discs"]:
        assert set(disc) == {"level", "box", "probability", "herniated", "area_px"}
    preview = cv2.imdecode(np.frombuffer(base64.b64decode(body["preview_png"]), np.uint8), cv2.IMREAD_UNCHANGED)
    assert preview.shape == tuple(body["image_size"])
    mask = cv2.imdecode(np.frombuffer(base64.b64decode(body["mask_png"]), np.uint8), cv2.IMREAD_UNCHANGED)
    assert mask.shape[:2] == preview.shape and mask.shape[2] == 4
    json.dumps(body)  # serialisable as is


def test_cli_predict_writes_mask_on_input_grid(tmp_path, phantom_dir, baseline_model, capsys):
    case = find_cases([phantom_dir])[2]
    out = tmp_path / "mask.mha"
    assert cli.main(["predict", str(case.image_path), "--model", str(baseline_model), "--mask-out", str(out), "--json"]) == 0
    body = json.loads(capsys.readouterr().out)
    written, source = sitk.ReadImage(str(out)), sitk.ReadImage(str(case.image_path))
    assert written.GetSize() == source.GetSize() and written.GetSpacing() == source.GetSpacing()
    values = set(np.unique(sitk.GetArrayFromImage(written)).tolist()) - {0}
    assert len(values) == len(body["discs"]) and values <= {1, 2, 3, 4, 5, 6}


def test_cli_reports_bad_input_with_code(tmp_path, baseline_model, capsys):
    bad = tmp_path / "notes.png"
    bad.write_text("not an image")
    assert cli.main(["predict", str(bad), "--model", str(baseline_model)]) == 2
    assert "NOT_AN_IMAGE" in capsys.readouterr().err


def test_real_volume_levels(predictor, real_data):
    """Regression check on a real volume (part of the baseline's training data: not a generalisation figure)."""
    volume = read_study(real_data / "ivd42.mha")
    truth = read_study(real_data / "ivd42_mask.mha").array.astype(np.uint8)
    pred = predictor.predict(volume)
    for value in range(1, 6):
        assert dice(pred.labels == value, truth == value) > 0.75, value


def test_sagemaker_entry_points(baseline_model, phantom_dir, monkeypatch):
    monkeypatch.syspath_prepend(str(REPO / "sagemaker"))  # the container imports code/ (vendored.py) the same way
    spec = importlib.util.spec_from_file_location("sm_inference", REPO / "sagemaker" / "inference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    model = module.model_fn(str(baseline_model))
    request = module.input_fn(find_cases([phantom_dir])[0].image_path.read_bytes(), "application/octet-stream")
    body, ctype = module.output_fn(module.predict_fn(request, model), "application/json")
    assert ctype == "application/json" and len(json.loads(body)["discs"]) >= 5
    assert json.loads(body)["overlay_png"]  # raw bytes in: artifacts inline
    with pytest.raises(Exception) as ei:
        module.input_fn(b"hello", "application/octet-stream")
    assert "NOT_AN_IMAGE" in str(getattr(ei.value, "code", "")) + str(ei.value)


def test_packed_artifact_layout_and_loading(tmp_path, baseline_model, phantom_dir):
    tar_path = pack(baseline_model, tmp_path / "model.tar.gz")
    with tarfile.open(tar_path) as tar:
        names = set(tar.getnames())
    assert {"model.pt", "metadata.json", "code/inference.py", "code/vendored.py", "code/discscope/__init__.py"} <= names
    assert "code/requirements.txt" not in names  # SageMaker's serving container would pip-install it at start
    assert not any("__pycache__" in n for n in names)
    packed = Predictor(tar_path)
    assert packed.version == Predictor(baseline_model).version
    meta = json.loads((baseline_model / "metadata.json").read_text())
    assert {"version", "data_hash", "metrics", "calibration"} <= set(meta)


def test_resize_stack_takes_more_slices_than_opencv_has_channels():
    """OpenCV 5 resizes at most 128 channels at once; a 300-slice study must still resample."""
    from discscope.preprocess import resize_stack

    stack = np.random.default_rng(0).random((300, 40, 30), dtype=np.float32)
    out = resize_stack(stack, 20, 15)
    assert out.shape == (300, 20, 15)
    assert np.allclose(out[299], cv2.resize(stack[299], (15, 20), interpolation=cv2.INTER_LINEAR))
