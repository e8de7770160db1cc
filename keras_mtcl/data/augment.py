"""Train-time augmentation of multi-task examples, as TensorFlow ops for tf.data.

These ops run inside `tf.data` on every Keras backend. One random transform is
sampled per example (from an explicit stateless seed) and applied to the image
and to every label, each label by the rule of its task kind:

| step        | image                  | classes / binary | depth             | normals            |
|-------------|------------------------|------------------|-------------------|--------------------|
| scale s     | bilinear               | nearest          | nearest, then / s | nearest            |
| crop        | same window            | same window      | same window       | same window        |
| flip        | mirrored               | mirrored         | mirrored          | mirrored, x negated|
| photometric | distorted              | untouched        | untouched         | untouched          |
| normalise   | (x / 255 - mean) / std | -                | -                 | -                  |
| pad         | 0                      | ignore (255)     | 0 (invalid)       | zero vector        |

The order and parameters follow the ATRC / InvPT training recipe (the
defaults of `AugmentConfig` (`keras_mtcl.data.augment_config`), which holds every option): random scale s in
[0.5, 2.0] (new size `floor(size * s)`), random crop (NYUD 448x576, PASCAL
512x512) retried up to 10 times until no single semseg class covers >= 75%
of the valid pixels of the crop, horizontal flip with p = 0.5, photometric
distortion, ImageNet normalisation, centred padding to the crop size (an
image smaller than the crop after scaling keeps its size through the crop
and is padded here), and ignore regions: a `human_parts` crop without any
part pixel becomes all-ignore.

Label values that mark invalid pixels survive every step: depth 0 stays 0 and
255 stays 255 (not divided by s); normals equal to 255 keep their sign on a
flip; the zero normal stays zero.

Two deliberate, small differences from the OpenCV reference:
labels are resampled by nearest neighbour with half-pixel centres (the same
pixel grid as the bilinear image, where OpenCV's INTER_NEAREST is shifted by
up to half a source pixel), and the photometric distortion works in float32
with clipping to [0, 255] instead of truncating to uint8 after each step.

`train_transform` runs scale, crop, flip, photometric distortion,
normalisation and padding as one XLA-compiled function (`transform_window`)
that computes each output pixel straight from the source; the separate ops
below (`scale_crop_flip`, `apply_photometric`, `normalize`, `pad_to_size`)
define what it computes, and tests hold the two equal (labels exactly, the
image up to float rounding).

Each label's rules come from its task's kind (`keras_mtcl.kinds`): working
dtype (`label_dtype`), padding (`pad_value`), the value change of a scale
(`scale`) and of a flip (`flip`), and which pixels are valid (`valid_mask`).

Examples inside this module are dicts with `"image"` (H, W, 3) float32 and one
label per task in its working dtype (the kind's `label_dtype`).
"""

from __future__ import annotations

import functools
import types
from typing import Mapping, Sequence

import tensorflow as tf
import tensorflow.experimental.numpy as tnp

from keras_mtcl.data.augment_config import (
    BRIGHTNESS_DELTA, CAT_MAX_RATIO, CONTRAST_RANGE, CROP_TRIES, EMPTY_IGNORE_TASKS, FLIP_PROBABILITY,
    HUE_DELTA, SATURATION_RANGE, AugmentConfig, _pair,
)
from keras_mtcl.preprocessing import IMAGENET_MEAN, IMAGENET_STD
from keras_mtcl.tasks import TaskSpec

# Crop sizes (height, width) of the reference recipes.
CROP_SIZES = types.MappingProxyType({"nyud": (448, 576), "pascal": (512, 512)})


def _tasks_in(example: Mapping[str, tf.Tensor], tasks: Sequence[TaskSpec]) -> list[TaskSpec]:
    return [t for t in tasks if t.name in example]


def to_working_dtypes(example: Mapping[str, tf.Tensor], tasks: Sequence[TaskSpec]) -> dict[str, tf.Tensor]:
    """Keeps `"image"` and the tasks' labels; image to float32, labels to their kind's `label_dtype`.

    Args:
        example: dict with `"image"` (H, W, 3) (uint8 0..255 or float) and labels.
        tasks: the tasks to keep; other keys are dropped.
    """
    out = {"image": tf.cast(example["image"], tf.float32)}
    for task in _tasks_in(example, tasks):
        out[task.name] = tf.cast(example[task.name], task.label_kind.label_dtype)
    return out


def pad_fills(tasks: Sequence[TaskSpec], pad_values: Mapping[str, float] | None = None) -> dict[str, float]:
    """{"image": fill, task: fill}: `pad_values` where given, else image 0 and each label its kind's `pad_value`."""
    pad_values = dict(pad_values or {})
    fills = {"image": float(pad_values.get("image", 0.0))}
    for task in tasks:
        fills[task.name] = float(pad_values.get(task.name, task.label_kind.pad_value(task.ignore_value)))
    return fills


# ----------------------------------------------------------------------------- geometry


def scaled_size(size, factor) -> tf.Tensor:
    """(floor(H * factor), floor(W * factor)) int32, at least 1, of a (H, W) `size`."""
    size = tf.cast(size, tf.float32)
    return tf.maximum(tf.cast(tf.floor(size * tf.cast(factor, tf.float32)), tf.int32), 1)


def _nearest_source(start, count, in_size, out_size):
    """Source index of output pixels start..start+count-1 of a nearest resize in_size -> out_size.

    The arithmetic of tf.image.resize's kernel (half-pixel centres, float32),
    so gathering with these indices equals resizing, then cropping.
    """
    scale = tf.cast(in_size, tf.float32) / tf.cast(out_size, tf.float32)
    x = tf.cast(tf.range(start, start + count), tf.float32)
    return tf.minimum(tf.cast(tf.floor((x + 0.5) * scale), tf.int32), in_size - 1)


def scale(example: Mapping[str, tf.Tensor], tasks: Sequence[TaskSpec], factor) -> dict[str, tf.Tensor]:
    """Resizes an example by `factor` to `floor(H * factor) x floor(W * factor)`.

    The image is resized bilinearly, every label by nearest neighbour, then
    changed by its kind's `scale` rule where it has one (depth is divided by
    `factor`: an object seen `factor` times larger is that much closer; the
    ignore value stays).

    Args:
        example: dict with `"image"` (H, W, 3) float32 and labels (H, W, C).
        tasks: specs of the labels in `example`.
        factor: scalar scale factor (> 0).

    Returns:
        A new dict with every tensor of size (floor(H * factor), floor(W * factor)).
    """
    factor = tf.cast(factor, tf.float32)
    new_size = scaled_size(tf.shape(example["image"])[:2], factor)
    out = dict(example)
    out["image"] = tf.image.resize(example["image"], new_size, method="bilinear")
    for task in _tasks_in(example, tasks):
        label = tf.image.resize(example[task.name], new_size, method="nearest")
        if task.label_kind.scale is not None:
            label = task.label_kind.scale(label, factor, task.ignore_value)
        out[task.name] = label
    return out


def crop(example: Mapping[str, tf.Tensor], top, left, height, width) -> dict[str, tf.Tensor]:
    """Cuts the window [top, top + height) x [left, left + width) out of every tensor."""
    return {key: value[top : top + height, left : left + width] for key, value in example.items()}


def _class_ratio_ok(label: tf.Tensor, task: TaskSpec, max_ratio: float) -> tf.Tensor:
    """True where at least two classes are present and none covers >= max_ratio of the valid pixels.

    Valid pixels are those of the task's kind rule (`TaskSpec.valid_mask`), as in the loss and metrics.
    """
    flat = tf.reshape(label, [-1, 1])
    valid = tf.boolean_mask(flat[:, 0], task.valid_mask(flat, xp=tnp))
    return _counts_ok(tf.math.bincount(valid, minlength=1, dtype=tf.int32), max_ratio)


def _counts_ok(counts: tf.Tensor, max_ratio: float) -> tf.Tensor:
    """The ratio rule on per-class pixel counts: two classes or more, none with >= max_ratio of the total."""
    present = tf.math.count_nonzero(counts)
    total = tf.maximum(tf.reduce_sum(counts), 1)
    ratio = tf.cast(tf.reduce_max(counts), tf.float32) / tf.cast(total, tf.float32)
    return tf.logical_and(present > 1, ratio < max_ratio)


def _scaled_class_ratio_ok(label, task, max_ratio, window, new_size) -> tf.Tensor:
    """`_class_ratio_ok` of `window` (top, left, height, width) of `label` nearest-resized to `new_size`.

    Counts each source pixel of the window as often as the resize repeats it
    (its row's times its column's), so the counts, and the answer, are those
    of the resized window without resizing anything.
    """
    top, left, height, width = window
    size = tf.shape(label)[:2]
    rows = _nearest_source(top, height, size[0], new_size[0])
    cols = _nearest_source(left, width, size[1], new_size[1])
    r0, c0 = rows[0], cols[0]
    row_times = tf.math.bincount(rows - r0)
    col_times = tf.math.bincount(cols - c0)
    source = label[r0 : r0 + tf.size(row_times), c0 : c0 + tf.size(col_times)]
    source = tf.cast(source, task.label_kind.label_dtype)
    valid = task.valid_mask(source, xp=tnp)
    times = tf.where(valid, row_times[:, None] * col_times[None, :], 0)
    values = tf.where(valid, tf.cast(source[..., 0], tf.int32), 0)
    return _counts_ok(tf.math.bincount(values, weights=times, minlength=1), max_ratio)


def random_crop_window(
    seed,
    image_size,
    crop_size: tuple[int, int],
    ratio_label: tf.Tensor | None = None,
    ratio_spec: TaskSpec | None = None,
    cat_max_ratio: float = CAT_MAX_RATIO,
    tries: int = CROP_TRIES,
) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor]:
    """Samples a crop window uniformly, with the reference's class-ratio retry.

    The window is `min(crop, image)` along each axis. With a `ratio_label` and
    `cat_max_ratio < 1`, up to `tries` windows are drawn and the first one in
    which at least two classes appear and none covers `>= cat_max_ratio` of the
    valid pixels is kept; when all fail, one more window is drawn and kept
    unchecked (as the reference does).

    Args:
        seed: stateless seed, shape (2,) int.
        image_size: (H, W) of the example.
        crop_size: (crop_height, crop_width).
        ratio_label: optional (H, W, 1) int class map checked by the rule.
        ratio_spec: the task of `ratio_label` (required with it): only its
            valid pixels (`TaskSpec.valid_mask`) are counted.
        cat_max_ratio: largest allowed share of one class; 1 turns the rule off.
        tries: windows checked before giving up.

    Returns:
        (top, left, height, width) int32 scalars.
    """
    if ratio_label is not None and cat_max_ratio < 1.0 and ratio_spec is None:
        raise ValueError(
            "`ratio_spec` (the task of `ratio_label`) is required with `ratio_label`. Received: ratio_spec=None"
        )

    def accept(top, left, height, width):
        patch = ratio_label[top : top + height, left : left + width]
        return _class_ratio_ok(patch, ratio_spec, cat_max_ratio)

    rule = ratio_label is not None and cat_max_ratio < 1.0
    return _sample_window(seed, image_size, crop_size, accept if rule else None, tries)


def _sample_window(seed, image_size, crop_size, accept, tries):
    """`random_crop_window` with the ratio rule as `accept(top, left, height, width)` (None: no rule)."""
    image_size = tf.cast(image_size, tf.int32)
    height = tf.minimum(crop_size[0], image_size[0])
    width = tf.minimum(crop_size[1], image_size[1])
    seeds = tf.random.split(tf.convert_to_tensor(seed), tries + 1)

    def window(i):
        # Offsets uniform over 0..max_offset inclusive.
        max_offset = image_size - tf.stack([height, width])
        u = tf.random.stateless_uniform([2], seeds[i])
        offset = tf.minimum(tf.cast(u * tf.cast(max_offset + 1, tf.float32), tf.int32), max_offset)
        return offset[0], offset[1]

    if accept is None:
        top, left = window(0)
        return top, left, height, width

    def rejected(i):
        top, left = window(i)
        return tf.logical_not(accept(top, left, height, width))

    def keep_looking(i):
        return tf.cond(i < tries, lambda: rejected(i), lambda: tf.constant(False))

    (index,) = tf.while_loop(keep_looking, lambda i: (i + 1,), (tf.constant(0),))
    top, left = window(index)
    return top, left, height, width


def scale_crop_flip(
    example: Mapping[str, tf.Tensor], tasks: Sequence[TaskSpec], factor, window, flip
) -> dict[str, tf.Tensor]:
    """`scale` by `factor`, `crop` to `window`, then `flip_left_right` if `flip`, with less work.

    The image is resized whole (the bilinear kernel is fast), then cut and
    mirrored. Labels are gathered at the window's nearest-neighbour source
    pixels only, with the resize kernel's own coordinates (nearest resizes
    are slow, and a scaled-up label is mostly cut away). The result equals
    the three steps one after the other.

    Args:
        example: dict with `"image"` (H, W, 3) and labels (H, W, C), any dtype.
        tasks: specs of the labels in `example`.
        factor: scalar scale factor (> 0).
        window: (top, left, height, width) of the crop in the scaled example.
        flip: scalar bool.

    Returns:
        A new dict: image float32, labels in their kind's `label_dtype`, of size (height, width).
    """
    factor = tf.cast(factor, tf.float32)
    size = tf.shape(example["image"])[:2]
    new_size = scaled_size(size, factor)
    top, left, height, width = window

    def mirror(value):
        return tf.cond(flip, lambda: tf.reverse(value, [1]), lambda: value)

    image = tf.image.resize(tf.cast(example["image"], tf.float32), new_size, method="bilinear")
    out = {"image": mirror(image[top : top + height, left : left + width])}

    rows = _nearest_source(top, height, size[0], new_size[0])
    cols = _nearest_source(left, width, size[1], new_size[1])
    cols = tf.cond(flip, lambda: tf.reverse(cols, [0]), lambda: cols)
    for task in _tasks_in(example, tasks):
        label = tf.gather(tf.gather(example[task.name], rows), cols, axis=1)
        label = tf.cast(label, task.label_kind.label_dtype)
        if task.label_kind.scale is not None:
            label = task.label_kind.scale(label, factor, task.ignore_value)
        if task.label_kind.flip is not None:
            label = tf.cond(flip, lambda: task.label_kind.flip(label, task.ignore_value), lambda: label)
        out[task.name] = label
    return out


def _bilinear_source(start, count, in_size, out_size):
    """(lower, upper, weight) of output pixels start..start+count-1 of a bilinear resize in_size -> out_size.

    The arithmetic of tf.image.resize's kernel (half-pixel centres, float32,
    edges clamped), so interpolating with them equals resizing, then cropping.
    """
    scale = tf.cast(in_size, tf.float32) / tf.cast(out_size, tf.float32)
    x = (tf.cast(tf.range(start, start + count), tf.float32) + 0.5) * scale - 0.5
    floor = tf.floor(x)
    lower = tf.maximum(tf.cast(floor, tf.int32), 0)
    upper = tf.minimum(tf.cast(tf.math.ceil(x), tf.int32), in_size - 1)
    return lower, upper, x - floor


def transform_window(
    example: Mapping[str, tf.Tensor],
    tasks: Sequence[TaskSpec],
    factor,
    window,
    flip,
    crop_size: tuple[int, int],
    params: Mapping[str, tf.Tensor] | None = None,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    pad_values: Mapping[str, float] | None = None,
) -> dict[str, tf.Tensor]:
    """`scale_crop_flip`, `apply_photometric`, `normalize` and `pad_to_size` of one example, XLA-compiled.

    One compiled function computes each output pixel straight from the
    source: the image by the bilinear kernel's own taps, labels at their
    nearest-neighbour source pixels, then their kind rules, the photometric
    distortion, normalisation and the padding fill. XLA fuses this into a few
    loops over the crop (about 3x faster than the separate ops on one CPU
    thread). The result equals the separate steps up to float rounding of the
    image (labels exactly).

    The source is padded to a multiple of 32 pixels first, so the compiled
    function sees few shapes (NYUD: one); padded pixels are never read.

    Args:
        example: dict with `"image"` (H, W, 3) and labels (H, W, C), any dtype.
        tasks: specs of the labels in `example`.
        factor: scalar scale factor (> 0).
        window: (top, left, height, width) of the crop in the scaled example
            (`random_crop_window`): height and width at most `crop_size`.
        flip: scalar bool.
        crop_size: (height, width) of the output.
        params: `sample_photometric` parameters, or None for no distortion.
        mean: per-channel mean on the 0..1 scale.
        std: per-channel std on the 0..1 scale.
        pad_values: optional per-key fill values of the padding (`pad_fills`).

    Returns:
        A new dict at `crop_size`: image float32 normalised, labels in their
        kind's `label_dtype`.
    """
    crop_size = (int(crop_size[0]), int(crop_size[1]))
    tasks = _tasks_in(example, tasks)
    size = tf.shape(example["image"])[:2]
    bucket = (size + 31) // 32 * 32
    paddings = [[0, bucket[0] - size[0]], [0, bucket[1] - size[1]], [0, 0]]
    sources = {key: tf.pad(example[key], paddings) for key in ["image", *(t.name for t in tasks)]}
    fills = pad_fills(tasks, pad_values)
    factor = tf.cast(factor, tf.float32)
    top, left, height, width = (tf.cast(w, tf.int32) for w in window)
    new_size = scaled_size(size, factor)
    # Output pixel i is window pixel i - pad (centred padding, as pad_to_size); outside the window: fill.
    pad_top, pad_left = _padding_before(crop_size[0], height), _padding_before(crop_size[1], width)
    i = tf.clip_by_value(tf.range(crop_size[0]) - pad_top, 0, height - 1)
    j = tf.clip_by_value(tf.range(crop_size[1]) - pad_left, 0, width - 1)
    j = tf.where(flip, width - 1 - j, j)
    # Source coordinates here, in TensorFlow's float32 ops as its resize kernels compute them (XLA may round
    # differently); the compiled function gathers and interpolates.
    taps = {
        "rows": tf.gather(_nearest_source(top, height, size[0], new_size[0]), i),
        "cols": tf.gather(_nearest_source(left, width, size[1], new_size[1]), j),
        "bilinear_rows": [tf.gather(a, i) for a in _bilinear_source(top, height, size[0], new_size[0])],
        "bilinear_cols": [tf.gather(a, j) for a in _bilinear_source(left, width, size[1], new_size[1])],
        "window": tf.stack([pad_top, height, pad_left, width]),
    }
    normalisation = tf.constant([mean, std], tf.float32)
    # What the compiled function reads of the tasks: names, kinds and ignore values.
    key = (tuple((t.name, t.label_kind, t.ignore_value) for t in tasks), crop_size, tuple(sorted(fills.items())))
    if key not in _COMPILED:
        _COMPILED[key] = _compile(tasks, crop_size, fills)
    return _COMPILED[key](sources, taps, factor, tf.cast(flip, tf.bool), normalisation, params)


# Compiled transforms by (tasks, crop size, fills): one per pipeline, reused by eager calls.
_COMPILED: dict = {}


def _compile(tasks, crop_size, fills):
    @functools.partial(tf.function, jit_compile=True, autograph=False)
    def compiled(sources, taps, factor, flip, normalisation, params):
        return _gather_and_finish(sources, taps, factor, flip, normalisation, params, tasks, crop_size, fills)

    return compiled


def _gather_and_finish(sources, taps, factor, flip, normalisation, params, tasks, crop_size, fills):
    pad_top, height, pad_left, width = tf.unstack(taps["window"])
    i = tf.range(crop_size[0]) - pad_top
    j = tf.range(crop_size[1]) - pad_left
    inside = ((i >= 0) & (i < height))[:, None, None] & ((j >= 0) & (j < width))[None, :, None]

    # The image: the bilinear kernel's two rows, then two columns, interpolated in its order.
    (y0, y1, wy), (x0, x1, wx) = taps["bilinear_rows"], taps["bilinear_cols"]
    image = tf.cast(sources["image"], tf.float32)
    wx = wx[None, :, None]
    rows = []
    for y in (y0, y1):
        row = tf.gather(image, y)
        left_tap = tf.gather(row, x0, axis=1)
        rows.append(left_tap + (tf.gather(row, x1, axis=1) - left_tap) * wx)
    image = rows[0] + (rows[1] - rows[0]) * wy[:, None, None]
    if params is not None:
        image = apply_photometric(image, params)
    image = normalize(image, normalisation[0], normalisation[1])
    out = {"image": tf.where(inside, image, fills["image"])}

    for task in tasks:
        label = tf.gather(tf.gather(sources[task.name], taps["rows"]), taps["cols"], axis=1)
        label = tf.cast(label, task.label_kind.label_dtype)
        if task.label_kind.scale is not None:
            label = task.label_kind.scale(label, factor, task.ignore_value)
        if task.label_kind.flip is not None:
            label = tf.where(flip, task.label_kind.flip(label, task.ignore_value), label)
        out[task.name] = tf.where(inside, label, tf.cast(fills[task.name], label.dtype))
    return out


def flip_left_right(example: Mapping[str, tf.Tensor], tasks: Sequence[TaskSpec]) -> dict[str, tf.Tensor]:
    """Mirrors every tensor horizontally, then applies each label's kind `flip` rule where it has one.

    Normals: the x component changes sign (the ignore value 255 is kept).
    """
    out = {key: tf.reverse(value, axis=[1]) for key, value in example.items()}
    for task in _tasks_in(example, tasks):
        if task.label_kind.flip is not None:
            out[task.name] = task.label_kind.flip(out[task.name], task.ignore_value)
    return out


def random_flip(
    example: Mapping[str, tf.Tensor], tasks: Sequence[TaskSpec], seed, probability: float = FLIP_PROBABILITY
) -> dict[str, tf.Tensor]:
    """`flip_left_right` with probability `probability`, decided by the stateless `seed`."""
    return tf.cond(flip_drawn(seed, probability), lambda: flip_left_right(example, tasks), lambda: dict(example))


def flip_drawn(seed, probability: float) -> tf.Tensor:
    """Scalar bool: whether an example is flipped, with probability `probability`, from the stateless `seed`."""
    return tf.random.stateless_uniform([], seed) < probability


# ----------------------------------------------------------------------------- photometric


def adjust_brightness(image: tf.Tensor, delta) -> tf.Tensor:
    """Adds `delta` to every channel of a 0..255 image, clipped to [0, 255]."""
    return tf.clip_by_value(image + tf.cast(delta, image.dtype), 0.0, 255.0)


def adjust_contrast(image: tf.Tensor, factor) -> tf.Tensor:
    """Multiplies a 0..255 image by `factor`, clipped to [0, 255].

    This is the reference recipe's "contrast" (a gain, not a stretch around
    the mean).
    """
    return tf.clip_by_value(image * tf.cast(factor, image.dtype), 0.0, 255.0)


def adjust_saturation(image: tf.Tensor, factor) -> tf.Tensor:
    """Multiplies the HSV saturation of a 0..255 RGB image by `factor` (clipped to [0, 1]).

    TensorFlow's fused kernel converts each pixel to HSV and back in one pass
    (2x faster than `rgb_to_hsv` then `hsv_to_rgb`); HSV's saturation and hue
    do not depend on the value scale, so it works on 0..255 directly.
    """
    return tf.clip_by_value(tf.image.adjust_saturation(image, tf.cast(factor, image.dtype)), 0.0, 255.0)


def adjust_hue(image: tf.Tensor, shift) -> tf.Tensor:
    """Rotates the hue of a 0..255 RGB image by `shift` units of OpenCV's 0..180 scale (2 degrees each)."""
    # adjust_hue's delta is in turns: 180 OpenCV units make one.
    return tf.clip_by_value(tf.image.adjust_hue(image, tf.cast(shift, image.dtype) / 180.0), 0.0, 255.0)


def sample_photometric(
    seed,
    brightness_delta: float = BRIGHTNESS_DELTA,
    contrast_range: tuple[float, float] = CONTRAST_RANGE,
    saturation_range: tuple[float, float] = SATURATION_RANGE,
    hue_delta: int = HUE_DELTA,
) -> dict[str, tf.Tensor]:
    """Draws the parameters of one photometric distortion from a stateless seed.

    Each of brightness, contrast, saturation and hue is switched on with
    probability 0.5; contrast goes first or last with probability 0.5.

    Returns:
        dict of scalars: `brightness_on`, `brightness` (uniform +-delta),
        `contrast_first`, `contrast_on`, `contrast` (uniform in range),
        `saturation_on`, `saturation` (uniform in range), `hue_on`, `hue`
        (integer in [-hue_delta, hue_delta - 1], OpenCV units).
    """
    u = tf.random.stateless_uniform([9], seed)
    hue_delta = int(hue_delta)
    hue = tf.cast(tf.floor(u[8] * 2.0 * hue_delta), tf.int32) - hue_delta
    hue = tf.minimum(hue, max(hue_delta - 1, 0))
    return {
        "brightness_on": u[0] < 0.5,
        "brightness": (2.0 * u[1] - 1.0) * float(brightness_delta),
        "contrast_first": u[2] < 0.5,
        "contrast_on": u[3] < 0.5,
        "contrast": contrast_range[0] + (contrast_range[1] - contrast_range[0]) * u[4],
        "saturation_on": u[5] < 0.5,
        "saturation": saturation_range[0] + (saturation_range[1] - saturation_range[0]) * u[6],
        "hue_on": u[7] < 0.5,
        "hue": hue,
    }


def apply_photometric(image: tf.Tensor, params: Mapping[str, tf.Tensor]) -> tf.Tensor:
    """Applies `sample_photometric` parameters to a (H, W, 3) float 0..255 image.

    Order (reference): brightness, contrast if `contrast_first`, saturation,
    hue, contrast if not `contrast_first`. Labels are never touched.
    """

    def maybe(on, fn, x):
        return tf.cond(on, lambda: fn(x), lambda: x)

    image = maybe(params["brightness_on"], lambda x: adjust_brightness(x, params["brightness"]), image)
    contrast_on = params["contrast_on"]
    first = params["contrast_first"]
    image = maybe(tf.logical_and(contrast_on, first), lambda x: adjust_contrast(x, params["contrast"]), image)
    image = maybe(params["saturation_on"], lambda x: adjust_saturation(x, params["saturation"]), image)
    image = maybe(params["hue_on"], lambda x: adjust_hue(x, params["hue"]), image)
    image = maybe(
        tf.logical_and(contrast_on, tf.logical_not(first)), lambda x: adjust_contrast(x, params["contrast"]), image
    )
    return image


# ----------------------------------------------------------------------------- finishing


def normalize(image: tf.Tensor, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> tf.Tensor:
    """(H, W, 3) 0..255 -> float32 (x / 255 - mean) / std."""
    image = tf.cast(image, tf.float32) / 255.0
    return (image - tf.cast(mean, tf.float32)) / tf.cast(std, tf.float32)


def _padding_before(target, length):
    """Rows (or columns) of centred padding before a `length` padded to `target`: half the extra, rounded down."""
    return tf.maximum(target - length, 0) // 2


def pad_to_size(
    example: Mapping[str, tf.Tensor],
    tasks: Sequence[TaskSpec],
    size,
    pad_values: Mapping[str, float] | None = None,
) -> tuple[dict[str, tf.Tensor], tf.Tensor, tf.Tensor]:
    """Pads every tensor, centred, to at least `size` (larger tensors are kept).

    The extra rows and columns split as `delta // 2` before (top, left) and the
    rest after, as in the reference.

    Args:
        example: dict with `"image"` (H, W, 3) and labels (H, W, C).
        tasks: specs of the labels in `example`.
        size: (height, width) to reach.
        pad_values: optional per-key fill values overriding the defaults
            (image 0, each label its kind's `pad_value`: classes/binary their
            ignore value, depth 0, normals 0).

    Returns:
        (padded dict, top, left): top/left are where the original starts.
    """
    shape = tf.shape(example["image"])
    size = tf.cast(size, tf.int32)
    delta_h = tf.maximum(size[0] - shape[0], 0)
    delta_w = tf.maximum(size[1] - shape[1], 0)
    top, left = _padding_before(size[0], shape[0]), _padding_before(size[1], shape[1])
    paddings = [[top, delta_h - top], [left, delta_w - left], [0, 0]]
    fills = pad_fills(_tasks_in(example, tasks), pad_values)
    out = {}
    for key, value in example.items():
        out[key] = tf.pad(value, paddings, constant_values=tf.cast(fills[key], value.dtype))
    return out, top, left


def ignore_empty(
    example: Mapping[str, tf.Tensor], tasks: Sequence[TaskSpec], names: Sequence[str] = EMPTY_IGNORE_TASKS
) -> dict[str, tf.Tensor]:
    """Sets a label entirely to its ignore value when it has no pixel other than 0 and ignore.

    This is the reference rule for human parts: an image or crop without any
    person is not evidence of "background everywhere".
    """
    out = dict(example)
    for task in _tasks_in(example, tasks):
        if task.name not in names:
            continue
        label = example[task.name]
        has_foreground = tf.reduce_any(tf.logical_and(label > 0, label != task.ignore_value))
        ignored = tf.fill(tf.shape(label), tf.cast(task.ignore_value, label.dtype))
        out[task.name] = tf.where(has_foreground, label, ignored)
    return out


# ----------------------------------------------------------------------------- options and composition


def check_train_options(
    tasks: Sequence[TaskSpec],
    crop_size: Sequence[int],
    augment: AugmentConfig,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    pad_values: Mapping[str, float] | None = None,
) -> None:
    """Raises `ValueError` (Keras form) for an invalid option of `train_transform`.

    Checks `crop_size`, `mean`, `std`, `pad_values`, and that `augment` is an
    `AugmentConfig` whose `ratio_task` fits `tasks` (its other fields were
    checked when it was built).
    """
    if not isinstance(augment, AugmentConfig):
        raise ValueError(
            "`augment` must be an `AugmentConfig` (`AugmentConfig.off()` for crops only). "
            f"Received: augment={augment!r}"
        )
    crop = _pair("crop_size", crop_size, int)
    if min(crop) < 1 or tuple(crop_size) != crop:
        raise ValueError(
            f"`crop_size` must be two positive integers (height, width). Received: crop_size={crop_size!r}"
        )
    augment.check_tasks(tasks)
    check_normalization(mean, std)
    check_pad_values(tasks, pad_values)


def check_normalization(mean, std) -> None:
    """Raises `ValueError` unless `mean` and `std` are 3 numbers each, with `std` > 0."""
    for name, value in (("mean", mean), ("std", std)):
        try:
            numbers = [float(v) for v in value]
        except (TypeError, ValueError):
            numbers = []
        if len(numbers) != 3 or (name == "std" and min(numbers) <= 0):
            rule = "3 positive numbers" if name == "std" else "3 numbers"
            raise ValueError(f"`{name}` must be {rule} (one per RGB channel, 0..1 scale). Received: {name}={value!r}")


def check_pad_values(tasks: Sequence[TaskSpec], pad_values) -> None:
    """Raises `ValueError` unless `pad_values` maps `"image"` or task names to numbers."""
    if pad_values is None:
        return
    allowed = {"image"} | {t.name for t in tasks}
    unknown = sorted(set(pad_values) - allowed)
    if unknown:
        raise ValueError(
            f"`pad_values` keys must be 'image' or task names {sorted(allowed - {'image'})}. "
            f"Received: pad_values={dict(pad_values)!r}"
        )
    for key, value in pad_values.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"`pad_values` values must be numbers. Received: pad_values={dict(pad_values)!r}")


def train_transform(
    example: Mapping[str, tf.Tensor],
    tasks: Sequence[TaskSpec],
    seed,
    crop_size: tuple[int, int],
    *,
    augment: AugmentConfig = AugmentConfig(),
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    pad_values: Mapping[str, float] | None = None,
) -> tuple[tf.Tensor, dict[str, tf.Tensor]]:
    """The full train augmentation of one example (eager or inside `Dataset.map`).

    Args:
        example: dict with `"image"` (H, W, 3) uint8 RGB and one label per task
            (any integer dtype for classes/binary, float for depth/normals).
        tasks: the tasks to augment; their labels must be in `example`.
        seed: stateless seed, shape (2,) int; the same seed gives the same output.
        crop_size: (height, width) of the output (`CROP_SIZES`).
        augment: the augmentation options (`AugmentConfig`; the reference
            recipe by default, `AugmentConfig.off()` for crops only).
        mean: per-channel mean on the 0..1 scale (ImageNet by default).
        std: per-channel std on the 0..1 scale.
        pad_values: optional per-key fill values of the padding
            (defaults: image 0, classes/binary ignore, depth 0, normals 0).

    Returns:
        (image, labels): image (crop_h, crop_w, 3) float32 normalised; labels
        {task: (crop_h, crop_w, C)} in their kind's `label_dtype`.
    """
    check_train_options(tasks, crop_size, augment, mean, std, pad_values)
    crop_size = (int(crop_size[0]), int(crop_size[1]))
    seeds = tf.random.split(tf.convert_to_tensor(seed), 4)
    # Raw dtypes: transform_window casts only the pixels it keeps.
    example = {"image": example["image"], **{t.name: example[t.name] for t in _tasks_in(example, tasks)}}

    low, high = augment.scale_range
    factor = tf.random.stateless_uniform([], seeds[0], minval=low, maxval=high)
    if low == high:
        factor = tf.constant(low)
    new_size = scaled_size(tf.shape(example["image"])[:2], factor)

    ratio_spec = next((t for t in tasks if t.name == augment.ratio_task and t.label_kind.discrete), None)

    def accept(top, left, height, width):
        # The rule on the window of the scaled label, without scaling the label.
        window = (top, left, height, width)
        return _scaled_class_ratio_ok(example[ratio_spec.name], ratio_spec, augment.cat_max_ratio, window, new_size)

    rule = ratio_spec is not None and augment.cat_max_ratio < 1.0
    window = _sample_window(seeds[1], new_size, crop_size, accept if rule else None, augment.crop_tries)
    flip = tf.constant(False)
    if augment.flip_probability > 0:
        flip = flip_drawn(seeds[2], augment.flip_probability)
    params = None
    if augment.photometric:
        params = sample_photometric(
            seeds[3], augment.brightness_delta, augment.contrast_range, augment.saturation_range, augment.hue_delta
        )
    example = transform_window(example, tasks, factor, window, flip, crop_size, params, mean, std, pad_values)
    example = ignore_empty(example, tasks, augment.empty_ignore_tasks)

    image = tf.ensure_shape(example.pop("image"), (*crop_size, 3))
    labels = {t.name: tf.ensure_shape(example[t.name], (*crop_size, t.label_channels)) for t in tasks}
    return image, labels
