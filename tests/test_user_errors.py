"""Issue 16, items 8 and 9: every user error of the command lines is exit code 2 and one `error:` line.

Each case runs an app's (or a `python -m keras_mtcl.data.*` command's)
`main(argv)` in-process. Options and config fields are validated before any
data is read or model built: those cases replace `training.load_data` and
`training.build_model` by functions that fail the test if called. Cases
whose error comes from the data (labels, files, manifests) may read it, but
never build a model.
"""

import errno
import importlib
import json
import os
from pathlib import Path

import keras
import numpy as np
import pytest
from PIL import Image

from keras_mtcl import backbones, presets, tasks, training
from keras_mtcl.data import folder, nyud, pascal
from keras_mtcl.model import MultiTaskModel
from keras_mtcl.testing import datasets as fixtures

pytestmark = pytest.mark.backend_independent  # error handling, identical on every backend

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ["--preset", "smoke", "--set", "steps_per_epoch=1", "--set", "num_pictures=1", "--no-export"]


APPS = {name: importlib.import_module(f"keras_mtcl.cli.{name}") for name in ("train", "evaluate", "export", "predict")}
PREPARE = {"folder": folder.main, "nyud": nyud.main, "pascal": pascal.main}


class Case:
    """What a case gets: a temporary folder, the test's monkeypatch and the two saved models."""

    def __init__(self, tmp_path: Path, monkeypatch, models: dict):
        self.tmp, self.monkeypatch, self.models = tmp_path, monkeypatch, models

    def rooms(self, edit=None) -> Path:
        """A custom folder (`semseg/room_<i>.png`, 5 classes; `depth/room_<i>.npy`), after `edit(root)`."""
        root = fixtures.make_folder(self.tmp / "raw", height=16, width=20)
        if edit is not None:
            edit(root)
        return root

    def train_on(self, root: Path, *sets: str) -> list[str]:
        argv = SMOKE + ["--output-dir", str(self.tmp / "run"), "--set", "dataset=folder", "--set", f"manual_dir={root}",
                        "--set", f"data_dir={self.tmp / 'tfds'}"]
        return argv + [a for s in sets for a in ("--set", s)]

    def train(self, *sets: str) -> list[str]:
        return SMOKE + ["--output-dir", str(self.tmp / "run")] + [a for s in sets for a in ("--set", s)]

    def read_only(self, name: str) -> Path:
        """A folder nothing can be written below (as root, where permissions do not apply, os.mkdir refuses)."""
        path = self.tmp / name
        path.mkdir()
        path.chmod(0o555)
        if os.access(path, os.W_OK):
            real_mkdir = os.mkdir

            def mkdir(target, *args, **kwargs):
                if Path(target).resolve().is_relative_to(path.resolve()):
                    raise PermissionError(errno.EACCES, "Permission denied", str(target))
                return real_mkdir(target, *args, **kwargs)

            self.monkeypatch.setattr(os, "mkdir", mkdir)
        return path

    def file(self, name: str) -> Path:
        (self.tmp / name).write_text("")
        return self.tmp / name

    def images(self) -> Path:
        path = self.tmp / "images"
        path.mkdir()
        Image.fromarray(np.zeros((20, 24, 3), np.uint8)).save(path / "a.png")
        return path


def _save(array, path: Path):
    if path.suffix == ".npy":
        np.save(path, array)
    else:
        Image.fromarray(array).save(path)


def _truncate(path: Path, keep: int):
    path.write_bytes(path.read_bytes()[:keep])


def _out_of_range_class(root):
    label = np.zeros((16, 20), np.uint8)
    label[3, 3] = 7  # 5 classes, ignore value 9
    _save(label, root / "semseg" / "room_1.png")


def _nan_depth(root):
    depth = np.full((16, 20), 2.0, np.float32)
    depth[1, 1] = np.nan
    _save(depth, root / "depth" / "room_1.npy")


def _without_splits(root):
    manifest = json.loads((root / "manifest.json").read_text())
    del manifest["splits"]
    (root / "manifest.json").write_text(json.dumps(manifest))


def _config_file(case: Case, **values) -> str:
    config = presets.get_preset("smoke").to_dict() | values
    path = case.tmp / "config.json"
    path.write_text(json.dumps(config))
    return str(path)


def _hub_offline(case: Case):
    pytest.importorskip("keras_hub")
    from keras_mtcl.backbones import hub

    case.monkeypatch.setattr(hub, "_host_reachable", lambda host, timeout=3.0: False)
    return case.train("backbone=keras_hub", 'backbone_options={"preset": "resnet_18_imagenet"}', "tasks=semseg,depth")


def _on_torch(case: Case):
    case.monkeypatch.setattr(keras.backend, "backend", lambda: "torch")
    return case.train("distribute=true")


def _nyud_unknown_task(case: Case):
    root = fixtures.make_nyud(case.tmp / "raw", "B")
    return ["--manual-dir", str(root), "--data-dir", str(case.tmp / "tfds"), "--tasks", "semseg", "hieght"]


def _evaluate(case: Case, model: str, *options: str):
    return [case.models[model], "--synthetic-size", "32", "48", "--synthetic-count", "2",
            "--output", str(case.tmp / "report.json"), *options]


# (id, command, argv(case), texts the error line contains, what may run before the error: "nothing" = no data
# read and no model built, "data" = data read but no model built, "all" = the error comes from building).
CASES = [
    # Labels and files of a dataset, found while train.py prepares it.
    ("class_id_out_of_range", "train", lambda c: c.train_on(c.rooms(_out_of_range_class)),
     ["semseg/room_1.png", "outside 0..4"], "data"),
    ("nan_depth", "train", lambda c: c.train_on(c.rooms(_nan_depth)), ["depth/room_1.npy", "NaN"], "data"),
    ("wrong_channels", "train",
     lambda c: c.train_on(c.rooms(lambda r: _save(np.ones((16, 20, 2), np.float32), r / "depth" / "room_1.npy"))),
     ["depth/room_1.npy", "single-channel"], "data"),
    ("truncated_image", "train", lambda c: c.train_on(c.rooms(lambda r: _truncate(r / "images" / "room_1.png", 40))),
     ["images/room_1.png", "Cannot decode"], "data"),
    ("truncated_npy", "train", lambda c: c.train_on(c.rooms(lambda r: _truncate(r / "depth" / "room_1.npy", 100))),
     ["depth/room_1.npy", "Cannot read"], "data"),
    ("manifest_without_splits", "train", lambda c: c.train_on(c.rooms(_without_splits)),
     ["`data.eval_split`", "['train']", "manifest.json", "'val'"], "nothing"),
    # Options and config values, refused before anything is read or built.
    ("contrastive_option_typo", "train", lambda c: c.train("contrastive=true", 'contrastive_options={"wieght": 0.1}'),
     ["contrastive_options", "wieght", "'weight'"], "nothing"),
    ("contrastive_negative_weight", "train", lambda c: c.train("contrastive=true", 'contrastive_options={"weight": -1}'),
     ["contrastive_options", "weight=-1"], "nothing"),
    ("contrastive_zero_anchors", "train",
     lambda c: c.train("contrastive=true", 'contrastive_options={"num_anchors": 0}'),
     ["contrastive_options", "num_anchors=0"], "nothing"),
    ("contrastive_one_task", "train", lambda c: c.train("contrastive=true", "tasks=semseg"),
     ["two tasks", "contrastive=false"], "nothing"),
    ("unknown_eval_split", "train", lambda c: c.train("eval_split=test"), ["`data.eval_split`", "['train', 'val']", "'test'"],
     "nothing"),
    ("edge_max_dist_out_of_range", "train", lambda c: c.train("edge_max_dist=2"), ["`data.edge_max_dist`", "[0, 1)"],
     "nothing"),
    ("unknown_backbone", "train", lambda c: c.train("backbone=resnet99"), ["`model.backbone`", "resnet99", "tiny_cnn"], "nothing"),
    ("unknown_backbone_option", "train", lambda c: c.train('backbone_options={"widthz": [8]}'),
     ["backbone_options", "widthz", "widths"], "nothing"),
    ("unknown_framework", "train", lambda c: c.train("framework=mti_net"), ["`model.framework`", "mti_net", "mtinet"], "nothing"),
    ("unknown_decoder_option", "train", lambda c: c.train('decoder_options={"head_channel": 8}'),
     ["decoder_options", "head_channel", "head_channels"], "nothing"),
    ("unknown_task", "train", lambda c: c.train("tasks=semseg,heigth"), ["`data.tasks`", "heigth", "depth"], "nothing"),
    ("config_value_of_wrong_type", "train", lambda c: ["--config", _config_file(c, epochs="abc")] + SMOKE[2:],
     ["`epochs` must be an integer", "'abc'"], "nothing"),
    ("config_float_for_integer", "train", lambda c: ["--config", _config_file(c, epochs=1.5)] + SMOKE[2:],
     ["`epochs` must be an integer", "1.5"], "nothing"),
    ("steps_per_epoch_negative", "train", lambda c: c.train("steps_per_epoch=-1"),
     ["`steps_per_epoch` must be >= 0", "one pass over the training split"], "nothing"),
    ("torch_distribute", "train", _on_torch, ["`distribute`", "KERAS_BACKEND=jax", "distribute=false"], "nothing"),
    ("read_only_output", "train", lambda c: SMOKE + ["--output-dir", str(c.read_only("locked") / "run")],
     ["cannot write", "locked/run"], "nothing"),
    ("output_below_a_file", "train", lambda c: SMOKE + ["--output-dir", str(c.file("file") / "run")],
     ["cannot write", "file/run"], "nothing"),
    ("keras_hub_offline", "train", _hub_offline, ["resnet_18_imagenet", "cannot be reached", "local preset folder"], "all"),
    # The prepare commands.
    ("prepare_folder_without_manifest", "prepare:folder",
     lambda c: ["--manual-dir", str(c.tmp / "nope"), "--data-dir", str(c.tmp / "tfds")], ["nope", "manifest.json"], "nothing"),
    ("prepare_folder_bad_label", "prepare:folder",
     lambda c: ["--manual-dir", str(c.rooms(_out_of_range_class)), "--data-dir", str(c.tmp / "tfds")],
     ["semseg/room_1.png", "outside 0..4"], "nothing"),
    ("prepare_nyud_missing_folder", "prepare:nyud",
     lambda c: ["--manual-dir", str(c.tmp / "nope"), "--data-dir", str(c.tmp / "tfds")], ["NYUD-v2 folder", "nope"],
     "nothing"),
    ("prepare_nyud_unknown_task", "prepare:nyud", _nyud_unknown_task, ["`tasks`", "hieght"], "nothing"),
    ("prepare_pascal_missing_folder", "prepare:pascal",
     lambda c: ["--manual-dir", str(c.tmp / "nope"), "--data-dir", str(c.tmp / "tfds")],
     ["PASCAL-Context folder", "nope"], "nothing"),
    # Models and options of evaluate, export and predict.
    ("evaluate_not_a_multitask_model", "evaluate", lambda c: _evaluate(c, "sequential"),
     ["sequential.keras", "Sequential", "MultiTaskModel"], "nothing"),
    ("export_not_a_multitask_model", "export", lambda c: [c.models["sequential"], "--serving-root", str(c.tmp / "s")],
     ["sequential.keras", "Sequential"], "nothing"),
    ("predict_not_a_multitask_model", "predict",
     lambda c: [c.models["sequential"], str(c.images()), "--out", str(c.tmp / "out")], ["sequential.keras", "Sequential"],
     "nothing"),
    ("evaluate_pad_multiple_0", "evaluate", lambda c: _evaluate(c, "tiny", "--pad-multiple", "0"),
     ["--pad-multiple", "positive"], "nothing"),
    ("evaluate_batch_size_0", "evaluate", lambda c: _evaluate(c, "tiny", "--batch-size", "0"),
     ["--batch-size", "positive"], "nothing"),
    ("export_pad_multiple_0", "export",
     lambda c: [c.models["tiny"], "--serving-root", str(c.tmp / "s"), "--pad-multiple", "0"], ["--pad-multiple"], "nothing"),
    ("predict_pad_multiple_0", "predict",
     lambda c: [c.models["tiny"], str(c.images()), "--out", str(c.tmp / "out"), "--pad-multiple", "0"],
     ["--pad-multiple"], "nothing"),
    ("evaluate_other_class_count", "evaluate", lambda c: _evaluate(c, "tiny"),
     ["'semseg'", "5 channels", "labels it as classes with 7"], "nothing"),
    ("evaluate_read_only_report", "evaluate",
     lambda c: _evaluate(c, "tiny", "--tasks", "depth", "--output", str(c.read_only("locked") / "reports" / "r.json")),
     ["cannot write", "locked/reports"], "nothing"),
    ("export_read_only_root", "export", lambda c: [c.models["tiny"], "--serving-root", str(c.read_only("locked") / "s")],
     ["cannot write", "locked/s"], "nothing"),
    ("predict_read_only_out", "predict",
     lambda c: [c.models["tiny"], str(c.images()), "--out", str(c.read_only("locked") / "out")],
     ["cannot write", "locked/out"], "nothing"),
]


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict:
    folder = tmp_path_factory.mktemp("models")
    sequential = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    sequential.save(folder / "sequential.keras")
    specs = [tasks.semseg(num_classes=5), tasks.depth()]
    MultiTaskModel(backbones.get_backbone("tiny_cnn", widths=(8, 8, 8, 8)), specs).save(folder / "tiny.keras")
    return {"sequential": str(folder / "sequential.keras"), "tiny": str(folder / "tiny.keras")}


def _refuse(what: str):
    def refuse(*args, **kwargs):
        raise AssertionError(f"{what} before the user error was reported")

    return refuse


@pytest.mark.parametrize("name, command, make_argv, expected, runs", CASES, ids=[c[0] for c in CASES])
def test_user_error_is_exit_2_and_one_line(name, command, make_argv, expected, runs, tmp_path, monkeypatch, models,
                                           capsys):
    case = Case(tmp_path, monkeypatch, models)
    if runs in ("nothing", "data"):
        monkeypatch.setattr(training, "build_model", _refuse("a model was built"))
    if runs == "nothing":
        monkeypatch.setattr(training, "load_data", _refuse("the data was read"))
    argv = make_argv(case)
    main = PREPARE[command.split(":")[1]] if command.startswith("prepare:") else APPS[command].main
    capsys.readouterr()
    code = main(argv)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 2, err[-2000:]
    assert len(lines) == 1 and "Traceback" not in err, err[-2000:]
    for text in expected:
        assert text in lines[0], (text, lines[0])
    if runs == "nothing":
        assert not (tmp_path / "run").exists()  # nothing of a run is written


def test_predict_skips_a_corrupt_image_and_writes_the_others(tmp_path, models, capsys):
    images = tmp_path / "images"
    images.mkdir()
    for i in range(3):
        Image.fromarray(np.full((20, 24, 3), 40 * i, np.uint8)).save(images / f"im{i}.png")
    _truncate(images / "im1.png", 30)
    out = tmp_path / "out"
    assert APPS["predict"].main([models["tiny"], str(images), "--out", str(out)]) == 0
    captured = capsys.readouterr()
    warnings = [line for line in captured.err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "im1.png" in warnings[0], captured.err
    assert "error:" not in captured.err
    assert sorted(p.name for p in out.iterdir()) == ["im0.png", "im2.png"]
    assert "Skipped 1 unreadable image(s) of 3" in captured.out

    # Nothing readable at all: that is an error.
    _truncate(images / "im0.png", 30)
    _truncate(images / "im2.png", 30)
    assert APPS["predict"].main([models["tiny"], str(images), "--out", str(tmp_path / "out2")]) == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "none of the 3 images" in lines[0]


def test_errors_that_are_bugs_keep_their_traceback():
    from keras_mtcl.errors import reports_user_errors

    @reports_user_errors
    def main(argv=None):
        raise KeyError("a bug")

    with pytest.raises(KeyError):
        main([])


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="the serving function runs on TensorFlow")
def test_serving_refuses_empty_batches_and_single_images_by_name():
    import tensorflow as tf

    from keras_mtcl import export

    model = MultiTaskModel(backbones.get_backbone("tiny_cnn", widths=(8, 8, 8, 8)), [tasks.depth()])
    serve = export.serving_function(model)
    # As in the SavedModel: a graph whose input is declared (B, H, W, 3), called with other shapes.
    signature = tf.function(serve, input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8)]).get_concrete_function()
    for call in (serve, signature):
        for shape in ((0, 8, 8, 3), (1, 0, 8, 3)):
            with pytest.raises(tf.errors.InvalidArgumentError, match="at least one image of at least 1x1 pixels"):
                call(tf.zeros(shape, tf.uint8))
        with pytest.raises(tf.errors.InvalidArgumentError, match=r"\[8,8,3\] is not compatible with expected shape \[\?,\?,\?,3\]"):
            call(tf.zeros((8, 8, 3), tf.uint8))
        with pytest.raises(tf.errors.InvalidArgumentError, match="wrong channel count"):
            call(tf.zeros((1, 8, 8, 2), tf.uint8))
        assert call(tf.zeros((1, 8, 8, 3), tf.uint8))["depth"].shape == (1, 8, 8, 1)
    # The Python side of a loaded SavedModel refuses them before TensorFlow sees them.
    with pytest.raises(ValueError, match=r"one image: pass images\[None\]"):
        export._uint8_images(np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(ValueError, match="at least one RGB image"):
        export._uint8_images(np.zeros((0, 8, 8, 3), np.uint8))
