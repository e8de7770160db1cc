"""Every preset of `keras_mtcl.configs` in smoke mode, through `mtcl-train --preset NAME --smoke`: it trains,
evaluates and writes its outputs in seconds."""

import importlib
import json
import tempfile

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


@pytest.mark.parametrize("name", presets.list_presets())
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
