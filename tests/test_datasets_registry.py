"""The dataset registry (keras_mtcl.data) and the one family of dataset errors (keras_mtcl.data.errors)."""

import subprocess
import sys
from pathlib import Path

import pytest

from keras_mtcl import errors as user_errors
from keras_mtcl.cli import prepare
from keras_mtcl.data import errors, get_dataset, register_dataset
from keras_mtcl.data.builder import MultiTaskBuilder

pytestmark = pytest.mark.backend_independent

ROOT = Path(__file__).resolve().parents[1]
ERRORS = [
    errors.DatasetLayoutError, errors.MissingManualDownloadError, errors.LabelRangeError, errors.LabelShapeError,
    errors.CorruptFileError, errors.ManifestError, errors.PathEscapeError, errors.EmptySplitError,
    errors.PreparedDatasetMismatchError, errors.UnknownSplitError,
]


def test_names_come_without_importing_tensorflow_datasets():
    code = ("import sys\nfrom keras_mtcl.data import list_datasets\n"
            "assert list_datasets() == ['synthetic', 'nyud', 'pascal', 'folder'], list_datasets()\n"
            "assert 'tensorflow_datasets' not in sys.modules and 'tensorflow' not in sys.modules\n")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=str(ROOT), timeout=120)


@pytest.mark.parametrize("name", ["synthetic", "nyud", "pascal", "folder"])
def test_every_name_gives_its_builder_class(name):
    builder = get_dataset(name)
    assert issubclass(builder, MultiTaskBuilder) and builder.dataset_name == name
    assert builder.NEEDS_MANUAL_DIR == (name != "synthetic")


def test_unknown_name_and_second_registration_are_refused():
    with pytest.raises(user_errors.ConfigError, match=r"`dataset` must be one of \['synthetic', 'nyud', 'pascal', "
                                                      r"'folder'\]. Received: dataset='kitti'"):
        get_dataset("kitti")
    with pytest.raises(ValueError, match="A dataset named 'nyud' is already registered. Received: name='nyud'"):
        register_dataset("nyud")(get_dataset("folder"))
    assert get_dataset("nyud").__name__ == "NyudMultiTask"


@pytest.mark.parametrize("error", ERRORS, ids=lambda e: e.__name__)
def test_dataset_errors_are_one_family_and_user_errors(error):
    assert issubclass(error, errors.DatasetError)
    builtin = FileNotFoundError if error is errors.MissingManualDownloadError else ValueError
    assert issubclass(error, builtin)  # `except ValueError` code keeps working
    assert user_errors.is_user_error(error("the message"))
    assert user_errors.error_line(error("a\nmessage")) == "error: a message"


@pytest.mark.parametrize("name", ["synthetic", "nyud", "pascal", "folder"])
def test_prepare_command_of_every_dataset(name, capsys):
    with pytest.raises(SystemExit) as exit_info:
        prepare.main([name, "--help"])
    assert exit_info.value.code == 0
    assert "--data-dir" in capsys.readouterr().out


def test_prepare_command_renders_synthetic_scenes(tmp_path, capsys):
    assert prepare.main(["synthetic", "--data-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "synthetic_scenes/tiny/1.0.0" in out and "'train': 64, 'val': 16" in out


def test_prepare_command_refuses_a_manual_dir_for_synthetic_scenes(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        prepare.main(["synthetic", "--data-dir", str(tmp_path), "--manual-dir", str(tmp_path)])
    assert exit_info.value.code == 2 and "unrecognized arguments: --manual-dir" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["synthetic", "nyud"])
def test_a_builder_of_unprepared_data_leaves_the_temporary_directory_as_it_was(name, tmp_path, monkeypatch):
    # tfds's own DatasetInfo looks unprepared datasets up in its public bucket and leaves an empty folder per builder.
    import tempfile

    temporary = tmp_path / "tmp"
    temporary.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temporary))
    builder = get_dataset(name)(data_dir=str(tmp_path / "data"))
    assert builder.info.name == builder.name
    assert list(temporary.iterdir()) == []
