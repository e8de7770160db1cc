"""Every preset of `keras_mtcl.configs` in smoke mode, through `mtcl-train --preset NAME --smoke`: it trains,
evaluates and writes its outputs in seconds."""

import importlib
import json
import tempfile

import keras
import pytest

from keras_mtcl import presets
from keras_mtcl.cli import train as train_app


@pytest.mark.parametrize("name", presets.list_presets())
def test_preset_docstring_gives_the_command_runtime_and_metrics(name):
    module = importlib.import_module(f"keras_mtcl.configs.{name}")
    text = " ".join(module.__doc__.split())
    assert f"mtcl-train --preset {name}" in text and "Runtime:" in text and "Expected metrics" in text
    config = module.get_config()
    assert config.name == name and presets.get_preset(name) == config


# A preset's own part (its config, data and written outputs) is the same on every backend, and training on each
# backend is tested in test_trainer and test_model: the quickstart (the README's main job) runs in every pass, the
# other presets in the PyTorch pass only (eager: nothing to compile, 10 s a preset against 30-80 s on the others).
def _in_its_pass(name):
    if name == "quickstart":
        return name
    reason = "a preset's smoke run is backend-independent beyond training: it runs in the torch pass"
    return pytest.param(name, marks=pytest.mark.skipif(keras.backend.backend() != "torch", reason=reason))


@pytest.mark.parametrize("name", [_in_its_pass(name) for name in presets.list_presets()])
def test_preset_trains_evaluates_and_writes_its_outputs_in_smoke_mode(name, tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # the smoke fixtures' temporary folders
    run_dir = tmp_path / "run"
    assert train_app.main(["--preset", name, "--smoke", "--output-dir", str(run_dir), "--no-export"]) == 0
    written = json.loads((run_dir / "config.json").read_text())
    assert written["name"] == (name if name == "smoke" else f"{name}_smoke")
    assert written["model"]["backbone"] == "tiny_cnn"
    assert written["model"]["contrastive"] == presets.get_preset(name).model.contrastive
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["num_images"] >= 1
    assert (run_dir / "model.keras").is_file() and list((run_dir / "pictures").glob("*.png"))
