import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from keras_mtcl import backbones, tasks
from keras_mtcl.inference import panel_maps, predict_image, serving_outputs
from keras_mtcl.model import MultiTaskModel
from keras_mtcl.preprocessing import normalize
from keras_mtcl.visualize import prediction_panel

ROOT = Path(__file__).resolve().parents[1]


def _model():
    return MultiTaskModel(backbones.get_backbone("tiny_cnn", widths=(8, 8, 16, 16)), [tasks.depth(), tasks.semseg(num_classes=3)])


def test_predict_image_pads_and_crops_like_a_padded_batch():
    model = _model()
    image = np.random.default_rng(0).integers(0, 256, (37, 50, 3), dtype=np.uint8)
    out = predict_image(model, image)
    assert out["depth"].shape == (37, 50, 1) and out["semseg"].shape == (37, 50, 3)
    padded = np.zeros((1, 64, 64, 3), "float32")
    padded[0, :37, :50] = normalize(image)
    expected = model.predict(padded, verbose=0)
    np.testing.assert_allclose(out["depth"], np.asarray(expected["depth"])[0, :37, :50], atol=1e-5)
    with pytest.raises(ValueError, match=r"Received: image with shape \(37, 50\)"):
        predict_image(model, image[..., 0])


def test_serving_outputs_and_their_pictures():
    specs = [tasks.semseg(num_classes=3), tasks.depth(), tasks.normals(), tasks.edge()]
    rng = np.random.default_rng(1)
    raw = {
        "semseg": rng.normal(size=(5, 7, 3)) * 4,
        "depth": rng.normal(size=(5, 7, 1)),
        "normals": rng.normal(size=(5, 7, 3)),
        "edge": rng.normal(size=(5, 7, 1)) * 3,
    }
    out = serving_outputs(specs, raw)
    assert sorted(out) == ["depth", "edge_probability", "normals", "semseg_classes", "semseg_probabilities"]
    # Hand-computed at one pixel: softmax, argmax, sigmoid, clamp at 0, unit length.
    logits = raw["semseg"][2, 3]
    np.testing.assert_allclose(out["semseg_probabilities"][2, 3], np.exp(logits) / np.exp(logits).sum(), rtol=1e-5)
    assert out["semseg_classes"][2, 3] == logits.argmax() and out["semseg_classes"].dtype == np.int32
    np.testing.assert_allclose(out["edge_probability"][2, 3, 0], 1 / (1 + np.exp(-raw["edge"][2, 3, 0])), rtol=1e-5)
    assert out["depth"][2, 3, 0] == pytest.approx(max(raw["depth"][2, 3, 0], 0.0), abs=1e-7)
    np.testing.assert_allclose(out["normals"][2, 3], raw["normals"][2, 3] / np.linalg.norm(raw["normals"][2, 3]), rtol=1e-5)
    # Pictures from the serving outputs are those from the raw predictions.
    image = rng.integers(0, 256, (5, 7, 3), dtype=np.uint8)
    np.testing.assert_array_equal(
        prediction_panel(image, specs, panel_maps(specs, out)), prediction_panel(image, specs, raw)
    )


def test_predict_app_writes_pictures_and_arrays(tmp_path):
    model_file = tmp_path / "model.keras"
    _model().save(model_file)
    folder = tmp_path / "images"
    folder.mkdir()
    Image.fromarray(np.full((20, 30, 3), 90, np.uint8)).save(folder / "a.png")
    Image.fromarray(np.full((24, 16, 3), 200, np.uint8)).save(folder / "b.jpg")
    result = subprocess.run(
        [sys.executable, str(ROOT / "apps/predict.py"), str(model_file), str(folder), "--out", str(tmp_path / "out"), "--save-arrays"],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    panel = np.asarray(Image.open(tmp_path / "out" / "a.png"))
    from keras_mtcl.visualize import panel_layout

    assert panel.shape == panel_layout(20, 30, num_tasks=2).shape  # image + depth + semseg, titles and legend
    assert sorted(p.name for p in (tmp_path / "out" / "b").iterdir()) == [
        "depth.npy", "semseg_classes.npy", "semseg_probabilities.npy"
    ]
    probabilities = np.load(tmp_path / "out" / "b" / "semseg_probabilities.npy")
    assert probabilities.shape == (24, 16, 3)
    np.testing.assert_allclose(probabilities.sum(-1), 1.0, atol=1e-5)
    classes = np.load(tmp_path / "out" / "b" / "semseg_classes.npy")
    assert classes.dtype == np.int32 and np.array_equal(classes, probabilities.argmax(-1))
    assert np.load(tmp_path / "out" / "a" / "depth.npy").shape == (20, 30, 1)


@pytest.mark.backend_independent  # the images are looked for before the model is loaded
def test_predict_app_names_a_missing_image_folder(tmp_path):
    model_file = tmp_path / "model.keras"
    _model().save(model_file)
    missing = subprocess.run([sys.executable, str(ROOT / "apps/predict.py"), str(model_file), str(tmp_path / "nope")], capture_output=True, text=True)
    assert missing.returncode == 2 and "No image or folder" in missing.stderr
