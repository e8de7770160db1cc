"""Train augmentation ops: each op eagerly and inside Dataset.map, against values worked out by hand."""

import dataclasses

import numpy as np
import pytest
import tensorflow as tf

from keras_mtcl import tasks as T
from keras_mtcl.data import augment, augment_config
from keras_mtcl.preprocessing import IMAGENET_MEAN, IMAGENET_STD

pytestmark = pytest.mark.backend_independent

SEMSEG = T.semseg(num_classes=24)
DEPTH = T.depth()
NORMALS = T.normals()
EDGE = T.edge()
PARTS = T.human_parts()
TASKS = [SEMSEG, DEPTH, NORMALS, EDGE]


def _numpy(structure):
    return tf.nest.map_structure(lambda t: np.asarray(t), structure)


def _eager_and_mapped(fn, *args):
    """Runs `fn(*args)` eagerly and inside Dataset.map; checks both agree and returns the result."""
    eager = _numpy(fn(*args))
    mapped = _numpy(next(iter(tf.data.Dataset.from_tensors(args).map(tf.autograph.experimental.do_not_convert(fn)))))
    tf.nest.map_structure(np.testing.assert_array_equal, eager, mapped)
    return eager


def _mapped_over_seeds(fn, seeds):
    """`fn(seed)` inside one Dataset.map for each seed (one trace for many draws)."""
    ds = tf.data.Dataset.from_tensor_slices(np.asarray(seeds, "int64"))
    ds = ds.map(tf.autograph.experimental.do_not_convert(fn))
    return [_numpy(out) for out in ds]


def _small_example():
    """A 2x3 example with distinct values everywhere (asymmetric in both axes)."""
    semseg = np.array([[0, 1, 2], [3, 4, 255]], "int32")[..., None]
    depth = np.array([[2.0, 0.0, 255.0], [4.0, 1.0, 3.0]], "float32")[..., None]
    normals = np.zeros((2, 3, 3), "float32")
    normals[0, 0] = (0.6, 0.0, 0.8)
    normals[0, 1] = (-0.8, 0.6, 0.0)
    normals[1, 2] = (255.0, 255.0, 255.0)
    image = np.arange(18, dtype="float32").reshape(2, 3, 3) * 10
    edge = np.array([[1, 0, 255], [0, 1, 0]], "int32")[..., None]
    return {"image": image, "semseg": semseg, "depth": depth, "normals": normals, "edge": edge}


# ----------------------------------------------------------------------------- scale


def test_scale_by_two_repeats_labels_and_halves_depth():
    ex = _small_example()
    out = _eager_and_mapped(lambda e: augment.scale(e, TASKS, 2.0), ex)

    def up(a):
        return np.repeat(np.repeat(a, 2, 0), 2, 1)

    np.testing.assert_array_equal(out["semseg"], up(ex["semseg"]))
    np.testing.assert_array_equal(out["edge"], up(ex["edge"]))
    np.testing.assert_array_equal(out["normals"], up(ex["normals"]))
    # Depth / 2, with 0 (invalid) staying 0 and 255 (ignore) staying 255.
    expected_depth = up(np.array([[1.0, 0.0, 255.0], [2.0, 0.5, 1.5]], "float32")[..., None])
    np.testing.assert_array_equal(out["depth"], expected_depth)
    assert out["image"].shape == (4, 6, 3)


def test_scale_by_half_samples_pixel_centres():
    # 4x6 -> 2x3. Bilinear at half-pixel centres averages each 2x2 block; nearest takes
    # the lower-right pixel of each block (rows 1, 3; columns 1, 3, 5); depth doubles.
    image = np.arange(72, dtype="float32").reshape(4, 6, 3)
    semseg = np.arange(24, dtype="int32").reshape(4, 6, 1)
    depth = np.full((4, 6, 1), 1.5, "float32")
    ex = {"image": image, "semseg": semseg, "depth": depth}
    out = _eager_and_mapped(lambda e: augment.scale(e, TASKS, 0.5), ex)
    block_means = image.reshape(2, 2, 3, 2, 3).mean(axis=(1, 3))
    np.testing.assert_allclose(out["image"], block_means, rtol=1e-6)
    np.testing.assert_array_equal(out["semseg"][..., 0], [[7, 9, 11], [19, 21, 23]])
    np.testing.assert_array_equal(out["depth"], np.full((2, 3, 1), 3.0, "float32"))


def test_scale_size_is_floor_of_size_times_factor():
    ex = {"image": np.zeros((24, 32, 3), "float32"), "semseg": np.zeros((24, 32, 1), "int32")}
    out = _eager_and_mapped(lambda e: augment.scale(e, TASKS, 0.7), ex)
    # floor(24 * 0.7) = 16, floor(32 * 0.7) = 22.
    assert out["image"].shape == (16, 22, 3) and out["semseg"].shape == (16, 22, 1)


# ----------------------------------------------------------------------------- crop


def test_crop_cuts_the_same_window_from_every_tensor():
    ex = _small_example()
    out = _eager_and_mapped(lambda e: augment.crop(e, 0, 1, 2, 2), ex)
    for key in ex:
        np.testing.assert_array_equal(out[key], ex[key][0:2, 1:3])


def test_crop_window_stays_inside_and_covers_every_offset():
    tops, lefts = set(), set()
    for i in range(100):
        top, left, h, w = (int(v) for v in augment.random_crop_window([i, 7], (10, 12), (7, 10)))
        assert (h, w) == (7, 10)
        tops.add(top)
        lefts.add(left)
    # Offsets 0..3 and 0..2 are all drawn, nothing beyond.
    assert tops == {0, 1, 2, 3} and lefts == {0, 1, 2}


def test_crop_window_of_a_small_image_is_the_whole_image():
    top, left, h, w = (int(v) for v in augment.random_crop_window([1, 2], (5, 40), (8, 16)))
    assert (top, h, w) == (0, 5, 16) and 0 <= left <= 24


def _halves_label():
    # 24x64: columns 0..31 class 0, 32..63 class 1. A 24x24 window at `left` holds
    # max(0, left - 8) columns of class 1; the rule (two classes, none >= 75%) holds for
    # 7 <= left - 8 <= 17, i.e. left in 15..25: 11 of the 41 possible offsets.
    label = np.zeros((24, 64, 1), "int32")
    label[:, 32:] = 1
    return label


def _passes(left):
    return 15 <= left <= 25


def test_cat_max_ratio_retry_picks_a_window_where_no_class_reaches_75_percent():
    label = tf.constant(_halves_label())

    def lefts(ratio):
        fn = lambda seed: augment.random_crop_window(seed, (24, 64), (24, 24), label, SEMSEG, ratio, 10)  # noqa: E731
        eager = _numpy(fn(tf.constant([0, 3], tf.int64)))
        windows = _mapped_over_seeds(fn, [[s, 3] for s in range(40)])
        tf.nest.map_structure(np.testing.assert_array_equal, eager, windows[0])
        return [int(w[1]) for w in windows]

    with_rule = [_passes(left) for left in lefts(0.75)]
    without = [_passes(left) for left in lefts(1.0)]
    # One try passes with p = 11/41; ten tries fail together with p = (30/41)^10 = 0.044.
    assert sum(with_rule) >= 36
    assert sum(without) <= 20


def test_cat_max_ratio_gives_up_after_the_tries_on_a_single_class_label():
    label = np.zeros((24, 64, 1), "int32")
    top, left, h, w = (int(v) for v in augment.random_crop_window([5, 5], (24, 64), (24, 24), label, SEMSEG, 0.75, 10))
    assert (top, h, w) == (0, 24, 24) and 0 <= left <= 40


def test_cat_max_ratio_ignores_255_pixels():
    # Class 0 on 10 columns, class 1 on 10, the rest 255: 50/50 among valid pixels, so any
    # window holding the whole image passes at once, window or no window.
    label = np.full((4, 30, 1), 255, "int32")
    label[:, :10] = 0
    label[:, 10:20] = 1
    ok = augment._class_ratio_ok(tf.constant(label), SEMSEG, 0.75)
    assert bool(ok)
    label[:, 10:13] = 1
    label[:, 13:20] = 255
    # Now 10 vs 3 columns: class 0 has 10/13 = 77% >= 75%.
    assert not bool(augment._class_ratio_ok(tf.constant(label), SEMSEG, 0.75))


def test_cat_max_ratio_counts_the_valid_pixels_of_the_task_rule():
    # The task's validity rule (as in the loss and metrics): ids >= C are not counted either.
    label = np.full((4, 30, 1), 30, "int32")  # 30 >= 24 classes of SEMSEG
    label[:, :10] = 0
    label[:, 10:20] = 1
    ok = _eager_and_mapped(lambda x: augment._class_ratio_ok(x, SEMSEG, 0.75), tf.constant(label))
    assert bool(ok)
    two = T.TaskSpec("semseg", "classes", channels=2)
    label[:, 20:] = 2  # not a class of `two`: 10 vs 10 columns
    assert bool(augment._class_ratio_ok(tf.constant(label), two, 0.75))
    three = T.TaskSpec("semseg", "classes", channels=3)
    label[:, 10:14] = 2  # class 2 of `three`: 10 vs 6 vs 14 columns
    assert bool(augment._class_ratio_ok(tf.constant(label), three, 0.75))
    # For `two`, 10 vs 6 columns: class 0 has 10/16 = 62.5 %; at 60 % the rule refuses it.
    assert not bool(augment._class_ratio_ok(tf.constant(label), two, 0.6))


# ----------------------------------------------------------------------------- flip


def test_flip_mirrors_everything_and_negates_normals_x_but_not_255():
    ex = _small_example()
    out = _eager_and_mapped(lambda e: augment.flip_left_right(e, TASKS), ex)
    for key in ("image", "semseg", "depth", "edge"):
        np.testing.assert_array_equal(out[key], ex[key][:, ::-1])
    normals = out["normals"]
    np.testing.assert_array_equal(normals[0, 2], np.float32([-0.6, 0.0, 0.8]))  # was (0.6, 0, 0.8) at column 0
    np.testing.assert_array_equal(normals[0, 1], np.float32([0.8, 0.6, 0.0]))
    np.testing.assert_array_equal(normals[1, 0], [255.0, 255.0, 255.0])  # ignore stays ignore
    np.testing.assert_array_equal(normals[0, 0], [0.0, 0.0, 0.0])


def test_random_flip_rate_follows_probability():
    ex = {"image": np.arange(6, dtype="float32").reshape(1, 2, 3)}

    def flipped(seed, p):
        out = augment.random_flip(ex, TASKS, [seed, 1], p)
        return bool(np.asarray(out["image"])[0, 0, 0] == 3.0)

    rates = {p: sum(flipped(s, p) for s in range(200)) for p in (0.0, 0.5, 1.0)}
    assert rates[0.0] == 0 and rates[1.0] == 200
    assert 70 <= rates[0.5] <= 130  # binomial(200, 0.5): mean 100, sd 7


def _random_example(rng, height, width):
    """A random example of every task in TASKS, labels with some 255 pixels."""
    semseg = rng.integers(0, 24, (height, width, 1)).astype("int32")
    semseg[rng.random((height, width)) < 0.1] = 255
    normals = rng.uniform(-1, 1, (height, width, 3)).astype("float32")
    return {
        "image": rng.integers(0, 256, (height, width, 3)).astype("uint8"),
        "semseg": semseg,
        "depth": rng.uniform(0.5, 9, (height, width, 1)).astype("float32"),
        "normals": normals,
        "edge": rng.integers(0, 2, (height, width, 1)).astype("int32"),
    }


@pytest.mark.parametrize("case", range(12))
def test_scale_crop_flip_equals_scale_then_crop_then_flip(case):
    rng = np.random.default_rng(case)
    height, width = (int(v) for v in rng.integers(3, 40, 2))
    example = _random_example(rng, height, width)
    factor = float(rng.uniform(0.3, 2.5))
    new_h, new_w = (int(v) for v in augment.scaled_size((height, width), factor))
    crop_h, crop_w = int(rng.integers(1, new_h + 1)), int(rng.integers(1, new_w + 1))
    top, left = int(rng.integers(0, new_h - crop_h + 1)), int(rng.integers(0, new_w - crop_w + 1))
    flip = bool(case % 2)
    working = augment.to_working_dtypes(example, TASKS)
    expected = augment.crop(augment.scale(working, TASKS, factor), top, left, crop_h, crop_w)
    if flip:
        expected = augment.flip_left_right(expected, TASKS)
    out = _eager_and_mapped(
        lambda e: augment.scale_crop_flip(e, TASKS, factor, (top, left, crop_h, crop_w), tf.constant(flip)), example
    )
    tf.nest.map_structure(np.testing.assert_array_equal, _numpy(expected), out)


@pytest.mark.parametrize("case", range(12))
def test_scaled_class_ratio_rule_decides_as_on_the_scaled_window(case):
    rng = np.random.default_rng(100 + case)
    height, width = (int(v) for v in rng.integers(2, 30, 2))
    # Few classes and large patches, so that both verdicts occur.
    label = np.repeat(rng.integers(0, 3, (height, 1, 1)), width, axis=1).astype("int32")
    label[rng.random((height, width)) < 0.2] = rng.choice([1, 255])
    factor = float(rng.uniform(0.3, 2.5))
    new_size = augment.scaled_size((height, width), factor)
    new_h, new_w = (int(v) for v in new_size)
    window = (int(rng.integers(0, new_h)), int(rng.integers(0, new_w)))
    window += (int(rng.integers(1, new_h - window[0] + 1)), int(rng.integers(1, new_w - window[1] + 1)))
    top, left, h, w = window
    scaled = tf.image.resize(label, new_size, method="nearest")[top : top + h, left : left + w]
    for max_ratio in (0.5, 0.75, 0.9):
        expected = bool(augment._class_ratio_ok(scaled, SEMSEG, max_ratio))
        assert bool(augment._scaled_class_ratio_ok(tf.constant(label), SEMSEG, max_ratio, window, new_size)) == expected


def test_scaled_class_ratio_rule_weights_pixels_by_their_repeats():
    # Rows of class 0 and 1 scaled from 2x4 to 3x6: nearest rows floor((y + 0.5) * 2 / 3) = 0, 1, 1,
    # so class 1 covers 2/3 of the scaled window (1/2 of the unscaled label).
    label = tf.constant(np.array([[0] * 4, [1] * 4], "int32")[..., None])
    window, new_size = (0, 0, 3, 6), augment.scaled_size((2, 4), 1.5)
    assert [int(v) for v in new_size] == [3, 6]
    assert not bool(augment._scaled_class_ratio_ok(label, SEMSEG, 0.6, window, new_size))
    assert bool(augment._scaled_class_ratio_ok(label, SEMSEG, 0.7, window, new_size))


# ----------------------------------------------------------------------------- photometric


def _pixel(*rgb):
    return np.array(rgb, "float32").reshape(1, 1, 3)


def test_brightness_and_contrast_clip_to_0_255():
    out = _eager_and_mapped(lambda x: augment.adjust_brightness(x, 32.0), _pixel(10, 100, 240))
    np.testing.assert_allclose(out.ravel(), [42, 132, 255])
    out = _eager_and_mapped(lambda x: augment.adjust_brightness(x, -32.0), _pixel(10, 100, 240))
    np.testing.assert_allclose(out.ravel(), [0, 68, 208])
    out = _eager_and_mapped(lambda x: augment.adjust_contrast(x, 1.5), _pixel(10, 100, 240))
    np.testing.assert_allclose(out.ravel(), [15, 150, 255])


def test_saturation_moves_colours_towards_grey():
    # (200, 100, 100): V = 200, S = 0.5. S -> 0.25 gives min = 200 * 0.75 = 150.
    out = _eager_and_mapped(lambda x: augment.adjust_saturation(x, 0.5), _pixel(200, 100, 100))
    np.testing.assert_allclose(out.ravel(), [200, 150, 150], atol=1e-3)
    # Grey has no saturation to scale.
    out = augment.adjust_saturation(_pixel(90, 90, 90), 1.5)
    np.testing.assert_allclose(np.asarray(out).ravel(), [90, 90, 90], atol=1e-3)


def test_hue_shift_is_in_opencv_units():
    # 18 units = 36 degrees: red (H 0) -> H 36: R = V, G = V * 36/60 = 153, B = 0.
    out = _eager_and_mapped(lambda x: augment.adjust_hue(x, 18), _pixel(255, 0, 0))
    np.testing.assert_allclose(out.ravel(), [255, 153, 0], atol=1e-2)
    # 90 units = half a turn: red -> cyan; -60 units = -120 degrees: red -> blue.
    np.testing.assert_allclose(np.asarray(augment.adjust_hue(_pixel(255, 0, 0), 90)).ravel(), [0, 255, 255], atol=1e-2)
    np.testing.assert_allclose(np.asarray(augment.adjust_hue(_pixel(255, 0, 0), -60)).ravel(), [0, 0, 255], atol=1e-2)


def test_photometric_parameters_have_reference_ranges_and_rates():
    draws = _mapped_over_seeds(augment.sample_photometric, [[s, 9] for s in range(400)])
    for key in ("brightness_on", "contrast_first", "contrast_on", "saturation_on", "hue_on"):
        assert 160 <= sum(bool(d[key]) for d in draws) <= 240, key  # binomial(400, .5): sd 10
    assert all(-32 <= d["brightness"] <= 32 for d in draws)
    assert all(0.5 <= d["contrast"] <= 1.5 and 0.5 <= d["saturation"] <= 1.5 for d in draws)
    hues = {int(d["hue"]) for d in draws}
    assert hues == set(range(-18, 18))  # integers -18..17, as random.randint(-18, 17)


def _params(**on):
    params = {
        "brightness_on": False, "brightness": 32.0, "contrast_first": True, "contrast_on": False,
        "contrast": 1.5, "saturation_on": False, "saturation": 0.5, "hue_on": False, "hue": 0,
    }  # fmt: skip
    params.update(on)
    return {k: tf.constant(v) for k, v in params.items()}


def test_photometric_order_brightness_then_contrast_then_saturation():
    pixel = _pixel(100, 100, 100)
    # Brightness before contrast: (100 + 32) * 1.5 = 198 (not 100 * 1.5 + 32 = 182).
    out = augment.apply_photometric(pixel, _params(brightness_on=True, contrast_on=True))
    np.testing.assert_allclose(np.asarray(out).ravel(), [198, 198, 198], atol=1e-3)
    # Contrast first: (200,100,100) * 1.5 -> (255,150,150); saturation 0.5: S = 105/255 -> half,
    # min = 255 * (1 - 52.5/255) = 202.5.
    red = _pixel(200, 100, 100)
    first = augment.apply_photometric(red, _params(contrast_on=True, saturation_on=True))
    np.testing.assert_allclose(np.asarray(first).ravel(), [255, 202.5, 202.5], atol=1e-2)
    # Contrast last: saturation -> (200,150,150), then * 1.5 -> (255, 225, 225).
    last = augment.apply_photometric(red, _params(contrast_on=True, saturation_on=True, contrast_first=False))
    np.testing.assert_allclose(np.asarray(last).ravel(), [255, 225, 225], atol=1e-2)
    # Everything off: untouched.
    np.testing.assert_array_equal(np.asarray(augment.apply_photometric(red, _params())), red)


# ----------------------------------------------------------------------------- finishing


def test_normalize_uses_imagenet_statistics():
    out = _eager_and_mapped(lambda x: augment.normalize(x), _pixel(0, 0, 0))
    np.testing.assert_allclose(out.ravel(), [-0.485 / 0.229, -0.456 / 0.224, -0.406 / 0.225], rtol=1e-6)
    out = augment.normalize(_pixel(255, 255, 255), mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    np.testing.assert_allclose(np.asarray(out).ravel(), [1, 1, 1], rtol=1e-6)


@pytest.mark.parametrize(
    "factor, window, flip, photometric",
    [(1.0, (3, 4, 20, 28), False, True), (1.7, (17, 21, 20, 28), True, True), (0.5, (0, 0, 12, 16), True, False)],
)
def test_transform_window_equals_the_separate_steps(factor, window, flip, photometric):
    # A 24x32 example of random pixels and labels, cropped to 20x28 (the last case scaled below it: padded).
    rng = np.random.default_rng(3)
    ex = {
        "image": rng.integers(0, 256, (24, 32, 3)).astype("uint8"),
        "semseg": rng.integers(0, 24, (24, 32, 1)).astype("uint8"),
        "depth": rng.uniform(0.5, 9, (24, 32, 1)).astype("float32"),
        "normals": rng.uniform(-1, 1, (24, 32, 3)).astype("float32"),
        "edge": rng.integers(0, 2, (24, 32, 1)).astype("uint8"),
    }
    params = _params(brightness_on=True, brightness=-20.0, contrast_on=True, contrast=1.3, contrast_first=False,
                     saturation_on=True, saturation=0.7, hue_on=True, hue=-9) if photometric else None  # fmt: skip
    flip = tf.constant(flip)
    pads = {"image": 3.0, "depth": 7.0}
    fn = lambda e: augment.transform_window(e, TASKS, factor, window, flip, (20, 28), params, pad_values=pads)  # noqa: E731
    out = _eager_and_mapped(fn, ex)

    steps = augment.scale_crop_flip(ex, TASKS, factor, window, flip)
    if photometric:
        steps["image"] = augment.apply_photometric(steps["image"], params)
    steps["image"] = augment.normalize(steps["image"])
    expected, _, _ = augment.pad_to_size(steps, TASKS, (20, 28), pads)
    for task in TASKS:
        np.testing.assert_array_equal(out[task.name], expected[task.name], err_msg=task.name)
    # The image takes the same source taps and weights; XLA may round each float32 step of the interpolation,
    # the HSV conversions and the normalisation differently: about ten roundings of values <= 255, the hue's
    # scaled by 6 (its sextant), bound by 64 ulps of 255 (1e-3), divided by 255 * std (>= 0.224).
    atol = 64 * np.spacing(np.float32(255)) / (255 * 0.224)
    np.testing.assert_allclose(out["image"], expected["image"], rtol=0, atol=atol)


def test_pad_centres_and_fills_each_task_with_its_invalid_value():
    ex = _small_example()
    fn = lambda e: augment.pad_to_size(e, TASKS, (5, 6))  # noqa: E731
    out, top, left = _eager_and_mapped(fn, ex)
    # 2x3 -> 5x6: 3 extra rows split 1 / 2, 3 extra columns split 1 / 2.
    assert (int(top), int(left)) == (1, 1)
    fills = {"image": 0.0, "semseg": 255, "edge": 255, "depth": 0.0, "normals": 0.0}
    for key, fill in fills.items():
        assert out[key].shape[:2] == (5, 6)
        np.testing.assert_array_equal(out[key][1:3, 1:4], ex[key])
        border = np.ones((5, 6), bool)
        border[1:3, 1:4] = False
        assert np.all(out[key][border] == fill), key
    # A larger example is kept as it is; overrides replace the defaults.
    big, top, left = augment.pad_to_size(ex, TASKS, (1, 1))
    assert (int(top), int(left)) == (0, 0) and big["image"].shape == (2, 3, 3)
    custom, _, _ = augment.pad_to_size(ex, TASKS, (2, 4), {"image": -1.0, "depth": 255.0})
    assert float(custom["image"][0, 3, 0]) == -1.0 and float(custom["depth"][0, 3, 0]) == 255.0


def test_empty_human_parts_become_ignore_and_others_stay():
    empty = np.array([[0, 255], [0, 0]], "int32")[..., None]
    person = np.array([[0, 255], [3, 0]], "int32")[..., None]
    ex = {"image": np.zeros((2, 2, 3), "float32"), "human_parts": empty, "semseg": np.zeros((2, 2, 1), "int32")}
    out = _eager_and_mapped(lambda e: augment.ignore_empty(e, [PARTS, SEMSEG]), ex)
    np.testing.assert_array_equal(out["human_parts"], np.full((2, 2, 1), 255))
    np.testing.assert_array_equal(out["semseg"], ex["semseg"])  # not a listed task
    ex["human_parts"] = person
    out = augment.ignore_empty(ex, [PARTS, SEMSEG])
    np.testing.assert_array_equal(np.asarray(out["human_parts"]), person)


# ----------------------------------------------------------------------------- full transform

# Block scene: 32x48 image of 8x8 blocks, block id k = 6 * row + col (0..23), each with its own
# colour. Every label is a function of k, so alignment is checkable at every pixel.
PALETTE = np.array([[10 + 9 * k, 250 - 7 * k, (53 * k) % 200 + 20] for k in range(24)], "float32")


def _block_example():
    ids = np.arange(24).reshape(4, 6).repeat(8, 0).repeat(8, 1)
    normals = np.zeros((32, 48, 3), "float32")
    normals[...] = (0.6, 0.0, 0.8)
    return {
        "image": PALETTE[ids].astype("uint8"),
        "semseg": ids[..., None].astype("uint8"),
        "depth": (ids[..., None] + 1).astype("float32"),
        "normals": normals,
        "edge": (ids[..., None] % 2).astype("uint8"),
    }


def _transform(seed, photometric=False, **options):
    config = augment.AugmentConfig(photometric=photometric, **options)
    fn = lambda e: augment.train_transform(e, TASKS, seed, (24, 32), augment=config)  # noqa: E731
    return _eager_and_mapped(fn, _block_example())


def _transforms(seeds, photometric=False, config=None):
    config = config or augment.AugmentConfig(photometric=photometric)
    example = {k: tf.constant(v) for k, v in _block_example().items()}
    fn = lambda seed: augment.train_transform(example, TASKS, seed, (24, 32), augment=config)  # noqa: E731
    return _mapped_over_seeds(fn, seeds)


def _interior(label):
    """Pixels whose 3x3 neighbourhood holds one valid class."""
    lab = np.pad(label[..., 0], 1, constant_values=-1)
    h, w = label.shape[:2]
    windows = np.stack([lab[dy : dy + h, dx : dx + w] for dy in range(3) for dx in range(3)])
    return np.all(windows == label[..., 0], axis=0) & (label[..., 0] != 255)


def test_train_transform_keeps_image_and_every_label_aligned():
    mean, std = np.array(IMAGENET_MEAN), np.array(IMAGENET_STD)
    interior_total, flips = 0, set()
    # The first draw also runs eagerly inside _transform, which checks eager == mapped.
    _transform([0, 0])
    for image, labels in _transforms([[s, 0] for s in range(16)]):
        assert image.shape == (24, 32, 3) and image.dtype == np.float32
        ids = labels["semseg"][..., 0]
        valid = ids != 255
        assert labels["semseg"].dtype == np.int32 and labels["edge"].dtype == np.int32
        # Edge is id % 2 wherever the semseg is valid, 255 elsewhere (padding).
        np.testing.assert_array_equal(labels["edge"][..., 0][valid], ids[valid] % 2)
        assert np.all(labels["edge"][..., 0][~valid] == 255)
        # Depth is (id + 1) / s with one s in [0.5, 2] for the whole example; 0 in padding.
        inv_scale = labels["depth"][..., 0][valid] / (ids[valid] + 1)
        assert 0.5 - 1e-6 <= inv_scale.min() and inv_scale.max() <= 2 + 1e-6
        np.testing.assert_allclose(inv_scale, inv_scale[0], rtol=1e-6)
        assert np.all(labels["depth"][..., 0][~valid] == 0)
        # Flip from the layout (ids grow left to right unless mirrored) agrees with normals x.
        rows = [r[r != 255] for r in ids]
        steps = np.concatenate([np.diff(r) for r in rows if len(r) > 1])
        mirrored = bool(np.all(steps <= 0) and np.any(steps < 0))
        assert mirrored or bool(np.all(steps >= 0))
        expected_x = -0.6 if mirrored else 0.6
        np.testing.assert_allclose(labels["normals"][valid], np.broadcast_to([expected_x, 0, 0.8], (valid.sum(), 3)))
        assert np.all(labels["normals"][~valid] == 0)
        flips.add(mirrored)
        # The image has the block's colour on the label's interior pixels; 0 in padding.
        inside = _interior(labels["semseg"])
        expected = (PALETTE[ids[inside]] / 255 - mean) / std
        np.testing.assert_allclose(image[inside], expected, atol=1e-3)
        assert np.all(image[~valid] == 0)
        interior_total += inside.sum()
    assert flips == {True, False}
    assert interior_total > 1000


def test_train_transform_is_reproducible_and_photometric_touches_only_the_image():
    seeds = [[s, 2] for s in range(8)]
    first, again, plain = _transforms(seeds, True), _transforms(seeds, True), _transforms(seeds, False)
    tf.nest.map_structure(np.testing.assert_array_equal, first, again)
    assert not np.array_equal(first[0][0], first[1][0])  # another seed, another transform
    changed = 0
    for (image_on, labels_on), (image_off, labels_off) in zip(first, plain):
        tf.nest.map_structure(np.testing.assert_array_equal, labels_on, labels_off)
        changed += not np.allclose(image_on, image_off)
    assert changed >= 4  # each distortion is on with p = 0.5, so nearly every draw changes the image


def test_train_transform_pads_an_image_smaller_than_the_crop():
    # scale fixed at 0.5: 32x48 -> 16x24, centred in 24x32 at rows 4..19, columns 4..27.
    image, labels = _transform([0, 0], scale_range=(0.5, 0.5), flip_probability=0.0)
    assert np.all(labels["semseg"][4:20, 4:28] != 255)
    assert np.all(labels["semseg"][:4] == 255) and np.all(labels["semseg"][20:] == 255)
    assert np.all(labels["semseg"][:, :4] == 255) and np.all(labels["semseg"][:, 28:] == 255)
    # Nearest at half-pixel centres takes odd rows/columns: block of (2y+1, 2x+1).
    expected = np.arange(24).reshape(4, 6).repeat(4, 0).repeat(4, 1)
    np.testing.assert_array_equal(labels["semseg"][4:20, 4:28, 0], expected)
    np.testing.assert_allclose(labels["depth"][4:20, 4:28, 0], (expected + 1) * 2.0)


def test_train_transform_makes_crops_without_parts_ignored():
    ex = _block_example()
    parts = np.zeros((32, 48, 1), "uint8")
    ex["human_parts"] = parts
    image, labels = augment.train_transform(ex, [SEMSEG, PARTS], [1, 1], (24, 32))
    assert np.all(np.asarray(labels["human_parts"]) == 255)
    parts[...] = 2
    image, labels = augment.train_transform(ex, [SEMSEG, PARTS], [1, 1], (24, 32))
    values = set(np.unique(np.asarray(labels["human_parts"])))
    assert 2 in values and values <= {2, 255}


def test_train_transform_off_crops_without_scaling_flipping_or_colour():
    ex = _block_example()
    mean, std = np.array(IMAGENET_MEAN), np.array(IMAGENET_STD)
    offsets = [(top, left) for top in range(9) for left in range(17)]
    windows = set()
    for image, labels in _transforms([[s, 4] for s in range(6)], config=augment.AugmentConfig.off()):
        # Scale 1 and no flip: every label is one 24x32 window of the 32x48 scene, values unchanged.
        found = [(t, c) for t, c in offsets if np.array_equal(labels["semseg"], ex["semseg"][t : t + 24, c : c + 32])]
        assert len(found) == 1
        top, left = found[0]
        window = (slice(top, top + 24), slice(left, left + 32))
        for key in ("depth", "normals", "edge"):
            np.testing.assert_array_equal(labels[key], ex[key][window])
        # No photometric distortion: the image is the same window, normalised.
        np.testing.assert_allclose(image, (ex["image"][window] / 255 - mean) / std, atol=1e-5)
        windows.add((top, left))
    assert len(windows) > 1  # the crop still moves


# ----------------------------------------------------------------------------- options


@pytest.mark.parametrize(
    "options, name",
    [
        ({"crop_size": (24,)}, "crop_size"),
        ({"crop_size": (0, 32)}, "crop_size"),
        ({"crop_size": (24.5, 32)}, "crop_size"),
        ({"augment": False}, "augment"),
        ({"augment": augment.AugmentConfig(ratio_task="depth")}, "ratio_task"),
        ({"augment": augment.AugmentConfig(ratio_task="sky")}, "ratio_task"),
        ({"mean": (0.5, 0.5)}, "mean"),
        ({"std": (0.5, 0.0, 0.5)}, "std"),
        ({"pad_values": {"sky": 0}}, "pad_values"),
        ({"pad_values": {"depth": "x"}}, "pad_values"),
    ],
)
def test_invalid_options_name_the_argument(options, name):
    options = {"crop_size": (24, 32), "augment": augment.AugmentConfig(), **options}
    with pytest.raises(ValueError, match=rf"`{name}`.*Received: {name}="):
        augment.check_train_options(TASKS, **options)
    example = _block_example()
    with pytest.raises(ValueError, match=rf"`{name}`.*Received: {name}="):
        augment.train_transform(example, TASKS, [0, 0], **options)


@pytest.mark.parametrize(
    "field, value",
    [
        ("scale_range", (2.0, 0.5)),
        ("scale_range", (0.0, 1.0)),
        ("scale_range", 1.0),
        ("flip_probability", 1.5),
        ("flip_probability", "half"),
        ("photometric", "yes"),
        ("cat_max_ratio", 0.0),
        ("cat_max_ratio", 2.0),
        ("ratio_task", 3),
        ("crop_tries", 0),
        ("crop_tries", 2.5),
        ("brightness_delta", -1),
        ("brightness_delta", float("nan")),
        ("contrast_range", (1.5, 0.5)),
        ("saturation_range", "ab"),
        ("saturation_range", (-0.5, 1.0)),
        ("hue_delta", 2.5),
        ("hue_delta", 91),
        ("hue_delta", True),
        ("empty_ignore_tasks", "human_parts"),
        ("empty_ignore_tasks", (3,)),
    ],
)
def test_augment_config_refuses_a_bad_value_naming_the_field(field, value):
    with pytest.raises(ValueError, match=rf"`{field}`.*Received: {field}="):
        augment.AugmentConfig(**{field: value})


def test_augment_config_defaults_are_the_reference_recipe_in_canonical_form():
    config = augment.AugmentConfig()
    assert config.scale_range == augment_config.SCALE_RANGE and config.crop_tries == augment.CROP_TRIES
    assert config.empty_ignore_tasks == ("human_parts",) and config.ratio_task == "semseg"
    # Lists and ints become tuples and floats: equal options, equal (hashable) configs.
    loose = augment.AugmentConfig(scale_range=[1, 2], contrast_range=np.array([0.5, 1.5]), flip_probability=1,
                                  empty_ignore_tasks=["human_parts"], hue_delta=18.0)  # fmt: skip
    assert loose.scale_range == (1.0, 2.0) and isinstance(loose.scale_range[0], float)
    assert loose.contrast_range == (0.5, 1.5) and type(loose.contrast_range[0]) is float
    assert loose.empty_ignore_tasks == ("human_parts",) and type(loose.hue_delta) is int
    assert hash(loose) == hash(augment.AugmentConfig(scale_range=(1.0, 2.0), flip_probability=1.0))
    assert len({config, augment.AugmentConfig(), augment.AugmentConfig.off()}) == 2


def test_augment_config_is_frozen_and_replace_checks_again():
    config = augment.AugmentConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.flip_probability = 0.0
    changed = dataclasses.replace(config, flip_probability=0, photometric=False)
    assert changed.flip_probability == 0.0 and not changed.photometric and config.photometric
    with pytest.raises(ValueError, match=r"`crop_tries`.*Received: crop_tries=-1"):
        dataclasses.replace(config, crop_tries=-1)


def test_augment_config_off_keeps_the_crop_rules():
    off = augment.AugmentConfig.off()
    assert (off.scale_range, off.flip_probability, off.photometric) == ((1.0, 1.0), 0.0, False)
    plain = dataclasses.replace(augment.AugmentConfig(), scale_range=(1, 1), flip_probability=0, photometric=False)
    assert off == plain
