"""Issue 16: mistakes and faults never lose or corrupt work, and user errors are one line.

Covers: an atomic per-epoch backup that survives truncation (1), re-running
into an existing run folder (2), predict.py never overwriting its inputs (4),
learning-rate validation and stopping on a non-finite loss (5), the
SavedModel path refusing float images (6), metrics of a split without a
valid pixel (7), and history.csv keeping one row per finished epoch across a
kill (10).
"""

import csv
import importlib
import json
import math
from pathlib import Path

import keras
import numpy as np
import pytest
from PIL import Image

from keras_mtcl import backbones, export, presets, tasks, training
from keras_mtcl.evaluation import format_table, json_safe
from keras_mtcl.metrics import DepthMetric, NormalsMetric
from keras_mtcl.model import MultiTaskModel, load_model

ROOT = Path(__file__).resolve().parents[1]

# Training runs below are Keras callback logic, identical on every backend: run them where training starts fastest
# (eager PyTorch: nothing to compile).
_one_backend = pytest.mark.skipif(
    keras.backend.backend() != "torch", reason="run-folder and backup logic is backend-independent Keras callback code"
)


def _app(name):
    return importlib.import_module(f"keras_mtcl.cli.{name}")


def _smoke(run_dir, **changes):
    config = presets.get_preset("smoke", ["steps_per_epoch=1", "num_pictures=1", "tasks=semseg,depth"])
    return config.replace(output_dir=str(run_dir), **changes)


def _mtimes(folder: Path) -> dict:
    return {str(p): p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}


def _epochs(history: Path) -> list[int]:
    with history.open() as f:
        return [int(row["epoch"]) for row in csv.DictReader(f)]


# --- 1. the per-epoch backup ---------------------------------------------------------------------------------------


def _tiny():
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile(optimizer="adam", loss="mse")
    return model


def test_truncated_backup_falls_back_to_the_previous_one_or_restarts(tmp_path, capsys):
    x, y = np.ones((4, 3), "float32"), np.ones((4, 1), "float32")
    backup = tmp_path / "backup"
    _tiny().fit(x, y, epochs=2, verbose=0, callbacks=[training.SafeBackupAndRestore(str(backup))])
    assert json.loads((backup / "training_metadata.json").read_text())["epoch"] == 2
    assert json.loads((backup / "previous_metadata.json").read_text())["epoch"] == 1
    assert not list(backup.glob(".incoming*"))

    # A kill or a full disk during the write: the latest backup is 96 bytes of an HDF5 header.
    latest = backup / "latest.weights.h5"
    latest.write_bytes(latest.read_bytes()[:96])
    capsys.readouterr()
    history = _tiny().fit(x, y, epochs=4, verbose=0, callbacks=[training.SafeBackupAndRestore(str(backup))])
    assert history.epoch == [1, 2, 3]  # resumed after epoch 1, from the previous backup
    assert "resuming from the previous backup" in capsys.readouterr().out

    # Both truncated (0 bytes): one line, and the run starts again.
    latest.write_bytes(b"")
    (backup / "previous.weights.h5").write_bytes(b"")
    history = _tiny().fit(x, y, epochs=2, verbose=0, callbacks=[training.SafeBackupAndRestore(str(backup))])
    assert history.epoch == [0, 1]
    lines = [line for line in capsys.readouterr().out.splitlines() if "backup" in line]
    assert len(lines) == 1 and "starts again from epoch 1" in lines[0]


class _Kill(keras.callbacks.Callback):
    """Stands for a kill at the end of epoch `epoch`, after the callbacks before it and before those after it."""

    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch == self.epoch:
            raise KeyboardInterrupt


def test_history_keeps_one_row_per_finished_epoch_across_a_kill(tmp_path):
    x, y = np.ones((4, 3), "float32"), np.ones((4, 1), "float32")
    history, backup = tmp_path / "history.csv", str(tmp_path / "backup")
    # Killed after epoch 2's row was written and before its backup: epoch 2 runs again on resume.
    with pytest.raises(KeyboardInterrupt):
        _tiny().fit(x, y, epochs=4, verbose=0,
                    callbacks=[training.RunHistory(str(history)), _Kill(1), training.SafeBackupAndRestore(backup)])
    assert _epochs(history) == [0, 1]
    resumed = _tiny().fit(x, y, epochs=4, verbose=0,
                          callbacks=[training.RunHistory(str(history)), training.SafeBackupAndRestore(backup)])
    assert resumed.epoch == [1, 2, 3]
    with history.open() as f:
        rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2, 3]  # every finished epoch once, none lost
    assert float(rows[1]["loss"]) == pytest.approx(resumed.history["loss"][0], rel=1e-6)  # the rerun's row
    # A half-written last row (a kill during its write) is dropped as well.
    history.write_text(history.read_text() + "4,0.5")
    _tiny().fit(x, y, epochs=5, verbose=0,
                callbacks=[training.RunHistory(str(history)), training.SafeBackupAndRestore(backup)])
    assert _epochs(history) == [0, 1, 2, 3, 4]


# --- 2. re-running into a run folder, and 1. on a real run ----------------------------------------------------------


@_one_backend
def test_rerun_into_a_run_folder(tmp_path, capsys):
    run_dir = tmp_path / "run"
    config = _smoke(run_dir)
    training.train(config)
    before = _mtimes(run_dir)

    # A finished run with the same config: one line, nothing rewritten.
    capsys.readouterr()
    result = training.train(config)
    assert result["finished"] and "already finished" in capsys.readouterr().out
    assert _mtimes(run_dir) == before

    # Another config: refused before anything is written, naming the field and the options.
    with pytest.raises(training.RunFolderError, match=r"optimizer.learning_rate 0.001 -> 0.01.*--resume.*--overwrite"):
        training.train(config.replace(learning_rate=0.01))
    with pytest.raises(training.RunFolderError, match=r"data.tasks"):
        training.train(config.replace(tasks=("semseg",)))
    with pytest.raises(training.RunFolderError, match=r"epochs 1 -> 2"):
        training.train(config.replace(epochs=2))  # more epochs need --resume
    assert _mtimes(run_dir) == before

    # A truncated backup does not stop --resume: one line, then the run continues to the end.
    (run_dir / "backup" / "latest.weights.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(88))
    capsys.readouterr()
    training.train(config.replace(epochs=2), resume=True)
    out = capsys.readouterr().out
    assert "No readable backup" in out and "Traceback" not in out
    assert json.loads((run_dir / "config.json").read_text())["epochs"] == 2
    assert _epochs(run_dir / "history.csv")[-1] == 1

    # --overwrite starts again with the new config.
    training.train(config.replace(learning_rate=0.01), overwrite=True)
    assert json.loads((run_dir / "config.json").read_text())["optimizer"]["learning_rate"] == 0.01
    assert _epochs(run_dir / "history.csv") == [0]


def test_train_app_refuses_another_config_and_leaves_a_finished_run(tmp_path, capsys):
    train_app = _app("train")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    config = _smoke(run_dir)
    (run_dir / "config.json").write_text(config.to_json())
    args = ["--preset", "smoke", "--output-dir", str(run_dir), "--set", "steps_per_epoch=1", "--set", "num_pictures=1",
            "--set", "tasks=semseg,depth"]

    assert train_app.main(args + ["--set", "learning_rate=0.01", "--no-export"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and "learning_rate" in err[0] and "--resume" in err[0]

    # A finished run (model and metrics written): exit 0, one line, nothing rewritten.
    (run_dir / "model.keras").write_bytes(b"model")
    (run_dir / "metrics.json").write_text("{}")
    before = _mtimes(run_dir)
    assert train_app.main(args) == 0
    assert "already finished" in capsys.readouterr().out
    assert _mtimes(run_dir) == before

    assert train_app.main(args + ["--set", "epochs=0"]) == 2  # validation still comes first
    with pytest.raises(SystemExit):
        train_app.parse_args(args + ["--resume", "--overwrite"])


# --- 5. learning rate and non-finite losses -------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["nan", "inf", "1e6", "0", "-1e-3"])
def test_invalid_learning_rates_are_refused(value, capsys):
    with pytest.raises(ValueError, match="learning_rate"):
        presets.get_preset("smoke", [f"learning_rate={value}"])
    assert _app("train").main(["--preset", "smoke", "--set", f"learning_rate={value}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and "learning_rate" in err[0]


class _DivergesAfterTwoSteps(keras.optimizers.schedules.LearningRateSchedule):
    def __call__(self, step):
        return keras.ops.where(step >= 2, float("nan"), 1e-3)


@_one_backend
def test_non_finite_loss_stops_training_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    monkeypatch.setattr(training, "build_optimizer", lambda config, steps: keras.optimizers.SGD(_DivergesAfterTwoSteps()))
    run_dir = tmp_path / "run"
    with pytest.raises(training.NonFiniteLossError, match=r"loss became nan at epoch 2.*last good checkpoint") as info:
        training.train(_smoke(run_dir, epochs=4, steps_per_epoch=2))
    assert "\n" not in str(info.value)
    assert not (run_dir / "model.keras").exists()
    last = load_model(run_dir / "checkpoints" / "last.keras")
    assert all(np.isfinite(keras.ops.convert_to_numpy(w)).all() for w in last.weights)
    assert json.loads((run_dir / "backup" / "training_metadata.json").read_text())["epoch"] == 1


# --- 4. predict.py --------------------------------------------------------------------------------------------------


def test_predict_never_overwrites_inputs_and_keeps_names_unique(tmp_path, capsys):
    predict_app = _app("predict")
    folder = tmp_path / "images"
    folder.mkdir()
    Image.fromarray(np.full((20, 30, 3), 90, np.uint8)).save(folder / "a.png")
    Image.fromarray(np.full((24, 16, 3), 200, np.uint8)).save(folder / "a.jpg")
    original = (folder / "a.png").read_bytes()
    model_file = tmp_path / "model.keras"
    MultiTaskModel(backbones.get_backbone("tiny_cnn", widths=(8, 8, 16, 16)), [tasks.depth()]).save(model_file)

    for out in (folder, tmp_path / "images" / ".." / "images"):  # the input folder, however spelt
        assert predict_app.main([str(model_file), str(folder), "--out", str(out)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error:") and "--out" in err[0]
    assert (folder / "a.png").read_bytes() == original

    out = tmp_path / "out"
    assert predict_app.main([str(model_file), str(folder), "--out", str(out), "--save-arrays"]) == 0
    assert sorted(p.name for p in out.glob("*.png")) == ["a_jpg.png", "a_png.png"]
    assert np.load(out / "a_jpg" / "depth.npy").shape == (24, 16, 1)
    assert np.load(out / "a_png" / "depth.npy").shape == (20, 30, 1)


def test_output_stems_are_unique():
    predict_app = _app("predict")
    files = [Path("x/a.jpg"), Path("x/a.png"), Path("y/a.jpg"), Path("x/b.png")]
    stems = predict_app.output_stems(files)
    assert len(set(stems)) == len(files) and stems[-1] == "b"


# --- 6. SavedModel inputs -------------------------------------------------------------------------------------------


def test_saved_model_inputs_refuse_floats_and_out_of_range_values():
    for images in (np.full((1, 4, 4, 3), 0.5, "float32"), np.full((1, 4, 4, 3), 300.0), np.full((1, 4, 4, 3), 300)):
        with pytest.raises(ValueError, match="uint8"):
            export._uint8_images(images)
    assert export._uint8_images(np.full((1, 2, 2, 3), 7, "int64")).dtype == np.uint8


# --- 7. metrics of a split without a valid pixel --------------------------------------------------------------------


def test_metrics_without_a_valid_pixel_are_nan_not_perfect(tmp_path):
    zeros = np.zeros((2, 4, 4, 1), "float32")
    for statistic in ("rmse", "log_rmse", "abs_rel", "delta1"):
        metric = DepthMetric(statistic)
        metric.update_state(zeros, np.ones_like(zeros))
        assert math.isnan(float(metric.result())), statistic
    normals = NormalsMetric("mean_angle")
    normals.update_state(np.zeros((2, 4, 4, 3), "float32"), np.ones((2, 4, 4, 3), "float32"))
    assert math.isnan(float(normals.result()))
    # With valid pixels, the values are the usual ones.
    metric = DepthMetric("rmse")
    metric.update_state(np.full((1, 2, 2, 1), 2.0, "float32"), np.full((1, 2, 2, 1), 1.0, "float32"))
    assert float(metric.result()) == pytest.approx(1.0)

    results = {"depth_rmse": float("nan"), "depth_abs_rel": None, "semseg_miou": 50.0}
    table = format_table(results)
    assert table.count("no valid pixels") == 2 and "50.0000" in table
    assert json.loads(json.dumps(json_safe(results))) == {"depth_rmse": None, "depth_abs_rel": None, "semseg_miou": 50.0}

    # Keras progress bars and CSVLogger take the NaN.
    model = keras.Sequential([keras.Input((4, 4, 1)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse", metrics=[DepthMetric("rmse", name="rmse")])
    model.fit(np.ones((2, 4, 4, 1)), zeros, epochs=1, verbose=1, callbacks=[keras.callbacks.CSVLogger(str(tmp_path / "h.csv"))])
    with (tmp_path / "h.csv").open() as f:
        assert next(csv.DictReader(f))["rmse"] == "nan"
