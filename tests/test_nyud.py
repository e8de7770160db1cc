"""NYUD-v2 builder and the shared decoding helpers (keras_mtcl.data.nyud, .decode, .builder).

Fixtures are written at test time by keras_mtcl.testing.datasets in each released layout (A, B, C);
its docstring gives the stored patterns the expectations below are derived from.
"""

import json
import logging
import pathlib
import shutil
import sys

import numpy as np
import pytest

from conftest import nyud_real10
import tensorflow as tf
from PIL import Image

from keras_mtcl.data import builder as data_builder, decode, nyud
from keras_mtcl.data.errors import (
    CorruptFileError,
    DatasetLayoutError,
    EmptySplitError,
    LabelRangeError,
    LabelShapeError,
    MissingManualDownloadError,
    PreparedDatasetMismatchError,
)
from keras_mtcl.testing import datasets as fixtures

pytestmark = pytest.mark.backend_independent

H, W = 16, 20


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """{layout: (root, builder)} for the three layouts, 3 train + 2 val examples each."""
    out = {}
    for layout in "ABC":
        base = tmp_path_factory.mktemp(f"nyud_{layout}")
        root = fixtures.make_nyud(base / "raw", layout, height=H, width=W)
        out[layout] = (root, nyud.prepare(base / "raw", base / "tfds"))
    return out


def test_a_second_release_into_the_same_data_dir_is_refused(built):
    (root_a, builder_a), (root_b, _) = built["A"], built["B"]
    record = json.loads((pathlib.Path(builder_a.data_dir) / data_builder.SOURCE_RECORD).read_text())
    assert record["source"] == str(root_a.resolve()) and record["files"] == 2 + 5 * 5  # splits; image + 4 labels per id
    with pytest.raises(PreparedDatasetMismatchError, match=rf"was built from another source folder, {root_a.resolve()}"):
        nyud.prepare(root_b, builder_a.data_dir_root)


def _examples(builder, split):
    return [{k: v.numpy() for k, v in ex.items()} for ex in nyud.load_split(builder, split)]


def _copy_c(tmp_path):
    return fixtures.make_nyud(tmp_path / "raw", "C", height=H, width=W)


# ------------------------------------------------------------------ layouts


@pytest.mark.parametrize("layout", ["A", "B", "C"])
def test_detect_layout(built, layout):
    root, _ = built[layout]
    assert nyud.detect_layout(root) == layout
    assert nyud.NyudMultiTask.find_root(root.parent) == root
    assert nyud.available_tasks(root.parent) == ("semseg", "depth", "normals", "edge")


@pytest.mark.parametrize("layout", ["A", "B", "C"])
def test_split_counts_ids_and_metadata(built, layout):
    _, builder = built[layout]
    assert {name: s.num_examples for name, s in builder.info.splits.items()} == {"train": 3, "val": 2}
    assert builder.tasks == ("semseg", "depth", "normals", "edge")
    assert builder.builder_config.name == "semseg-depth-normals-edge"
    assert builder.info.metadata["layout"] == layout
    assert builder.info.metadata["missing_tasks"] == []
    assert [e["id"] for e in _examples(builder, "train")] == [b"0001", b"0002", b"0003"]
    assert [e["id"] for e in _examples(builder, "val")] == [b"0004", b"0005"]


def test_element_spec_follows_the_package_format(built):
    spec = nyud.load_split(built["C"][1], "train").element_spec
    expected = {
        "image": (tf.uint8, [None, None, 3]),
        "id": (tf.string, []),
        "semseg": (tf.uint8, [None, None, 1]),
        "depth": (tf.float32, [None, None, 1]),
        "normals": (tf.float32, [None, None, 3]),
        "edge": (tf.uint8, [None, None, 1]),
    }
    assert {k: (v.dtype, v.shape.as_list()) for k, v in spec.items()} == expected


# ----------------------------------------------------------------- decoding


@pytest.mark.parametrize("layout", ["A", "B", "C"])
def test_semseg_label_minus_one_and_zero_to_ignore(built, layout):
    ex = _examples(built[layout][1], "train")[0]
    semseg = ex["semseg"]
    assert semseg.shape == (H, W, 1) and semseg.dtype == np.uint8
    # Stored (y * 20 + x) % 41: 0 at (0, 0) -> 255; 1 at (0, 1) -> 0; 5 at (0, 5) -> 4; 40 at (2, 0) -> 39.
    assert semseg[0, 0, 0] == 255
    assert semseg[0, 1, 0] == 0
    assert semseg[0, 5, 0] == 4
    assert semseg[2, 0, 0] == 39
    # Stored 0 occurs where y * 20 + x is a multiple of 41: (0, 0), (2, 1), (4, 2), ...
    assert semseg[2, 1, 0] == 255 and semseg[4, 2, 0] == 255
    assert set(np.unique(semseg)) <= set(range(40)) | {255}


@pytest.mark.parametrize("layout", ["A", "B", "C"])
def test_depth_in_metres_with_zero_invalid(built, layout):
    first = _examples(built[layout][1], "train")[0]["depth"]
    assert first.shape == (H, W, 1) and first.dtype == np.float32
    # Stored 1 + 0.25 x + k metres, 0 at (0, 0).
    assert first[0, 0, 0] == 0.0
    assert first[0, 1, 0] == 1.25
    assert first[5, 4, 0] == 2.0
    fourth = _examples(built[layout][1], "val")[0]["depth"]  # k = 3
    assert fourth[0, 1, 0] == 4.25


def test_normals_from_8bit_png_are_2x_over_255_minus_1(built):
    normals = _examples(built["C"][1], "train")[0]["normals"]
    assert normals.shape == (H, W, 3) and normals.dtype == np.float32
    # Stored (0, 128, 255) left of x = 10 and (255, 255, 0) right of it.
    np.testing.assert_allclose(normals[3, 2], [-1.0, 1.0 / 255.0, 1.0], atol=1e-6)
    np.testing.assert_allclose(normals[3, 15], [1.0, 1.0, -1.0], atol=1e-6)


def test_normals_from_8bit_jpg_layout_a(built):
    normals = _examples(built["A"][1], "train")[0]["normals"]
    # JPEG stores (0, 128, 255) with a few levels of error: 3 / 255 * 2 in the decoded units.
    np.testing.assert_allclose(normals[3, 2], [-1.0, 1.0 / 255.0, 1.0], atol=6 / 255)
    np.testing.assert_allclose(normals[3, 15], [1.0, 1.0, -1.0], atol=6 / 255)


def test_normals_from_npy_layout_b_keep_values_and_zero_vector(built):
    normals = _examples(built["B"][1], "train")[0]["normals"]
    np.testing.assert_array_equal(normals[0, 0], [0.0, 0.0, 0.0])
    np.testing.assert_array_equal(normals[3, 2], [0.0, 0.0, 1.0])
    np.testing.assert_array_equal(normals[3, 15], [1.0, 0.0, 0.0])


@pytest.mark.parametrize("layout", ["A", "B", "C"])
def test_edge_becomes_zero_one(built, layout):
    edge = _examples(built[layout][1], "train")[0]["edge"][..., 0]
    expected = np.zeros((H, W), np.uint8)
    expected[:, 5] = 1  # stored 255 (png) or 1 (npy) on column 5
    np.testing.assert_array_equal(edge, expected)


def test_png_images_are_stored_exactly(built):
    image = _examples(built["C"][1], "val")[1]["image"]  # k = 4
    assert image.shape == (H, W, 3) and image.dtype == np.uint8
    assert list(image[0, :3, 0]) == [4, 16, 28]  # R = 12 x + 4
    assert list(image[:3, 0, 1]) == [0, 15, 30]  # G = 15 y
    assert np.all(image[..., 2] == 104)  # B = 100 + 4


def test_label_of_another_size_is_resized_to_the_image_with_nearest(tmp_path):
    root = _copy_c(tmp_path)
    small = ((np.arange(8)[:, None] + np.arange(10)[None, :]) % 40 + 1).astype(np.uint8)  # stored 1..40
    Image.fromarray(small).save(root / "segmentation" / "0002.png")
    semseg = nyud.read_example(root, "C", "0002", ["semseg"])["semseg"][..., 0]
    assert semseg.shape == (H, W)
    # Output (r, c) takes stored (r // 2, c // 2), decoded as stored - 1 = (r // 2 + c // 2) % 40.
    assert semseg[0, 0] == 0 and semseg[1, 1] == 0
    assert semseg[2, 0] == 1 and semseg[15, 19] == 16
    assert semseg[5, 7] == (2 + 3) % 40


def test_resize_nearest_uses_floor_index_sampling():
    label = np.array([[1, 2, 3], [4, 5, 6]])
    up = decode.resize_nearest(label, 4, 6)
    np.testing.assert_array_equal(up, [[1, 1, 2, 2, 3, 3]] * 2 + [[4, 4, 5, 5, 6, 6]] * 2)
    big = np.arange(24).reshape(4, 6)
    np.testing.assert_array_equal(decode.resize_nearest(big, 2, 3), [[0, 2, 4], [12, 14, 16]])


def test_task_subsets_name_one_config_each():
    subsets = data_builder.task_subsets(nyud.TASKS)
    assert len(subsets) == 15
    assert subsets[0] == nyud.TASKS
    assert ("semseg", "depth") in subsets
    names = [c.name for c in nyud.NyudMultiTask.BUILDER_CONFIGS]
    assert names[0] == "semseg-depth-normals-edge" and "semseg-depth" in names and len(set(names)) == 15


# ------------------------------------------------------------- nyud_real10


def test_real10_builds_with_the_present_tasks(tmp_path, caplog):
    real10 = nyud_real10()
    with caplog.at_level(logging.WARNING, logger="keras_mtcl.data"):
        builder = nyud.prepare(real10, tmp_path / "tfds")
    assert "missing: ['normals', 'edge']" in caplog.text
    assert nyud.available_tasks(real10) == ("semseg", "depth")
    assert builder.tasks == ("semseg", "depth")
    assert builder.info.metadata["layout"] == "C"
    assert builder.info.metadata["missing_tasks"] == ["normals", "edge"]
    assert builder.info.metadata["empty_splits"] == ["train"]
    assert {name: s.num_examples for name, s in builder.info.splits.items()} == {"val": 10}
    examples = _examples(builder, "val")
    assert [e["id"].decode() for e in examples] == real10.joinpath("gt_sets/val.txt").read_text().split()
    for ex in examples:
        assert set(ex) == {"image", "id", "semseg", "depth"}
        assert ex["image"].shape == (480, 640, 3)
        assert ex["semseg"].shape == (480, 640, 1) and ex["depth"].shape == (480, 640, 1)
        assert set(np.unique(ex["semseg"])) <= set(range(40)) | {255}
        valid = ex["depth"][ex["depth"] > 0]
        assert valid.size > 0.9 * 480 * 640  # filled depth
        assert 0.3 < valid.min() and valid.max() < 10.5  # metres, indoor
    # The first frame against its stored PNG: 0 -> 255, k -> k - 1.
    stored = np.array(Image.open(real10 / "segmentation" / "0001.png"))
    decoded = examples[0]["semseg"][..., 0]
    assert np.all(decoded[stored == 0] == 255)
    assert np.array_equal(decoded[stored > 0], stored[stored > 0] - 1)
    with pytest.raises(EmptySplitError, match="Split 'train' .* has no examples"):
        nyud.load_split(builder, "train")
    with pytest.raises(ValueError, match=r"Received: split='test'"):
        nyud.load_split(builder, "test")


def test_real10_refuses_a_config_with_absent_tasks(tmp_path):
    real10 = nyud_real10()
    with pytest.raises(MissingManualDownloadError, match=r"needs tasks \['normals'\].*'semseg-depth'"):
        nyud.prepare(real10, tmp_path / "tfds", tasks=["semseg", "normals"])


def test_builder_used_directly_refuses_absent_tasks(tmp_path):
    real10 = nyud_real10()
    builder = nyud.NyudMultiTask(data_dir=str(tmp_path / "tfds"))  # default config: all four tasks
    with pytest.raises(MissingManualDownloadError, match=r"\['normals/', 'edge/'\] folder"):
        builder.build_from(real10)


# ------------------------------------------------------------------ errors


def test_unknown_tasks_argument(tmp_path):
    real10 = nyud_real10()
    with pytest.raises(ValueError, match=r"Received: tasks=\['semseg', 'sky'\]"):
        nyud.prepare(real10, tmp_path / "tfds", tasks=["semseg", "sky"])


def test_missing_manual_dir(tmp_path):
    with pytest.raises(MissingManualDownloadError, match="does not exist"):
        nyud.prepare(tmp_path / "nowhere", tmp_path / "tfds")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "photos").mkdir()
    with pytest.raises(MissingManualDownloadError, match=r"expected an `images/` folder.*Found: \[photos/\]"):
        nyud.NyudMultiTask.find_root(tmp_path / "empty")


def test_missing_label_file_is_named_with_layout_and_fix(tmp_path):
    root = _copy_c(tmp_path)
    (root / "depth" / "0002.npy").unlink()
    with pytest.raises(MissingManualDownloadError) as info:
        nyud.prepare(root, tmp_path / "tfds")
    message = str(info.value)
    assert "depth/0002.npy" in message and "layout C" in message and "Re-extract" in message


def test_mixed_extensions_match_no_layout(tmp_path):
    root = _copy_c(tmp_path)
    shutil.copy(root / "images" / "0001.png", root / "segmentation" / "0001.mat")
    with pytest.raises(DatasetLayoutError) as info:
        nyud.detect_layout(root)
    message = str(info.value)
    assert "matches no known NYUD-v2 layout" in message
    assert "segmentation/: ['.mat', '.png']" in message
    assert "layout A (ASTMT" in message and "layout B (MTL-PyTorch" in message and "layout C (ATRC/InvPT" in message


def test_unknown_image_format(tmp_path):
    root = _copy_c(tmp_path)
    for path in (root / "images").iterdir():
        path.rename(path.with_suffix(".bmp"))
    with pytest.raises(DatasetLayoutError, match=r"images/: \['.bmp'\]"):
        nyud.detect_layout(root)


def test_out_of_range_semseg_names_file_and_values(tmp_path):
    root = _copy_c(tmp_path)
    stored = np.ones((H, W), np.uint8)
    stored[0, 0], stored[1, 1] = 41, 77
    Image.fromarray(stored).save(root / "segmentation" / "0002.png")
    with pytest.raises(LabelRangeError, match=r"0002\.png holds values outside 0\.\.40 \(0 = unlabelled\): 41, 77"):
        nyud.prepare(root, tmp_path / "tfds")


def test_nan_depth(tmp_path):
    root = _copy_c(tmp_path)
    depth = np.ones((H, W), np.float32)
    depth[2, 3] = np.nan
    np.save(root / "depth" / "0001.npy", depth)
    with pytest.raises(LabelRangeError, match=r"0001\.npy holds 1 NaN values"):
        nyud.read_example(root, "C", "0001")


def test_negative_depth(tmp_path):
    root = _copy_c(tmp_path)
    np.save(root / "depth" / "0001.npy", -np.ones((H, W), np.float32))
    with pytest.raises(LabelRangeError, match="negative values"):
        nyud.read_example(root, "C", "0001")


def test_wrong_label_shapes(tmp_path):
    root = _copy_c(tmp_path)
    Image.fromarray(np.zeros((H, W), np.uint8)).save(root / "normals" / "0001.png")
    with pytest.raises(LabelShapeError, match=r"0001\.png must be an \(H, W, 3\) RGB map. Received: shape=\(16, 20\)"):
        nyud.read_example(root, "C", "0001")
    Image.fromarray(np.zeros((H, W, 3), np.uint8)).save(root / "segmentation" / "0002.png")
    with pytest.raises(LabelShapeError, match=r"single-channel \(H, W\) map. Received: shape=\(16, 20, 3\)"):
        nyud.read_example(root, "C", "0002")
    root_b = fixtures.make_nyud(tmp_path / "raw_b", "B", height=H, width=W)
    np.save(root_b / "normals" / "0001.npy", np.zeros((H, W, 2), np.float32))
    with pytest.raises(LabelShapeError, match=r"\(H, W, 3\) array. Received: shape=\(16, 20, 2\)"):
        nyud.read_example(root_b, "B", "0001")


def test_npy_normals_out_of_range(tmp_path):
    root = fixtures.make_nyud(tmp_path / "raw", "B", height=H, width=W)
    np.save(root / "normals" / "0001.npy", np.full((H, W, 3), 2.0, np.float32))
    with pytest.raises(LabelRangeError, match=r"components outside \[-1, 1\]"):
        nyud.read_example(root, "B", "0001")


def test_non_binary_edge(tmp_path):
    root = _copy_c(tmp_path)
    Image.fromarray(np.full((H, W), 128, np.uint8)).save(root / "edge" / "0003.png")
    with pytest.raises(LabelRangeError, match=r"0003\.png holds values outside \{0, 255\}: 128"):
        nyud.read_example(root, "C", "0003")


def test_corrupt_image(tmp_path):
    root = _copy_c(tmp_path)
    (root / "images" / "0001.png").write_bytes(b"not a png")
    with pytest.raises(CorruptFileError, match=r"Cannot decode the image .*0001\.png"):
        nyud.read_example(root, "C", "0001")


def test_missing_split_file(tmp_path):
    root = _copy_c(tmp_path)
    (root / "gt_sets" / "train.txt").unlink()
    with pytest.raises(MissingManualDownloadError, match=r"gt_sets/train\.txt not found"):
        nyud.prepare(root, tmp_path / "tfds")


def test_all_splits_empty(tmp_path):
    root = _copy_c(tmp_path)
    for split in ("train", "val"):
        (root / "gt_sets" / f"{split}.txt").write_text("\n")
    with pytest.raises(EmptySplitError, match="Every split file .* is empty"):
        nyud.prepare(root, tmp_path / "tfds")


def test_repeated_ids_in_a_split_file(tmp_path):
    root = _copy_c(tmp_path)
    (root / "gt_sets" / "val.txt").write_text("0004\n0005\n0004\n")
    with pytest.raises(DatasetLayoutError, match=r"val\.txt lists ids more than once: 0004"):
        nyud.NyudMultiTask.read_splits(root)


def test_mat_key_missing(tmp_path):
    root = fixtures.make_nyud(tmp_path / "raw", "A", height=H, width=W)
    import scipy.io

    scipy.io.savemat(root / "depth" / "0001.mat", {"dep": np.ones((H, W))})
    with pytest.raises(DatasetLayoutError, match=r"0001\.mat has no variable 'depth'. Found: \['dep'\]"):
        nyud.read_example(root, "A", "0001")


def _write_v73(path, key, array):
    """A MATLAB v7.3 file: 512-byte header, then HDF5 with column-major (transposed) data."""
    import h5py

    with h5py.File(path, "w", userblock_size=512) as f:
        f[key] = array.T
    with open(path, "r+b") as f:
        # Text, subsystem offset, version 0x0200 and endian indicator, as MATLAB writes them.
        f.write(b"MATLAB 7.3 MAT-file".ljust(116) + b"\x00" * 8 + b"\x00\x02" + b"IM")


def test_v73_mat_is_read_with_h5py(tmp_path):
    array = np.arange(6, dtype=np.float64).reshape(2, 3)
    _write_v73(tmp_path / "d.mat", "depth", array)
    np.testing.assert_array_equal(decode.read_mat_array(tmp_path / "d.mat", "depth"), array)


def test_v73_mat_without_h5py_suggests_conversion(tmp_path, monkeypatch):
    _write_v73(tmp_path / "d.mat", "depth", np.ones((2, 3)))
    monkeypatch.setitem(sys.modules, "h5py", None)  # makes `import h5py` fail
    with pytest.raises(CorruptFileError, match=r"d\.mat is a MATLAB v7\.3 \(HDF5\) file.*-v7"):
        decode.read_mat_array(tmp_path / "d.mat", "depth")
    with pytest.raises(CorruptFileError, match=r"d\.mat is a MATLAB v7\.3 \(HDF5\) file.*Convert it"):
        decode.load_mat(tmp_path / "d.mat")
