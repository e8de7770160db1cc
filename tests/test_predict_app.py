import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from keras_mtcl import backbones, tasks
from keras_mtcl.inference import predict_image
from keras_mtcl.model import MultiTaskModel
from keras_mtcl.preprocessing import normalize

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
    assert panel.shape == (20, 3 * 30, 3)  # image + depth + semseg
    arrays = np.load(tmp_path / "out" / "b.npz")
    assert arrays["semseg"].shape == (24, 16, 3)
    missing = subprocess.run([sys.executable, str(ROOT / "apps/predict.py"), str(model_file), str(tmp_path / "nope")], capture_output=True, text=True)
    assert missing.returncode == 2 and "No image or folder" in missing.stderr
