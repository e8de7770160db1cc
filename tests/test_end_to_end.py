"""The whole user path on the current backend: train -> checkpoint -> evaluate -> export -> predict.

Training runs here (the backend under test); the apps run as the user runs
them, in their own processes: evaluate and predict-with-Keras on this backend,
export and predict-with-the-SavedModel on TensorFlow. The SavedModel's
outputs, computed in that fresh TensorFlow process, are compared with the
Keras model's here, and the two prediction routes with each other.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from keras_mtcl import export, presets, training
from keras_mtcl.inference import predict_image, serving_outputs
from keras_mtcl.model import load_model
from keras_mtcl.visualize import panel_layout

ROOT = Path(__file__).resolve().parents[1]
TASKS = "semseg,depth"  # every task kind is covered by test_export.py and test_predict_app.py; two keep JAX fast


def _start(*args: str) -> subprocess.Popen:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.Popen([sys.executable, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def _finish(process: subprocess.Popen) -> str:
    stdout, stderr = process.communicate(timeout=400)
    assert process.returncode == 0, stdout[-3000:] + stderr[-3000:]
    return stdout


def _arrays(folder: Path) -> dict[str, np.ndarray]:
    return {p.stem: np.load(p, allow_pickle=False) for p in sorted(folder.glob("*.npy"))}


def test_train_evaluate_export_predict(tmp_path):
    run_dir = tmp_path / "run"
    config = presets.get_preset(
        "smoke", ["epochs=1", "steps_per_epoch=2", f"tasks={TASKS}", "num_pictures=1", f"output_dir={run_dir}"]
    )
    training.train(config)
    checkpoint = run_dir / "checkpoints" / "last.keras"
    assert checkpoint.is_file()

    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    # Two sizes that both pad to 32x64, the size training evaluated at: one compiled predict step per process.
    pictures = {
        "a": rng.integers(0, 256, (30, 45, 3), dtype=np.uint8),
        "b": rng.integers(0, 256, (25, 52, 3), dtype=np.uint8),
    }
    for stem, picture in pictures.items():
        Image.fromarray(picture).save(images / f"{stem}.png")

    serving_root = tmp_path / "serving"
    apps = ROOT / "apps"
    # Independent steps side by side: each process spends seconds importing its framework.
    evaluating = _start(
        str(apps / "evaluate.py"), str(checkpoint), "--dataset", "synthetic", "--synthetic-size", "32", "48",
        "--synthetic-count", "2", "--output", str(tmp_path / "report.json"),
    )
    exporting = _start(str(apps / "export.py"), str(checkpoint), "--serving-root", str(serving_root), "--name", "e2e")
    predicting_keras = _start(
        str(apps / "predict.py"), str(checkpoint), str(images), "--out", str(tmp_path / "keras"), "--save-arrays"
    )

    assert "Verified" in _finish(exporting)
    predicting_saved = _start(
        str(apps / "predict.py"), str(serving_root / "e2e"), str(images), "--out", str(tmp_path / "saved"), "--save-arrays"
    )
    _finish(evaluating)
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["metrics"]["num_images"] == 2
    for key in ("semseg_miou", "depth_rmse"):
        assert np.isfinite(report["metrics"][key]), key
    assert "Keras model" in _finish(predicting_keras)
    assert f"SavedModel {serving_root / 'e2e' / '1'}" in _finish(predicting_saved)

    model = load_model(checkpoint, compile=False)
    names = sorted(export.output_names(model))
    for stem, picture in pictures.items():
        height, width = picture.shape[:2]
        # The panel: the image and one picture per task, at the image's size, under their titles.
        layout = panel_layout(height, width, len(model.task_specs))
        for route in ("keras", "saved"):
            panel = np.asarray(Image.open(tmp_path / route / f"{stem}.png"))
            assert panel.shape == layout.shape, (route, panel.shape)
            top = layout.row_top(0)
            np.testing.assert_array_equal(panel[top:top + height, :width], picture)
        from_keras = _arrays(tmp_path / "keras" / stem)
        from_saved = _arrays(tmp_path / "saved" / stem)
        assert sorted(from_keras) == sorted(from_saved) == names
        expected = serving_outputs(model.task_specs, predict_image(model, picture))
        assert from_saved["semseg_classes"].shape == (height, width) and from_saved["semseg_classes"].dtype == np.int32
        assert from_saved["semseg_probabilities"].shape == (height, width, model.task_specs[0].channels)
        assert from_saved["depth"].shape == (height, width, 1)
        for name in names:
            for route, arrays in (("keras", from_keras), ("saved", from_saved)):
                assert arrays[name].shape == expected[name].shape, (route, name)
                if name.endswith("_classes"):
                    assert np.mean(arrays[name] == expected[name]) > 0.999, (route, name)
                else:
                    np.testing.assert_allclose(arrays[name], expected[name], atol=2e-4, err_msg=f"{route} {name}")
