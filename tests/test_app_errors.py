"""Wrong arguments to the apps end with exit code 2 and an `error:` line naming the problem, never a traceback."""

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


def _run_all(commands: dict[str, list[str]]) -> dict[str, subprocess.CompletedProcess]:
    """Runs the commands side by side (each app start imports TensorFlow) and waits for all."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    started = {
        key: subprocess.Popen([sys.executable, *command], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        for key, command in commands.items()
    }
    results = {}
    for key, process in started.items():
        stdout, stderr = process.communicate(timeout=300)
        results[key] = subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)
    return results


def _assert_clean_error(result: subprocess.CompletedProcess, *expected: str):
    assert result.returncode == 2, (result.returncode, result.stderr[-2000:])
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    lines = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, result.stderr[-2000:]
    message = result.stderr[result.stderr.index("error: "):]
    for text in expected:
        assert text in message, (text, message)


@pytest.mark.backend_independent
def test_train_app_rejects_unknown_presets_fields_and_missing_datasets(tmp_path):
    train = str(ROOT / "apps/train.py")
    missing = tmp_path / "NYUD_MT"
    results = _run_all({
        "preset": [train, "--preset", "nope"],
        "field": [train, "--preset", "smoke", "--set", "nofield=1"],
        "config": [train, "--config", str(tmp_path / "config.json")],
        "no_manual_dir": [train, "--preset", "smoke", "--set", "dataset=nyud", "--output-dir", str(tmp_path / "run")],
        "missing_manual_dir": [
            train, "--preset", "smoke", "--set", "dataset=nyud", "--set", f"manual_dir={missing}",
            "--set", f"data_dir={tmp_path / 'tfds'}", "--output-dir", str(tmp_path / "run"),
        ],
    })
    _assert_clean_error(results["preset"], "Unknown preset", "'nope'", "smoke")
    _assert_clean_error(results["field"], "Unknown RunConfig field 'nofield'", "epochs")
    _assert_clean_error(results["config"], f"no config file at {tmp_path / 'config.json'}")
    _assert_clean_error(results["no_manual_dir"], "'nyud'", "--set manual_dir=PATH")
    _assert_clean_error(results["missing_manual_dir"], f"The NYUD-v2 folder {missing} does not exist")
    assert not (tmp_path / "run" / "model.keras").exists()


@pytest.mark.backend_independent
def test_load_model_names_what_is_wrong_with_the_path(tmp_path):
    from keras_mtcl.model import ModelFileError, load_model

    text_file = tmp_path / "notes.keras"
    text_file.write_text("not a model\n")
    archive = tmp_path / "other.keras"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("readme.txt", "a zip, but no Keras model")
    with pytest.raises(FileNotFoundError, match="no model file at .*nope.keras"):
        load_model(tmp_path / "nope.keras")
    with pytest.raises(ModelFileError, match="notes.keras is not a .keras model file"):
        load_model(text_file)
    with pytest.raises(ModelFileError, match="zip archive without config.json"):
        load_model(archive)
    with pytest.raises(ModelFileError, match="is a folder, not a .keras model file"):
        load_model(tmp_path)


@pytest.mark.backend_independent
def test_evaluate_export_predict_report_wrong_models_and_data(tmp_path):
    # load_model's messages are checked above; here each app turns them into an `error:` line.
    text_file = tmp_path / "notes.keras"
    text_file.write_text("not a model\n")
    folder = tmp_path / "folder"
    (folder / "1").mkdir(parents=True)  # a version-like folder without saved_model.pb
    image = tmp_path / "image.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(image)
    from keras_mtcl import backbones, tasks
    from keras_mtcl.model import MultiTaskModel

    model_file = tmp_path / "model.keras"
    MultiTaskModel(backbones.get_backbone("tiny_cnn", widths=(8, 8, 8, 8)), [tasks.depth()]).save(model_file)
    apps = ROOT / "apps"
    results = _run_all({
        "evaluate_text": [str(apps / "evaluate.py"), str(text_file)],
        "evaluate_no_manual_dir": [str(apps / "evaluate.py"), str(model_file), "--dataset", "nyud"],
        "export_folder": [str(apps / "export.py"), str(folder), "--serving-root", str(tmp_path / "serving")],
        "predict_missing": [str(apps / "predict.py"), str(tmp_path / "nope.keras"), str(image)],
        "predict_not_saved_model": [str(apps / "predict.py"), str(folder), str(image)],
    })
    _assert_clean_error(results["evaluate_text"], f"{text_file} is not a .keras model file")
    _assert_clean_error(results["evaluate_no_manual_dir"], "'nyud'", "--manual-dir PATH")
    _assert_clean_error(results["export_folder"], f"{folder} is a folder, not a .keras model file")
    _assert_clean_error(results["predict_missing"], f"no model file at {tmp_path / 'nope.keras'}")
    # predict takes folders as SavedModels: this one is not.
    _assert_clean_error(results["predict_not_saved_model"], f"{folder} is not an exported model", "saved_model.pb")
    assert not (tmp_path / "serving").exists()
