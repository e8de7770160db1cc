"""The reference numpy / OpenCV training transforms and their DataLoader (`keras_mtcl.analysis.reference_data`).

Plain numpy, OpenCV and torch: no Keras backend is involved, so the file runs in the tensorflow pass only.
"""

import random
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the reference input pipeline runs in a PyTorch DataLoader (`torch` extra)")
cv2 = pytest.importorskip("cv2", reason="the reference transforms use OpenCV (opencv-python-headless, `dev` extra)")

from keras_mtcl.analysis import reference_data as ref  # noqa: E402

pytestmark = pytest.mark.backend_independent


def _example(height=20, width=30, seed=0):
    """An asymmetric NYUD-like example: uint8 image, semseg with ignore, depth with invalid zeros, unit normals, edge."""
    rng = np.random.default_rng(seed)
    normals = rng.normal(size=(height, width, 3)).astype("float32")
    normals /= np.linalg.norm(normals, axis=-1, keepdims=True)
    normals[0, 0] = 0.0  # an invalid pixel
    semseg = rng.integers(0, 5, (height, width, 1)).astype("uint8")
    semseg[: height // 4] = 255
    depth = rng.choice(np.array([0.0, 1.0, 2.5, 4.0], "float32"), (height, width, 1))
    return {
        "image": rng.integers(0, 256, (height, width, 3)).astype("uint8"),
        "semseg": semseg,
        "depth": depth,
        "normals": normals,
        "edge": rng.integers(0, 2, (height, width, 1)).astype("uint8"),
    }


def _sample(example):
    """As `ReferenceDataset` loads it: float32 copies."""
    return {key: np.array(value, dtype="float32") for key, value in example.items()}


def test_flip_mirrors_every_map_and_negates_normals_x():
    original = _sample(_example())
    flipped = ref.RandomHorizontalFlip(probability=1.0)(_sample(_example()))
    for key, value in original.items():
        expected = value[:, ::-1].copy()
        if key == "normals":
            expected[..., 0] *= -1
            assert not np.array_equal(flipped[key][..., 0], value[:, ::-1, 0])  # x did change
        np.testing.assert_array_equal(flipped[key], expected, err_msg=key)
    kept = ref.RandomHorizontalFlip(probability=0.0)(_sample(_example()))
    for key, value in original.items():
        np.testing.assert_array_equal(kept[key], value, err_msg=key)


@pytest.mark.parametrize("factor", [0.5, 1.7])
def test_scaling_divides_depth_by_the_factor_and_keeps_label_values(factor):
    original = _sample(_example())
    scaled = ref.RandomScaling((factor, factor))(_sample(_example()))
    size = (int(20 * factor), int(30 * factor))
    channels = {"image": 3, "semseg": 1, "depth": 1, "normals": 3, "edge": 1}
    for key, value in scaled.items():
        assert value.shape == (*size, channels[key]), key
    # Nearest: no new class ids or edge values, depth values are original values / factor (0 stays 0).
    assert set(np.unique(scaled["semseg"])) <= set(np.unique(original["semseg"]))
    assert set(np.unique(scaled["edge"])) <= {0.0, 1.0}
    assert set((np.unique(scaled["depth"]) * factor).round(4)) <= {0.0, 1.0, 2.5, 4.0}
    assert np.isclose(scaled["depth"].max(), 4.0 / factor) and scaled["depth"].min() == 0
    # Normals are picked, not blended: every output vector is one of the input vectors (unit or zero).
    norms = np.linalg.norm(scaled["normals"], axis=-1)
    assert np.all((np.abs(norms - 1) < 1e-5) | (norms == 0))
    # The image is blended bilinearly: upscaling makes values between the originals.
    if factor > 1:
        assert not set(np.unique(scaled["image"])) <= set(np.unique(original["image"]))


def test_crop_is_crop_sized_with_pad_values_where_the_map_was_smaller():
    random.seed(3)
    original = _sample(_example(height=20, width=40))
    crop = ref.RandomCrop((32, 24), cat_max_ratio=1.0)(_sample(_example(height=20, width=40)))
    for key, value in crop.items():
        assert value.shape[:2] == (32, 24), key
    # Rows 20.. are padding; rows ..20 are one window of the original, the same for every map.
    lefts = [left for left in range(40 - 24 + 1) if np.array_equal(crop["image"][:20], original["image"][:, left:left + 24])]
    assert len(lefts) == 1
    left = lefts[0]
    for key in ("semseg", "depth", "normals", "edge"):
        np.testing.assert_array_equal(crop[key][:20], original[key][:, left:left + 24], err_msg=key)
    fills = {"image": 0, "semseg": 255, "edge": 255, "depth": 0, "normals": 0}
    for key, fill in fills.items():
        assert np.all(crop[key][20:] == fill), key


def test_crop_redraws_windows_where_one_class_dominates():
    example = _example(height=20, width=200)
    example["semseg"][:] = 1
    example["semseg"][:, 180:] = 2  # only windows reaching the right end have two classes in a 20-column crop
    hits = 0
    for seed in range(20):
        random.seed(seed)
        crop = ref.RandomCrop((20, 20), cat_max_ratio=0.75, tries=10)(_sample(example))
        hits += len(np.unique(crop["semseg"])) > 1
    assert hits >= 8  # one draw reaches the right end with p = 20/181 (~2 of 20 seeds); ten draws with p ~ 0.69


def test_photometric_keeps_the_image_in_range_and_labels_untouched():
    example = _example()
    changed = 0
    for seed in range(30):
        random.seed(seed)
        sample = _sample(example)
        labels = {key: value for key, value in sample.items() if key != "image"}
        out = ref.PhotoMetricDistortion()(sample)
        image = out["image"]
        assert image.dtype == np.float32 and image.shape == (20, 30, 3)
        assert np.all(np.isfinite(image)) and image.min() >= 0 and image.max() <= 255
        for key, value in labels.items():
            assert out[key] is value
            np.testing.assert_array_equal(value, _sample(example)[key], err_msg=key)
        changed += not np.allclose(image, example["image"])
    assert changed > 20  # all four steps are off with p = 1/16


def test_photometric_keeps_a_grey_image_grey():
    """Hue and saturation act through HSV; a grey pixel has no hue or saturation to change."""
    grey = np.repeat(np.linspace(0, 255, 60, dtype="float32").reshape(6, 10, 1), 3, axis=-1)
    for seed in range(16):
        random.seed(seed)
        image = ref.PhotoMetricDistortion()({"image": grey.copy()})["image"]
        np.testing.assert_allclose(image[..., 0], image[..., 1], atol=1e-3)
        np.testing.assert_allclose(image[..., 0], image[..., 2], atol=1e-3)


def test_dataloader_yields_crop_sized_float32_chw_batches():
    examples = [_example(height=24, width=36, seed=s) for s in range(5)]
    dataset = ref.ReferenceDataset(examples, ref.reference_transforms((32, 48)))
    loader = torch.utils.data.DataLoader(dataset, batch_size=2, shuffle=True, drop_last=True)
    batches = list(loader)
    assert len(batches) == 2
    channels = {"image": 3, "semseg": 1, "depth": 1, "normals": 3, "edge": 1}
    for batch in batches:
        assert set(batch) == set(channels)
        for key, value in batch.items():
            assert value.dtype == torch.float32 and tuple(value.shape) == (2, channels[key], 32, 48), key
        assert set(torch.unique(batch["semseg"]).tolist()) <= {0.0, 1.0, 2.0, 3.0, 4.0, 255.0}
        assert set(torch.unique(batch["edge"]).tolist()) <= {0.0, 1.0, 255.0}


def test_reference_speed_times_a_worker_process():
    examples = [_example(height=24, width=36, seed=s) for s in range(4)]
    record = ref.reference_speed(examples, crop=(16, 24), batch=2, batches=2, workers=1)
    assert record["workers"] == record["cores"] == 1 and record["batches_per_epoch"] == 2
    assert record["images_per_s"] > 0 and record["images_per_s_per_core"] == record["images_per_s"]
    with pytest.raises(ValueError, match=r"at least `batch` \(8\) examples"):
        ref.reference_speed(examples, crop=(16, 24), batch=8, batches=1, workers=0)


def test_missing_opencv_names_the_pip_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "cv2", None)
    with pytest.raises(ImportError, match="pip install torch opencv-python-headless"):
        ref.import_torch_and_cv2()
