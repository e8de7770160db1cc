"""keras_mtcl.analysis.consistency (distances of positive vs negative pairs) and its command, tools/consistency.py."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from keras_mtcl import presets, training
from keras_mtcl.analysis import consistency
from keras_mtcl.data.synthetic import synthetic_tasks

ROOT = Path(__file__).resolve().parents[1]

TASKS = ["semseg", "depth", "edge"]


@pytest.mark.backend_independent
def test_auc_of_constructed_distances():
    rng = np.random.default_rng(0)
    near, far = rng.uniform(0.0, 1.0, 200), rng.uniform(2.0, 3.0, 300)
    assert consistency.distance_auc(near, far) == 1.0  # every negative pair farther than every positive pair
    assert consistency.distance_auc(far, near) == 0.0
    same = consistency.distance_auc(rng.normal(size=4000), rng.normal(size=4000))
    assert abs(same - 0.5) < 0.02
    assert consistency.distance_auc([1.0, 1.0], [1.0]) == 0.5  # ties count half
    # Pairs (neg, pos): (2, 1) yes, (2, 3) no, (4, 1) yes, (4, 3) yes -> 3 of 4.
    assert consistency.distance_auc([1.0, 3.0], [2.0, 4.0]) == 0.75
    assert math.isnan(consistency.distance_auc([], [1.0]))


@pytest.mark.backend_independent
def test_pair_statistics_by_hand():
    stats = consistency.pair_statistics([0.5, 1.0, 2.0], [1.5, 0.5, 3.0])
    assert stats["triplets"] == 3
    assert stats["positive_mean"] == pytest.approx(3.5 / 3)
    assert stats["negative_mean"] == pytest.approx(5.0 / 3)
    assert stats["gap"] == pytest.approx(1.5 / 3)
    assert stats["triplet_accuracy"] == pytest.approx(2 / 3)  # triplet 2 has d_neg < d_pos
    # Unpaired: negatives 1.5 > {0.5, 1.0}, 0.5 ties 0.5, 3.0 > all -> (2 + 0.5 + 3) / 9.
    assert stats["auc"] == pytest.approx(5.5 / 9)
    assert consistency.pair_statistics([], [])["auc"] is None
    with pytest.raises(ValueError, match="the same triplets"):
        consistency.pair_statistics([1.0], [1.0, 2.0])


@pytest.fixture(scope="module")
def models():
    """A baseline inference model and a regularized run's trainer (which holds the projectors)."""
    specs = synthetic_tasks(TASKS)
    config = presets.get_preset("smoke")
    regularized = config.replace(contrastive=True)
    return {
        "baseline": training.build_model(config, specs),
        "regularized": training.build_trainer(regularized, training.build_model(regularized, specs)),
    }


@pytest.fixture(scope="module")
def batches():
    return consistency.load_batches(size=(32, 48), count=4, batch_size=2, tasks=TASKS)


def test_report_has_one_finite_entry_per_model_and_source_and_writes_the_plot(models, batches, tmp_path):
    entries, distances = consistency.consistency_report(models, batches, target="semseg", spaces=("features",))
    assert [(e["model"], e["source"]) for e in entries] == [
        ("baseline", "depth"), ("baseline", "edge"), ("regularized", "depth"), ("regularized", "edge")
    ]
    for entry in entries:
        assert entry["target"] == "semseg" and entry["space"] == "features"
        assert entry["triplets"] > 0
        for key in ("positive_mean", "negative_mean", "gap", "auc", "triplet_accuracy"):
            assert math.isfinite(entry[key]), (entry, key)
        assert 0.0 <= entry["positive_mean"] <= 4.0 and 0.0 <= entry["negative_mean"] <= 4.0
        assert 0.0 <= entry["auc"] <= 1.0
        assert entry["gap"] == pytest.approx(entry["negative_mean"] - entry["positive_mean"])
    # Same images, same draws, same feature resolution: both models are measured on the same triplets.
    by_key = {(e["model"], e["source"]): e["triplets"] for e in entries}
    assert by_key[("baseline", "depth")] == by_key[("regularized", "depth")]
    assert by_key[("baseline", "edge")] == by_key[("regularized", "edge")]

    path = consistency.plot_distances(entries, distances, tmp_path / "plots" / "consistency.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    from PIL import Image

    width, height = Image.open(path).size
    assert width > height  # 2 rows (models) x 2 columns (sources), wider than tall
    assert "AUC" in consistency.format_table(entries)


def test_feature_distances_match_a_direct_computation(models, batches):
    """Distances of the `features` space, recomputed here from the sampled triplets with numpy."""
    from keras import ops

    from keras_mtcl.contrastive import sample_triplets

    model = models["baseline"]
    options = consistency.sampling_options([model])
    measured = consistency.triplet_distances(model, batches[:1], "semseg", ("features",), options, seed=3)
    d_pos, d_neg = measured["features"]["depth"]
    images, labels = batches[0]
    feature_map = ops.convert_to_numpy(consistency.task_features(model, images)["semseg"]).astype("float64")
    b, h, w, c = feature_map.shape
    rng = np.random.default_rng([3, 0, model.task_names.index("depth")])
    n = options["num_anchors"]
    triplets = sample_triplets(
        model.task_specs[1], labels["depth"], (h, w), rng.random((2, b, h * w), dtype="float32"),
        rng.random((b, n + options["pool_size"]), dtype="float32"), num_anchors=n, pool_size=options["pool_size"],
    )
    flat = feature_map.reshape(b, h * w, c)
    unit = flat / np.maximum(np.linalg.norm(flat, axis=-1, keepdims=True), 1e-12)
    keep = ops.convert_to_numpy(triplets["weights"]) > 0
    expected_pos, expected_neg = [], []
    for i in range(b):
        a, p, q = (ops.convert_to_numpy(triplets[k])[i] for k in ("anchor", "positive", "negative"))
        expected_pos.append(np.sum((unit[i, a] - unit[i, p]) ** 2, -1)[keep[i]])
        expected_neg.append(np.sum((unit[i, a] - unit[i, q]) ** 2, -1)[keep[i]])
    np.testing.assert_allclose(d_pos, np.concatenate(expected_pos), atol=1e-5)
    np.testing.assert_allclose(d_neg, np.concatenate(expected_neg), atol=1e-5)
    assert d_pos.size == keep.sum() > 0


def test_projected_space(models, batches):
    entries, _ = consistency.consistency_report(
        {"regularized": models["regularized"]}, batches, target="depth", spaces=("features", "projected")
    )
    assert [(e["space"], e["source"]) for e in entries] == [
        ("features", "semseg"), ("features", "edge"), ("projected", "semseg"), ("projected", "edge")
    ]
    assert all(math.isfinite(e["auc"]) for e in entries)


def test_projected_space_of_a_model_without_regularizer_is_an_error(models, batches):
    with pytest.raises(ValueError, match="'baseline' was trained without the contrastive regularizer.*--space features"):
        consistency.consistency_report(models, batches, spaces=("projected",))
    with pytest.raises(ValueError, match="has no task 'normals'.*Received: target='normals'"):
        consistency.consistency_report(models, batches, target="normals")


def _saved(models, folder):
    paths = []
    for name, model in models.items():
        paths.append(str(folder / f"{name}.keras"))
        model.save(paths[-1])
    return paths


def test_saved_files_load_with_their_projectors(models, batches, tmp_path):
    paths = _saved(models, tmp_path)
    loaded = consistency.load_models(paths)
    assert list(loaded) == ["baseline", "regularized"]
    # A regularized trainer's file keeps its projectors: the projected space of the saved run.
    entries, _ = consistency.consistency_report({"regularized": loaded["regularized"]}, batches, target="depth",
                                                spaces=("projected",))
    assert [(e["space"], e["source"]) for e in entries] == [("projected", "semseg"), ("projected", "edge")]
    with pytest.raises(ValueError, match="trained without the contrastive regularizer"):
        consistency.check_request(loaded, "semseg", ["projected"])
    with pytest.raises(ValueError, match="one name per model"):
        consistency.load_models(paths, names=["only_one"])


def _command(*args):
    return subprocess.run([sys.executable, "tools/consistency.py", *args], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}, timeout=600, check=False)


@pytest.mark.skipif(keras.backend.backend() != "torch", reason="the command's arguments, output and exit codes are "
                    "backend-independent (the analysis it runs is tested in every pass above); eager PyTorch starts fastest")
def test_command_line(models, tmp_path):
    paths = _saved(models, tmp_path)
    out = tmp_path / "figure.png"
    done = _command(*paths, "--size", "32", "48", "--count", "2", "--batch", "2", "--out", str(out))
    assert done.returncode == 0, done.stderr[-4000:]
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert [(e["model"], e["source"]) for e in lines] == [
        ("baseline", "depth"), ("baseline", "edge"), ("regularized", "depth"), ("regularized", "edge")
    ]
    assert out.is_file()
    done = _command(*paths, "--space", "projected", "--count", "2", "--out", str(out))
    assert done.returncode == 2
    assert "trained without the contrastive regularizer" in done.stderr
