"""apps/evaluate.py: the report, delta_m against baselines, and SEISM boundary PNGs at each image's size."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from keras_mtcl import backbones
from keras_mtcl.data import synthetic
from keras_mtcl.model import MultiTaskModel

ROOT = Path(__file__).resolve().parents[1]


def test_evaluate_app_reports_every_metric(tmp_path):
    specs = synthetic.synthetic_tasks(["semseg", "depth", "edge"])
    model = MultiTaskModel(backbones.get_backbone("tiny_cnn", widths=(8, 8, 16, 16)), specs)
    model_file = tmp_path / "model.keras"
    model.save(model_file)
    baseline = tmp_path / "baseline.json"
    baseline.write_text(json.dumps({"metrics": {"semseg_miou": 50.0, "depth_rmse": 1.0, "edge_odsf": 50.0}}))
    command = [
        sys.executable, str(ROOT / "apps/evaluate.py"), str(model_file), "--dataset", "synthetic",
        "--synthetic-size", "30", "45", "--synthetic-count", "3", "--pad-size", "40", "64", "--workers", "1",
        "--save-edges", str(tmp_path / "edges"), "--baselines", str(baseline), "--output", str(tmp_path / "report.json"),
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=400)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((tmp_path / "report.json").read_text())
    metrics = report["metrics"]
    assert metrics["num_images"] == 3
    for key in ("semseg_miou", "semseg_pixel_accuracy", "depth_rmse", "depth_delta1", "edge_odsf", "edge_oisf", "edge_ap"):
        assert np.isfinite(metrics[key]), key
    assert len(metrics["semseg_per_class_iou"]) == synthetic.NUM_CLASSES
    assert 0 <= metrics["semseg_miou"] <= 100 and metrics["depth_rmse"] > 0
    assert set(report["delta_m"]["per_task"]) == {"semseg", "depth", "edge"}
    # Boundary maps are cut back from the 40x64 padded input to each image's 30x45.
    pngs = sorted((tmp_path / "edges").glob("*.png"))
    assert len(pngs) == 3
    for png in pngs:
        edge = np.asarray(Image.open(png))
        assert edge.shape == (30, 45) and edge.dtype == np.uint8
    assert "semseg_miou" in result.stdout and "delta_m" in result.stdout


@pytest.mark.backend_independent  # the app stops before loading anything
def test_evaluate_app_names_a_missing_model_file(tmp_path):
    missing = subprocess.run(
        [sys.executable, str(ROOT / "apps/evaluate.py"), str(tmp_path / "nope.keras")], capture_output=True, text=True
    )
    assert missing.returncode == 2 and "no model file" in missing.stderr


def test_edge_max_dist_scores_boundaries_with_that_tolerance_and_the_labels_as_stored():
    from keras_mtcl import edge_eval
    from keras_mtcl.data import pipeline
    from keras_mtcl.data.sources import open_split
    from keras_mtcl.evaluation import evaluate_model

    specs = synthetic.synthetic_tasks(["edge"])
    model = MultiTaskModel(backbones.get_backbone("tiny_cnn", widths=(8, 8, 8, 8)), specs)
    examples, _ = open_split("synthetic", "val", synthetic_size=(30, 45), synthetic_count=2)
    batches = pipeline.eval_pipeline(examples, specs, batch_size=2, pad_multiple=32)
    maps, labels = [], []
    for images, batch_labels, meta in batches.as_numpy_iterator():
        logits = pipeline.crop_to_original(np.asarray(model.predict_on_batch(images)["edge"]), meta)
        maps += [1.0 / (1.0 + np.exp(-m[..., 0].astype("float64"))) for m in logits]
        labels += [label[..., 0] for label in pipeline.crop_to_original(batch_labels["edge"], meta)]
    for max_dist in (0.004, 0.03):
        expected = edge_eval.evaluate_boundaries(
            [m.astype("float32") for m in maps], labels, max_dist=max_dist, label_reading="given", workers=0, progress=False
        )
        results = evaluate_model(model, batches, specs, edge_max_dist=max_dist, workers=0, progress=False)
        assert results["edge_odsf"] == pytest.approx(expected["ods_f"], abs=1e-9), max_dist
        assert results["edge_ap"] == pytest.approx(expected["ap"], abs=1e-9), max_dist
