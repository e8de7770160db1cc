"""The reporting callbacks of a run: the compact progress bar and what TensorBoard receives."""

import math
import re
from pathlib import Path

import keras
import numpy as np
import pytest

from keras_mtcl import backbones, callbacks
from keras_mtcl.model import MultiTaskModel
from keras_mtcl.trainer import MultiTaskTrainer

TASKS = ["semseg", "depth", "edge"]


@pytest.fixture(scope="module")
def data():
    """(eval batches with meta, specs): two synthetic 32x32 scenes of semseg, depth and edge, one batch."""
    from keras_mtcl.data import pipeline
    from keras_mtcl.data.sources import open_split

    examples, specs = open_split("synthetic", "val", tasks=TASKS, synthetic_size=(32, 32), synthetic_count=2)
    return pipeline.eval_pipeline(examples, specs, batch_size=2, pad_size=(32, 32), pad_multiple=32).cache(), specs


def fit(data, extra_callbacks, epochs=1):
    """Trains a tiny model with `extra_callbacks` (fit's own bar off); returns its History."""
    from keras_mtcl.data import pipeline

    batches, specs = data
    model = MultiTaskModel(backbones.get_backbone("tiny_cnn", widths=(8, 8, 16, 16)), specs)
    trainer = MultiTaskTrainer(model)
    trainer.compile(optimizer=keras.optimizers.Adam(1e-3))
    plain = pipeline.strip_meta(batches)
    return trainer.fit(plain, validation_data=plain, epochs=epochs, callbacks=extra_callbacks, verbose=0,
                       shuffle=False)


def shown_names(text: str) -> list[str]:
    """The `name: value` names of one progress line."""
    return re.findall(r" - ([\w.]+): ", text)


@pytest.mark.parametrize("verbose", [1, 2])
def test_the_progress_bar_shows_the_loss_and_one_metric_per_task(data, capsys, verbose):
    history = fit(data, [callbacks.CompactProgress(data[1], verbose=verbose)])
    out = capsys.readouterr().out
    # The edge task's main metric (odsF) comes from the final benchmark: its loss stands in for it.
    train = ["loss", "semseg_miou", "depth_rmse", "edge_loss"]
    updates = [part for part in re.split(r"[\r\n]", out) if shown_names(part)]
    assert updates, out
    # Every redraw lists the chosen names only; the epoch's last one adds their validation values.
    for update in updates[:-1]:
        assert shown_names(update) == train, update
    assert shown_names(updates[-1]) == train + [f"val_{name}" for name in train]
    # One line per epoch, or a redraw per step (one here) and the epoch's last.
    assert len(updates) == (1 if verbose == 2 else 2)
    # History (history.csv, TensorBoard) keeps every metric, each once.
    logged = set(history.history)
    assert {"semseg_pixel_accuracy", "depth_abs_rel", "val_depth_delta1"} <= logged
    assert not any(name.startswith("edge_edge") or name.startswith("val_edge_edge") for name in logged)


@pytest.mark.backend_independent
def test_the_bar_prints_one_line_per_epoch_under_ci_and_chooses_logged_names(monkeypatch):
    from keras_mtcl import tasks

    monkeypatch.setenv("CI", "true")
    assert callbacks.CompactProgress([tasks.semseg()]).verbose == 2
    with pytest.raises(ValueError, match="verbose"):
        callbacks.CompactProgress([tasks.semseg()], verbose=0)
    specs = [tasks.semseg(), tasks.depth(), tasks.edge(), tasks.TaskSpec("plain", "depth", metrics=())]
    logged = ["loss", "semseg_loss", "semseg_pixel_accuracy", "depth_loss", "depth_rmse", "edge_loss", "plain_loss"]
    # semseg's main metric (miou) is not logged here: its next metric stands in.
    expected = ["loss", "semseg_pixel_accuracy", "depth_rmse", "edge_loss", "plain_loss"]
    assert callbacks.progress_keys(specs, logged) == expected


def read_events(log_dir: Path) -> dict:
    """{run folder: {tag: (plugin, [steps])}} of every TensorBoard event file under `log_dir`."""
    import tensorflow as tf

    runs: dict = {}
    for path in sorted(log_dir.rglob("events.out.tfevents.*")):
        tags = runs.setdefault(path.parent.relative_to(log_dir).as_posix(), {})
        for record in tf.data.TFRecordDataset(str(path)):
            event = tf.compat.v1.Event.FromString(record.numpy())
            for value in event.summary.value:
                plugin = value.metadata.plugin_data.plugin_name or value.WhichOneof("value")
                tags.setdefault(value.tag, (plugin, []))[1].append(event.step)
    return runs


def quantity(tag: str) -> str:
    """The quantity a Keras TensorBoard tag carries: `epoch_x` and `evaluation_x_vs_iterations` both carry x."""
    return re.sub(r"^(epoch_|evaluation_)|_vs_iterations$", "", tag)


def test_tensorboard_gets_each_series_once_prediction_images_and_the_final_metrics(data, tmp_path):
    log_dir = tmp_path / "logs"
    fit(data, [callbacks.RunTensorBoard(str(log_dir), write_graph=False),
               callbacks.PredictionImages(log_dir, data[0], data[1], count=2)], epochs=2)
    final = {"edge_odsf": 61.5, "edge_oisf": 62.0, "edge_ap": 55.25, "semseg_miou": 40.0, "num_images": 2,
             "semseg_per_class_iou": [80.0, math.nan, 20.0], "depth_rmse": math.nan}
    callbacks.write_final_metrics(log_dir, final, step=1)
    runs = read_events(log_dir)
    assert set(runs) == {"train", "validation", "predictions", "final"}
    for run in ("train", "validation"):
        quantities = [quantity(tag) for tag in runs[run]]
        # Two tags of one run never carry the same quantity (Keras' validation copies, `edge_edge_loss`).
        assert len(quantities) == len(set(quantities)), sorted(runs[run])
        assert {"loss", "semseg_miou", "edge_loss"} <= set(quantities)
        assert not any(name.startswith("edge_edge") for name in quantities)
    assert set(runs["train"]) - {"epoch_learning_rate"} == set(runs["validation"])
    # One panel image per validation image and epoch.
    assert runs["predictions"] == {"predictions/000": ("images", [0, 1]), "predictions/001": ("images", [0, 1])}
    assert runs["final"] == {
        "final/edge_odsf": ("scalars", [1]), "final/edge_oisf": ("scalars", [1]), "final/edge_ap": ("scalars", [1]),
        "final/semseg_miou": ("scalars", [1]), "final/num_images": ("scalars", [1]),
        "final/semseg_per_class_iou/0": ("scalars", [1]), "final/semseg_per_class_iou/2": ("scalars", [1]),
        "final/metrics": ("text", [1]),
    }


def test_the_panels_are_those_written_to_pictures(data, tmp_path):
    from PIL import Image

    from keras_mtcl.training import prediction_panels, write_pictures

    batches, specs = data
    model = MultiTaskModel(backbones.get_backbone("tiny_cnn", widths=(8, 8, 16, 16)), specs)
    panels = prediction_panels(model, batches, specs, 5)
    assert len(panels) == 2 and all(p.dtype == np.uint8 and p.ndim == 3 and p.shape[-1] == 3 for p in panels)
    written = write_pictures(model, batches, specs, tmp_path, 1)
    np.testing.assert_array_equal(np.asarray(Image.open(written[0])), panels[0])
    assert prediction_panels(model, batches, specs, 0) == []


@pytest.mark.backend_independent
def test_the_boundary_benchmark_estimates_time_left_from_the_recent_images(monkeypatch, capsys):
    import types

    from keras_mtcl import edge_eval

    # Four images while the workers start (10 s each), then four at 0.1 s: 32 images left take about 3 s, not 40 s.
    clock = iter([0.0, 10.0, 20.0, 30.0, 30.1, 30.2, 30.3, 30.4])
    monkeypatch.setattr(edge_eval, "time", types.SimpleNamespace(time=lambda: next(clock)))
    bar = edge_eval._Progress(True, 40, warmup=4)
    for _ in range(8):
        bar.step()
    assert bar.recent_seconds_per_image() == pytest.approx(0.1)
    last = capsys.readouterr().out.split("\r")[-1]
    assert "8/40" in last and "\x1b[1m3s\x1b[0m" in last and "100ms/image" in last, repr(last)
