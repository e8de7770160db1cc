"""PASCAL-Context builder (keras_mtcl.data.pascal): decoding, edges from LabelMap, human parts, person index.

Fixtures are written at test time by keras_mtcl.testing.datasets (`make_pascal`); its docstring and
`PARTS_BY_INDEX` give the stored labels the expectations below are derived from.
"""

import json
import logging
import os
import pathlib
import shutil

import numpy as np
import pytest
import scipy.io

from keras_mtcl.data import pascal
from keras_mtcl.data.builder import SOURCE_RECORD
from keras_mtcl.data.errors import (
    DatasetLayoutError,
    LabelRangeError,
    MissingManualDownloadError,
    PreparedDatasetMismatchError,
)
from keras_mtcl.testing import datasets as fixtures

pytestmark = pytest.mark.backend_independent

H, W = 16, 20


def _files(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    base = tmp_path_factory.mktemp("pascal")
    root = fixtures.make_pascal(base / "raw", height=H, width=W)
    before = _files(root)
    builder = pascal.prepare(base / "raw", base / "tfds")
    assert _files(root) == before, "building must not write into the dataset folder"
    examples = {
        split: [{k: v.numpy() for k, v in ex.items()} for ex in pascal.load_split(builder, split)]
        for split in ("train", "val")
    }
    return root, base / "tfds", builder, examples


def test_split_counts_tasks_and_metadata(built):
    _, _, builder, examples = built
    assert {name: s.num_examples for name, s in builder.info.splits.items()} == {"train": 3, "val": 2}
    assert builder.tasks == ("semseg", "human_parts", "saliency", "normals", "edge")
    assert [e["id"] for e in examples["train"]] == [b"2008_000000", b"2008_000001", b"2008_000002"]
    # Persons with parts: k = 0 in train, k = 3 and 4 in val.
    assert builder.info.metadata["num_with_person"] == {"train": 1, "val": 2}
    assert set(examples["val"][0]) == {"image", "id", "semseg", "human_parts", "saliency", "normals", "edge"}


def test_prepared_copy_records_its_files_and_refuses_another_release(built, tmp_path):
    root, tfds_dir, builder, _ = built
    record = json.loads((pathlib.Path(builder.data_dir) / SOURCE_RECORD).read_text())
    # 2 split files; per id: image, semseg, parts .mat, saliency, normals, context .mat (normals and edge share it)
    assert record["source"] == str(root.resolve()) and record["files"] == 2 + 5 * 6
    fixtures.make_pascal(tmp_path / "raw", height=H, width=W)
    with pytest.raises(PreparedDatasetMismatchError, match="was built from another source folder"):
        pascal.prepare(tmp_path / "raw", tfds_dir)


@pytest.mark.parametrize("k", [0, 1])  # k = 0 from semseg/VOC12 (palette PNG), k = 1 from semseg/pascal-context
def test_semseg_values_kept_with_255_ignore(built, k):
    semseg = built[3]["train"][k]["semseg"][..., 0]
    # Stored (y * 20 + x) % 21, 255 at (0, 0).
    assert semseg[0, 0] == 255 and semseg[0, 1] == 1 and semseg[1, 0] == 20 and semseg[1, 1] == 0


def test_human_parts_groups(built):
    parts = built[3]["train"][0]["human_parts"][..., 0]
    expected = np.zeros((H, W), np.uint8)
    expected[0:3, 2:6] = 1  # head
    expected[3:8, 2:6] = 2  # torso
    expected[3:6, 6:7] = 3  # left upper arm
    expected[6:8, 6:7] = 4  # left lower arm
    expected[8:11, 2:4] = 5  # right upper leg
    expected[11:14, 2:4] = 6  # right lower leg; the chair at rows 12-15, columns 14-19 stays 0
    np.testing.assert_array_equal(parts, expected)


def test_human_parts_ignored_without_person_pixels(built):
    train = built[3]["train"]
    assert np.all(train[1]["human_parts"] == 255)  # only a chair
    assert np.all(train[2]["human_parts"] == 255)  # a person without part annotations
    assert train[1]["human_parts"].shape == (H, W, 1)


def test_human_parts_fine_parts_and_several_persons(built):
    val = built[3]["val"]
    first = val[0]["human_parts"][..., 0]
    expected = np.zeros((H, W), np.uint8)
    expected[0:2, 0:3] = 1  # hair -> head
    expected[14:16, 0:3] = 6  # lfoot -> lower leg
    np.testing.assert_array_equal(first, expected)
    second = val[1]["human_parts"][..., 0]
    expected = np.zeros((H, W), np.uint8)
    expected[5, 10:12] = 2  # neck -> torso (first person)
    expected[9, 15:17] = 4  # rhand -> lower arm (second person)
    np.testing.assert_array_equal(second, expected)


def test_saliency_threshold_at_half(built):
    saliency = built[3]["train"][0]["saliency"][..., 0]
    # Stored 200 (x < 8), 128 (x = 8: 128 / 255 > 0.5), 127 (x = 9: < 0.5), 100 elsewhere.
    np.testing.assert_array_equal(saliency[0], [1] * 9 + [0] * 11)


def test_normals_valid_only_on_indoor_context_classes(built):
    normals = built[3]["train"][0]["normals"]
    # Stored (0, 128, 255); LabelMap 440 "wall" (valid) for x < 10, 360 "sky" (invalid) elsewhere.
    np.testing.assert_allclose(normals[4, 3], [-1.0, 1.0 / 255.0, 1.0], atol=1e-6)
    np.testing.assert_array_equal(normals[4, 12], [0.0, 0.0, 0.0])
    assert 440 in pascal.NORMALS_VALID_CLASSES and 360 not in pascal.NORMALS_VALID_CLASSES


def test_edge_from_label_map(built):
    edge = built[3]["train"][0]["edge"][..., 0]
    # LabelMap changes between columns 9 and 10: the Laplacian is non-zero on both (a 2-px band).
    # Guo-Hall thinning, first subiteration: column 10 goes (its east neighbour is background), and so
    # does (0, 9) (north-west corner: one crossing, N1 = N2 = 2, east set but NE, N unset and SE set).
    # What remains, column 9 from row 1 down, is 1 px wide with end points: nothing else is removed.
    expected = np.zeros((H, W), np.uint8)
    expected[1:, 9] = 1
    np.testing.assert_array_equal(edge, expected)


def test_laplacian_uses_mirrored_borders_and_can_be_zero_at_a_change():
    label_map = np.array([[2, 2, 2], [1, 2, 3], [2, 2, 2]])
    # Centre: 2 + 2 + 1 + 3 - 4 * 2 = 0, no edge although the label changes around it.
    # Corner (0, 0): mirrored neighbours N = S = 1 (row 1), W = E = 2: 1 + 1 + 2 + 2 - 8 = -2, an edge.
    # (0, 1): N = S = 2, W = E = 2: 0. (1, 0): 2 + 2 + 2 + 2 - 4 = 4. (1, 2): 8 - 12 = -4.
    expected = np.array([[1, 0, 1], [1, 0, 1], [1, 0, 1]], bool)
    np.testing.assert_array_equal(pascal.laplacian_edges(label_map), expected)


def test_thin_keeps_lines_and_points():
    line = np.zeros((6, 7), bool)
    line[1:5, 3] = True
    np.testing.assert_array_equal(pascal.thin(line), line)  # already 1 px wide
    point = np.zeros((3, 3), bool)
    point[1, 1] = True
    np.testing.assert_array_equal(pascal.thin(point), point)


def test_person_index_is_cached_outside_the_dataset_and_reused(built, tmp_path):
    root, data_dir, _, _ = built
    cache_files = list((data_dir / "keras_mtcl_cache").glob("pascal_person_index_*.json"))
    assert len(cache_files) == 1
    entries = json.loads(cache_files[0].read_text())
    assert entries["2008_000000.mat"][2] is True and entries["2008_000001.mat"][2] is False
    assert pascal.person_ids(root, "val", data_dir / "keras_mtcl_cache") == ["2008_000003", "2008_000004"]
    # A cached entry whose file is unchanged is trusted as stored...
    entries["2008_000001.mat"][2] = True
    cache_files[0].write_text(json.dumps(entries))
    assert pascal.person_ids(root, "train", data_dir / "keras_mtcl_cache") == ["2008_000000", "2008_000001"]
    # ... and recomputed once the file changes.
    copy = tmp_path / "raw" / "PASCAL_MT"
    shutil.copytree(root, copy)
    cache = tmp_path / "cache"
    assert pascal.person_ids(copy, "train", cache) == ["2008_000000"]
    part_file = copy / "human_parts" / "2008_000000.mat"
    scipy.io.savemat(part_file, fixtures.pascal_parts_anno(1, "2008_000000", H, W))
    stat = part_file.stat()
    os.utime(part_file, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert pascal.person_ids(copy, "train", cache) == []


def test_cache_dir_inside_the_dataset_is_refused(built):
    root = built[0]
    with pytest.raises(ValueError, match=r"`cache_dir` must lie outside the dataset folder.*Received: cache_dir="):
        pascal.PersonIndex(root, root / "cache")


def test_pascal_context_folder_name_and_missing_tasks(tmp_path, caplog):
    root = fixtures.make_pascal(tmp_path / "raw", num_train=2, num_val=1, height=H, width=W, folder="PASCALContext")
    shutil.rmtree(root / "human_parts")
    shutil.rmtree(root / "sal_distill")
    assert pascal.PascalContextMultiTask.find_root(tmp_path / "raw") == root
    assert pascal.available_tasks(root) == ("semseg", "normals", "edge")
    with caplog.at_level(logging.WARNING, logger="keras_mtcl.data"):
        builder = pascal.prepare(tmp_path / "raw", tmp_path / "tfds")
    assert "missing: ['human_parts', 'saliency']" in caplog.text
    assert builder.builder_config.name == "semseg-normals-edge"
    assert builder.info.metadata["missing_tasks"] == ["human_parts", "saliency"]
    assert {name: s.num_examples for name, s in builder.info.splits.items()} == {"train": 2, "val": 1}


def test_missing_files_are_named(tmp_path):
    root = fixtures.make_pascal(tmp_path / "raw", num_train=2, num_val=1, height=H, width=W)
    (root / "sal_distill" / "2008_000001.png").unlink()
    (root / "semseg" / "pascal-context" / "2008_000001.png").unlink()
    with pytest.raises(MissingManualDownloadError) as info:
        pascal.prepare(root, tmp_path / "tfds")
    message = str(info.value)
    assert "2 file(s)" in message and "sal_distill/2008_000001.png" in message
    assert "semseg/VOC12|semseg/pascal-context/2008_000001.png" in message


def test_unknown_part_name(tmp_path):
    anno = fixtures.pascal_parts_anno(3, "x", H, W)
    anno["anno"][0, 0]["objects"][0, 0]["parts"][0, 0]["part_name"] = "tail"
    scipy.io.savemat(tmp_path / "x.mat", anno)
    with pytest.raises(LabelRangeError, match=r"x\.mat has a person part 'tail'"):
        pascal.decode_human_parts(tmp_path / "x.mat")


def test_part_file_without_anno(tmp_path):
    scipy.io.savemat(tmp_path / "x.mat", {"LabelMap": np.zeros((2, 2))})
    with pytest.raises(DatasetLayoutError, match=r"x\.mat has no variable 'anno'. Found: \['LabelMap'\]"):
        pascal.decode_human_parts(tmp_path / "x.mat")


def test_no_dataset_in_manual_dir(tmp_path):
    (tmp_path / "VOC2012").mkdir()
    with pytest.raises(MissingManualDownloadError, match=r"expected a `JPEGImages/` folder.*Found: \[VOC2012/\]"):
        pascal.prepare(tmp_path, tmp_path / "tfds")
