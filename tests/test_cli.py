"""The installed commands (`mtcl-*`, keras_mtcl.cli) and the apps/ wrappers over them."""

import importlib
import importlib.metadata
import subprocess
import sys
from pathlib import Path

import pytest

from keras_mtcl import presets
from keras_mtcl.cli import prepare, train
from keras_mtcl.testing import datasets as fixtures

pytestmark = pytest.mark.backend_independent  # argument handling and dispatch, identical on every backend

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = {
    "mtcl-train": "keras_mtcl.cli.train:main",
    "mtcl-evaluate": "keras_mtcl.cli.evaluate:main",
    "mtcl-export": "keras_mtcl.cli.export:main",
    "mtcl-predict": "keras_mtcl.cli.predict:main",
    "mtcl-prepare": "keras_mtcl.cli.prepare:main",
    "mtcl-convert-hrnet": "keras_mtcl.cli.convert_hrnet:main",
    "mtcl-convert-efficientnet-lite": "keras_mtcl.cli.convert_efficientnet_lite:main",
}


def test_every_command_is_installed_and_resolves_to_a_main():
    scripts = {e.name: e.value for e in importlib.metadata.entry_points(group="console_scripts") if e.name.startswith("mtcl-")}
    assert scripts == COMMANDS
    for target in COMMANDS.values():
        module, function = target.split(":")
        assert callable(getattr(importlib.import_module(module), function)), target


def test_apps_are_thin_wrappers_and_nothing_edits_sys_path():
    for app in sorted((ROOT / "apps").glob("*.py")):
        text = app.read_text()
        assert f"from keras_mtcl.cli.{app.stem} import main" in text and len(text.splitlines()) <= 10, app
    edits = [str(p) for folder in ("keras_mtcl", "apps", "tools", "tests") for p in sorted((ROOT / folder).rglob("*.py"))
             if "sys.path.insert" in p.read_text() and p.name != "test_cli.py"]
    assert not edits


def test_train_help_lists_every_config_field_with_its_default(capsys):
    with pytest.raises(SystemExit) as exit_info:
        train.parse_args(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for name in presets.field_names():
        assert f"\n  {name}=" in text, name
    assert "\n  epochs=10\n" in text and "\n  data.image_size=96,128\n" in text and "\n  model.contrastive=false\n" in text
    assert "\n  augment.flip_probability=0.5\n" in text and "\n  optimizer.learning_rate=0.001\n" in text


def test_prepare_dispatches_to_the_dataset_and_takes_both_flag_spellings(tmp_path, capsys):
    root = fixtures.make_folder(tmp_path / "raw")
    assert prepare.main(["folder", "--manual-dir", str(root), "--data-dir", str(tmp_path / "tfds")]) == 0
    assert "multi_task_folder/my_rooms/1.0.0" in capsys.readouterr().out
    # The spelling of earlier releases still works.
    assert prepare.main(["folder", "--root", str(root), "--data_dir", str(tmp_path / "tfds")]) == 0
    with pytest.raises(SystemExit) as exit_info:
        prepare.main(["imagenet"])
    assert exit_info.value.code == 2 and "invalid choice: 'imagenet'" in capsys.readouterr().err


def test_an_app_wrapper_runs_its_command():
    result = subprocess.run([sys.executable, str(ROOT / "apps" / "train.py"), "--preset", "smoke", "--print-config"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert '"name": "smoke"' in result.stdout
