"""Custom-folder datasets described by a manifest (keras_mtcl.data.folder)."""

import json
import os
import pathlib

import numpy as np
import pytest
from PIL import Image

from keras_mtcl import tasks
from keras_mtcl.data import folder
from keras_mtcl.data.errors import (
    DatasetLayoutError,
    EmptySplitError,
    LabelRangeError,
    ManifestError,
    MissingManualDownloadError,
    PathEscapeError,
    PreparedDatasetMismatchError,
)
from keras_mtcl.data.builder import SOURCE_RECORD
from keras_mtcl.testing import datasets as fixtures

pytestmark = pytest.mark.backend_independent

H, W = 16, 20


def _examples(builder, split):
    return [{k: v.numpy() for k, v in ex.items()} for ex in folder.load_split(builder, split)]


def _edit_manifest(root, **changes):
    path = root / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest.update(changes)
    path.write_text(json.dumps(manifest))
    return manifest


@pytest.fixture
def rooms(tmp_path):
    return fixtures.make_folder(tmp_path / "raw", height=H, width=W)


def test_build_counts_values_and_metadata(rooms, tmp_path):
    builder = folder.prepare(rooms, tmp_path / "tfds")
    assert {name: s.num_examples for name, s in builder.info.splits.items()} == {"train": 3, "val": 1}
    assert builder.tasks == ("semseg", "depth")
    assert builder.info.full_name == "multi_task_folder/my_rooms/1.0.0"
    assert builder.info.metadata["kinds"] == {"semseg": "classes", "depth": "depth"}
    assert builder.info.metadata["num_classes"] == {"semseg": 5}
    train = _examples(builder, "train")
    assert [e["id"] for e in train] == [b"room_0", b"room_1", b"room_2"]
    semseg, depth = train[0]["semseg"], train[0]["depth"]
    assert semseg.shape == (H, W, 1) and semseg.dtype == np.uint8
    # Stored (y * 20 + x) % 5 with the manifest's ignore value 9 at (0, 0).
    assert semseg[0, 0, 0] == 255 and semseg[0, 1, 0] == 1 and semseg[0, 5, 0] == 0 and semseg[1, 2, 0] == 2
    assert depth.dtype == np.float32 and depth[0, 0, 0] == 2.0 and depth[3, 7, 0] == 3.5  # 2 + 0.5 y
    # tfds logs a custom config on every load: its name and version, not the manifest.
    assert repr(builder.builder_config) == "FolderConfig(name='my_rooms', version='1.0.0')"
    again = folder.prepare(rooms, tmp_path / "tfds")  # already prepared: reused
    assert again.info.splits["val"].num_examples == 1


# ------------------------------------------------------ reusing a prepared copy


def _refuse_to_build(monkeypatch):
    def build(self, dl_manager):
        raise AssertionError("rebuilt a prepared copy that should be reused")

    monkeypatch.setattr(folder.MultiTaskFolder, "_split_generators", build)


def test_prepared_copy_records_its_source_and_is_reused_unchanged(rooms, tmp_path, monkeypatch):
    builder = folder.prepare(rooms, tmp_path / "tfds")
    record = json.loads((pathlib.Path(builder.data_dir) / SOURCE_RECORD).read_text())
    assert record["source"] == str(rooms.resolve()) and record["files"] == 3 + 4 * 3  # manifest, 2 splits, 4 ids
    _refuse_to_build(monkeypatch)
    again = folder.prepare(rooms, tmp_path / "tfds")
    assert again.info.splits["train"].num_examples == 3


def test_same_name_from_another_folder_is_refused(rooms, tmp_path):
    folder.prepare(rooms, tmp_path / "tfds")
    other = fixtures.make_folder(tmp_path / "other", height=H, width=W)  # same manifest name and version
    prepared = tmp_path / "tfds" / "multi_task_folder" / "my_rooms" / "1.0.0"
    with pytest.raises(PreparedDatasetMismatchError, match=rf"{prepared} was built from another source folder, "
                       rf"{rooms.resolve()}, not {other.resolve()}\. Delete {prepared}"):
        folder.prepare(other, tmp_path / "tfds")


def _touch_later(path):
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))


@pytest.mark.parametrize("edit", ["label", "split"])
def test_source_changed_after_preparing_is_refused_until_rebuilt(rooms, tmp_path, monkeypatch, edit):
    folder.prepare(rooms, tmp_path / "tfds")
    if edit == "label":
        Image.fromarray(np.zeros((H, W), np.uint8)).save(rooms / "semseg" / "room_1.png")
        _touch_later(rooms / "semseg" / "room_1.png")  # a new mtime even on a coarse clock
    else:
        (rooms / "splits" / "train.txt").write_text("room_0\nroom_1\n")
    with pytest.raises(PreparedDatasetMismatchError, match="whose files changed since"):
        folder.prepare(rooms, tmp_path / "tfds")
    rebuilt = folder.prepare(rooms, tmp_path / "tfds", overwrite=True)
    if edit == "label":
        assert _examples(rebuilt, "train")[1]["semseg"].max() == 0
    else:
        assert rebuilt.info.splits["train"].num_examples == 2
    _refuse_to_build(monkeypatch)
    folder.prepare(rooms, tmp_path / "tfds")  # the rebuilt copy records the new files


def test_prepared_copy_without_a_record_is_refused(rooms, tmp_path):
    builder = folder.prepare(rooms, tmp_path / "tfds")
    (pathlib.Path(builder.data_dir) / SOURCE_RECORD).unlink()  # as an older version of the package left it
    with pytest.raises(PreparedDatasetMismatchError, match="does not record which source folder"):
        folder.prepare(rooms, tmp_path / "tfds")


def test_mismatch_is_one_error_line_with_exit_2(rooms, tmp_path, capsys):
    folder.prepare(rooms, tmp_path / "tfds")
    other = fixtures.make_folder(tmp_path / "other", height=H, width=W)
    capsys.readouterr()  # the first build's progress bars
    assert folder.main(["--manual-dir", str(other), "--data-dir", str(tmp_path / "tfds")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: The prepared dataset ") and err.count("\n") == 1
    assert "--overwrite of `python -m keras_mtcl.data.folder`" in err


def test_task_specs_of_a_manifest(rooms):
    specs = {s.name: s for s in folder.task_specs(folder.read_manifest(rooms))}
    assert specs["semseg"].channels == 5 and specs["semseg"].loss == "cross_entropy"
    assert specs["depth"].kind == "depth" and specs["depth"].loss == "depth_l1"


def _without_name_and_weight(spec):
    return {k: v for k, v in spec.get_config().items() if k not in ("name", "loss_weight")}


def test_custom_named_tasks_get_the_defaults_of_their_kind():
    manifest = folder.parse_manifest({
        "name": "custom",
        "tasks": {
            "segmentation": {"kind": "classes", "num_classes": 7},
            "height": {"kind": "depth"},
            "orientation": {"kind": "normals"},
            "contours": {"kind": "binary"},
            "depth": {"kind": "classes", "num_classes": 3},  # a standard name of another kind: custom too
            "edge": {"kind": "binary"},  # a standard task: its builder (loss, weight, metrics)
        },
    })
    specs = {s.name: s for s in folder.task_specs(manifest)}
    standard = {
        "segmentation": tasks.semseg(num_classes=7),
        "height": tasks.depth(),
        "orientation": tasks.normals(),
        "contours": tasks.saliency(),  # binary with the kind's defaults (edge changes its loss and metrics)
        "depth": tasks.semseg(num_classes=3),
    }
    for name, expected in standard.items():
        assert _without_name_and_weight(specs[name]) == _without_name_and_weight(expected), name
        assert specs[name].loss_weight == 1.0
    assert specs["segmentation"].loss == "cross_entropy" and specs["segmentation"].main_metric == "miou"
    assert specs["edge"].get_config() == tasks.edge().get_config()


def test_manifest_schema_covers_every_label_kind():
    from keras_mtcl.kinds import KINDS

    assert set(folder._SCHEMAS) == set(KINDS)


def test_every_kind_and_option(tmp_path):
    root = tmp_path / "mixed"
    for name in ("images", "parts", "mm", "normals", "edges"):
        (root / name).mkdir(parents=True)
    Image.fromarray(np.zeros((4, 5, 3), np.uint8)).save(root / "images" / "a.jpg")
    np.save(root / "parts" / "a.npy", np.array([[0, 1, 3, 2, 1]] * 4, np.int32))
    Image.fromarray(np.array([[0, 1500, 2250, 65535, 7]] * 4, np.uint16)).save(root / "mm" / "a.png")
    normals = np.zeros((4, 5, 3), np.uint8)
    normals[..., 0] = 255
    Image.fromarray(normals).save(root / "normals" / "a.png")
    Image.fromarray(np.array([[0, 255, 100, 0, 255]] * 4, np.uint8)).save(root / "edges" / "a.png")
    manifest = {
        "name": "mixed",
        "images": {"format": "jpg"},
        "tasks": {
            "parts": {"kind": "classes", "num_classes": 3, "format": "npy", "zero_is_ignore": True,
                      "ignore_value": None},
            "depth": {"kind": "depth", "dir": "mm", "format": "png", "scale": 1000},
            "normals": {"kind": "normals"},
            "edge": {"kind": "binary", "dir": "edges", "ignore_value": 100},
        },
    }
    (root / "manifest.json").write_text(json.dumps(manifest))
    builder = folder.prepare(root, tmp_path / "tfds")
    (ex,) = _examples(builder, "train")  # no splits in the manifest: every image in "train"
    assert ex["image"].shape == (4, 5, 3)
    # Parts stored 0 (unlabelled) -> 255, k -> k - 1.
    np.testing.assert_array_equal(ex["parts"][0, :, 0], [255, 0, 2, 1, 0])
    # Depth stored in millimetres: 1500 -> 1.5 m, 65535 -> 65.535 m, 0 stays invalid.
    np.testing.assert_allclose(ex["depth"][0, :, 0], [0.0, 1.5, 2.25, 65.535, 0.007], rtol=1e-6)
    np.testing.assert_array_equal(ex["normals"][2, 3], [1.0, -1.0, -1.0])  # (255, 0, 0) -> 2 x / 255 - 1
    np.testing.assert_array_equal(ex["edge"][0, :, 0], [0, 1, 255, 0, 1])  # 255 positive, 100 ignored


def test_out_of_range_class_names_file_and_values(rooms, tmp_path):
    stored = np.zeros((H, W), np.uint8)
    stored[3, 3] = 7
    Image.fromarray(stored).save(rooms / "semseg" / "room_1.png")
    with pytest.raises(LabelRangeError, match=r"room_1\.png holds values outside 0\.\.4 or 9 \(ignore\): 7"):
        folder.prepare(rooms, tmp_path / "tfds")


def test_binary_png_of_zeros_and_ones_names_positive_value(tmp_path):
    root = tmp_path / "edges01"
    for name in ("images", "edge"):
        (root / name).mkdir(parents=True)
    Image.fromarray(np.zeros((4, 5, 3), np.uint8)).save(root / "images" / "a.png")
    Image.fromarray(np.array([[0, 1, 1, 0, 0]] * 4, np.uint8)).save(root / "edge" / "a.png")
    manifest = {"name": "edges01", "tasks": {"edge": {"kind": "binary"}}}
    (root / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(LabelRangeError, match=r"a\.png holds values outside \{0, 255\}: 1\. It stores \{0, 1\}: "
                       r"set \"positive_value\": 1 in the manifest entry of 'edge'"):
        folder.prepare(root, tmp_path / "tfds")
    manifest["tasks"]["edge"]["positive_value"] = 1
    (root / "manifest.json").write_text(json.dumps(manifest))
    (ex,) = _examples(folder.prepare(root, tmp_path / "tfds"), "train")
    np.testing.assert_array_equal(ex["edge"][0, :, 0], [0, 1, 1, 0, 0])


def test_missing_file_lists_what_the_manifest_expects(rooms, tmp_path):
    (rooms / "depth" / "room_2.npy").unlink()
    with pytest.raises(MissingManualDownloadError, match=r"room_2\.npy.*images/<id>\.png, semseg/<id>\.png, "
                       r"depth/<id>\.npy"):
        folder.prepare(rooms, tmp_path / "tfds")


def test_empty_split(rooms, tmp_path):
    (rooms / "splits" / "val.txt").write_text("")
    builder = folder.prepare(rooms, tmp_path / "tfds")
    assert list(builder.info.splits.keys()) == ["train"]
    with pytest.raises(EmptySplitError, match="Split 'val' .* has no examples"):
        folder.load_split(builder, "val")


def test_splits_sharing_ids_are_warned_about(rooms, tmp_path, caplog):
    (rooms / "splits" / "val.txt").write_text("room_3\nroom_1\n")
    with caplog.at_level("WARNING", logger="keras_mtcl.data"):
        builder = folder.prepare(rooms, tmp_path / "tfds")
    warnings = [r.getMessage() for r in caplog.records if "share" in r.getMessage()]
    assert len(warnings) == 1 and "'train' and 'val'" in warnings[0] and "1 id(s) (room_1)" in warnings[0]
    assert builder.info.splits["val"].num_examples == 2  # a warning, not a refusal


def test_labels_of_another_size_are_resized_with_one_warning(rooms, tmp_path, caplog, monkeypatch):
    from keras_mtcl.data import decode

    monkeypatch.setattr(decode, "_RESIZES_WARNED", set())
    y, x = np.mgrid[: H // 2, : W // 2]
    for image_id in ("room_0", "room_1"):  # half-size labels: each label pixel covers 2x2 image pixels
        Image.fromarray(((y * W + x) % 5).astype(np.uint8)).save(rooms / "semseg" / f"{image_id}.png")
    with caplog.at_level("INFO", logger="keras_mtcl.data"):
        builder = folder.prepare(rooms, tmp_path / "tfds")
    resized = [r for r in caplog.records if "resized with nearest sampling" in r.getMessage()]
    assert [r.levelname for r in resized] == ["WARNING", "INFO"]
    assert f"semseg label {rooms / 'semseg' / 'room_0.png'} is {H // 2}x{W // 2}, its image {H}x{W}" in resized[0].getMessage()
    semseg = _examples(builder, "train")[0]["semseg"][..., 0]
    np.testing.assert_array_equal(semseg, np.repeat(np.repeat((y * W + x) % 5, 2, axis=0), 2, axis=1))


# ------------------------------------------------------------- path escapes


@pytest.mark.parametrize(
    "changes, field",
    [
        ({"images": {"dir": "../elsewhere"}}, "images.dir"),
        ({"images": {"dir": "/etc"}}, "images.dir"),
        ({"splits": {"train": "splits/../../train.txt"}}, "splits.train"),
    ],
)
def test_manifest_paths_outside_the_root_are_refused(rooms, changes, field):
    _edit_manifest(rooms, **changes)
    with pytest.raises(PathEscapeError, match=rf"{field} must be relative to the dataset root .*Received: {field}="):
        folder.read_manifest(rooms)


def test_task_dir_outside_the_root_is_refused(rooms):
    manifest = json.loads((rooms / "manifest.json").read_text())
    manifest["tasks"]["depth"]["dir"] = "../../depth"
    (rooms / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(PathEscapeError, match=r"tasks\.depth\.dir must be relative"):
        folder.read_manifest(rooms)


def test_symlinked_folder_escaping_the_root_is_refused(rooms, tmp_path):
    outside = tmp_path / "outside_images"
    (rooms / "images").rename(outside)
    os.symlink(outside, rooms / "images")
    with pytest.raises(PathEscapeError, match=r"images\.dir resolves to .*outside_images, outside the dataset root"):
        folder.read_manifest(rooms)


def test_symlinked_file_escaping_the_root_is_refused(rooms, tmp_path):
    secret = tmp_path / "secret.npy"
    np.save(secret, np.ones((H, W), np.float32))
    (rooms / "depth" / "room_0.npy").unlink()
    os.symlink(secret, rooms / "depth" / "room_0.npy")
    with pytest.raises(PathEscapeError, match=r"symbolic links leading outside the root: .*room_0\.npy"):
        folder.prepare(rooms, tmp_path / "tfds")


def test_split_ids_with_folders_are_refused(rooms, tmp_path):
    (rooms / "splits" / "train.txt").write_text("room_0\n../room_1\n")
    with pytest.raises(DatasetLayoutError, match=r"not plain ids .*\.\./room_1"):
        folder.prepare(rooms, tmp_path / "tfds")


# ---------------------------------------------------------- manifest errors


def test_missing_manifest(tmp_path):
    (tmp_path / "data").mkdir()
    with pytest.raises(MissingManualDownloadError, match="No manifest.json in the dataset root"):
        folder.read_manifest(tmp_path / "data")


def test_manifest_that_is_not_json(rooms):
    (rooms / "manifest.json").write_text("{name: rooms")
    with pytest.raises(ManifestError, match="is not valid JSON"):
        folder.read_manifest(rooms)


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"colour": "red"}, r"the manifest has unknown fields \['colour'\]"),
        ({"name": "my rooms!"}, r"Received: name='my rooms!'"),
        ({"version": "1.0"}, r"version must look like '1.0.0'. Received: version='1.0'"),
        ({"images": {"format": "tiff"}}, r"images.format must be one of \['png', 'jpg'\]. Received: format='tiff'"),
        ({"tasks": {}}, r"tasks must be a non-empty object"),
        ({"tasks": {"semseg": {"kind": "classes"}}}, r"tasks.semseg lacks the required fields \['num_classes'\]"),
        ({"tasks": {"semseg": {"kind": "segmentation"}}}, r"kind must be one of .*Received: kind='segmentation'"),
        ({"tasks": {"image": {"kind": "depth"}}}, r"Received: name='image'"),
        ({"tasks": {"d": {"kind": "depth", "format": "exr"}}}, r"tasks.d.format must be one of"),
        ({"tasks": {"d": {"kind": "depth", "scale": 0}}}, r"scale must be a number > 0.*Received: scale=0"),
        ({"tasks": {"s": {"kind": "classes", "num_classes": 1}}}, r"num_classes must be an integer in 2..255"),
        ({"tasks": {"s": {"kind": "classes", "num_classes": 5, "ignore_value": 3}}},
         r"ignore_value must not be a class id .*Received: ignore_value=3"),
        ({"tasks": {"e": {"kind": "binary", "num_classes": 2}}}, r"tasks.e has unknown fields \['num_classes'\]"),
        ({"splits": {"train set": "a.txt"}}, r"Received: split='train set'"),
    ],
)
def test_invalid_manifests(rooms, changes, message):
    _edit_manifest(rooms, **changes)
    with pytest.raises(ManifestError, match=message):
        folder.read_manifest(rooms)
