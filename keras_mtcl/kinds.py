"""Label kinds: everything that depends on what a task's labels are, in one object per kind.

A task's `kind` (`keras_mtcl.tasks.TaskSpec.kind`) decides how its labels are
stored, checked, augmented, compared by the regularizer, trained, scored,
served and drawn. Each kind is one frozen `LabelKind` below; every other
module asks the task's kind (`task.label_kind`) instead of testing its name,
so adding a kind means adding one object here (and one entry in each
registry keyed by kind: `keras_mtcl.metrics.METRIC_BUILDERS`,
`keras_mtcl.visualize.PAINTERS`, the manifest schema of `keras_mtcl.data.folder`;
tests check that they cover every kind).

| kind    | tasks               | label (per image)         | valid pixels                          | prediction        |
|---------|---------------------|---------------------------|---------------------------------------|-------------------|
| classes | semseg, human_parts | (H, W, 1) int, 0..C-1     | 0 <= y < C and y != ignore            | (.., C) logits    |
| binary  | edge, saliency      | (H, W, 1) int, {0, 1}     | 0 <= y <= 1 and y != ignore           | (.., 1) logits    |
| depth   | depth               | (H, W, 1) float, metres   | y > 0, finite and y != ignore         | (.., 1) metres    |
| normals | normals             | (H, W, 3) float, unit     | finite, not the zero vector, no ignore| (.., 3) vectors   |

The ignore value is 255 (`IGNORE_INDEX`) unless a task says otherwise.

Validity is one function per kind (`LabelKind.valid_mask`) written against
the numpy API that numpy, `keras.ops` and `tf.experimental.numpy` share, so the
loss, the metrics, the regularizer and the tf.data augmentation use the same
rule.
"""

from __future__ import annotations

import dataclasses
import math
import types
from typing import Any, Callable, Mapping

import numpy as np

IGNORE_INDEX = 255


def _keras_ops():
    from keras import ops

    return ops


# ----------------------------------------------------------------------------- validity
# `xp` is numpy, keras.ops or tf.experimental.numpy; labels are (..., c).


def _classes_valid(labels, channels: int, ignore_value: int, xp):
    y = labels[..., 0]
    return xp.logical_and(xp.logical_and(y >= 0, y < channels), y != ignore_value)


def _binary_valid(labels, channels: int, ignore_value: int, xp):
    y = labels[..., 0]
    return xp.logical_and(xp.logical_and(y >= 0, y <= 1), y != ignore_value)


def _depth_valid(labels, channels: int, ignore_value: int, xp):
    y = labels[..., 0]
    return xp.logical_and(xp.logical_and(y > 0, xp.isfinite(y)), y != ignore_value)


def _normals_valid(labels, channels: int, ignore_value: int, xp):
    finite = xp.all(xp.isfinite(labels), axis=-1)
    nonzero = xp.any(labels != 0, axis=-1)
    not_ignored = xp.all(labels != ignore_value, axis=-1)
    return xp.logical_and(xp.logical_and(finite, nonzero), not_ignored)


# ----------------------------------------------------------------------------- label distances (regularizer)
# (..., c) float32 labels, broadcastable; the value on invalid labels is finite and meaningless.


def _discrete_distance(a, b):
    ops = _keras_ops()
    return ops.cast(a[..., 0] != b[..., 0], "float32")


def _binary_distance(a, b):
    ops = _keras_ops()
    return ops.cast((a[..., 0] > 0.5) != (b[..., 0] > 0.5), "float32")


def _log_depth_distance(a, b):
    ops = _keras_ops()
    return ops.abs(ops.log(ops.maximum(a[..., 0], 1e-12)) - ops.log(ops.maximum(b[..., 0], 1e-12)))


def _angle_distance(a, b):
    ops = _keras_ops()
    a = a * ops.rsqrt(ops.maximum(ops.sum(ops.square(a), axis=-1, keepdims=True), 1e-24))
    b = b * ops.rsqrt(ops.maximum(ops.sum(ops.square(b), axis=-1, keepdims=True), 1e-24))
    cosine = ops.clip(ops.sum(a * b, axis=-1), -1.0, 1.0)
    return ops.arccos(cosine) * (180.0 / math.pi)


# ----------------------------------------------------------------------------- labels at the feature resolution (regularizer)


def resize_nearest(labels, size):
    """Resizes (B, H, W, c) label maps to `size` = (h, w) by nearest sampling (no interpolated values).

    Output pixel i reads input pixel floor((i + 0.5) * H / h), the nearest
    input pixel to its centre (half-pixel centres, like PyTorch's
    `F.interpolate(mode="nearest-exact")`); for an integer factor f it is
    pixel f * i + f // 2. Returns float32.
    """
    ops = _keras_ops()
    out = ops.cast(labels, "float32")
    shape = ops.shape(out)
    for axis, (source, target) in enumerate(zip((shape[1], shape[2]), size), start=1):
        if isinstance(source, int) and isinstance(target, int) and source % target == 0:
            # An integer factor f reads pixels f // 2, f // 2 + f, ...: one strided slice (a gather costs
            # more to trace and to run).
            factor = source // target
            if factor > 1:
                out = out[:, factor // 2 :: factor] if axis == 1 else out[:, :, factor // 2 :: factor]
            continue
        # Integer arithmetic: floor((2 i + 1) * H / (2 h)).
        index = ops.floor_divide((2 * ops.arange(target, dtype="int32") + 1) * source, 2 * target)
        index = ops.minimum(index, source - 1)
        out = ops.take(out, index, axis=axis)
    return out


def _any_positive(labels, size, channels: int, ignore_value: int):
    """Sparse binary maps: a cell is 1 if any valid pixel in it is 1, 0 if its valid pixels are all 0, else ignored.

    Thin structures (1-px edges) survive the stride, where nearest sampling
    loses about 3/4 of their cells at stride 4 (METHOD.md section 1). Output
    cell i covers input rows [floor(i H / h), floor((i + 1) H / h)), and the
    same for columns; the label map's height and width must be static.
    """
    ops = _keras_ops()
    labels = ops.cast(labels, "float32")
    valid = _binary_valid(labels, channels, ignore_value, ops)
    positive = ops.cast(ops.logical_and(valid, labels[..., 0] > 0.5), "float32")
    valid = ops.cast(valid, "float32")
    if not all(isinstance(n, int) for n in (*labels.shape[1:3], *size)):
        raise ValueError(
            "The any-positive rule of sparse binary labels needs static label and feature sizes. "
            f"Received: labels of shape {labels.shape}, feature size {tuple(size)}"
        )
    for axis, target in ((1, size[0]), (2, size[1])):
        source = labels.shape[axis]
        if source % target == 0:
            # Cells of f x f pixels: a max over a (.., h, f, ..) view, as the general gathers below compute.
            factor = source // target
            cells = (-1, target, factor, positive.shape[2]) if axis == 1 else (-1, positive.shape[1], target, factor)
            positive = ops.max(ops.reshape(positive, cells), axis=axis + 1)
            valid = ops.max(ops.reshape(valid, cells), axis=axis + 1)
            continue
        starts = [i * source // target for i in range(target)]
        ends = [max((i + 1) * source // target, s + 1) for i, s in enumerate(starts)]
        width = max(e - s for s, e in zip(starts, ends))
        pooled_positive, pooled_valid = None, None
        for offset in range(width):
            index = ops.convert_to_tensor([min(s + offset, e - 1) for s, e in zip(starts, ends)], "int32")
            p, v = ops.take(positive, index, axis=axis), ops.take(valid, index, axis=axis)
            pooled_positive = p if pooled_positive is None else ops.maximum(pooled_positive, p)
            pooled_valid = v if pooled_valid is None else ops.maximum(pooled_valid, v)
        positive, valid = pooled_positive, pooled_valid
    out = ops.where(positive > 0, 1.0, ops.where(valid > 0, 0.0, float(ignore_value)))
    return ops.expand_dims(out, -1)


# ----------------------------------------------------------------------------- serving post-processing
# keras.ops on one task's raw prediction (..., C); the SavedModel signature runs them on TensorFlow.


def _serve_classes(name: str, y) -> dict:
    ops = _keras_ops()
    # The first of the largest logits, by an integer argmax: keras' float argmax on TensorFlow adds a
    # sign-bit test (Bitcast, BitwiseAnd) that tf2onnx cannot convert (ONNX export).
    largest = ops.cast(y >= ops.max(y, axis=-1, keepdims=True), "int32")
    return {f"{name}_classes": ops.cast(ops.argmax(largest, axis=-1), "int32"), f"{name}_probabilities": ops.softmax(y, axis=-1)}


def _serve_binary(name: str, y) -> dict:
    return {f"{name}_probability": _keras_ops().sigmoid(y)}


def _serve_depth(name: str, y) -> dict:
    return {name: _keras_ops().maximum(y, 0.0)}


def _serve_normals(name: str, y) -> dict:
    ops = _keras_ops()
    norm = ops.sqrt(ops.sum(ops.square(y), axis=-1, keepdims=True))
    return {name: y / ops.maximum(norm, 1e-12)}


# Inverses for pictures: serving outputs of one image (numpy) -> a raw-like map (H, W, C).


def _unserve_classes(name: str, outputs: Mapping[str, Any]) -> np.ndarray:
    return np.log(np.maximum(np.asarray(outputs[f"{name}_probabilities"], "float32"), 1e-30))


def _unserve_binary(name: str, outputs: Mapping[str, Any]) -> np.ndarray:
    p = np.clip(np.asarray(outputs[f"{name}_probability"], "float32"), 1e-7, 1 - 1e-7)
    return np.log(p) - np.log1p(-p)


def _unserve_identity(name: str, outputs: Mapping[str, Any]) -> np.ndarray:
    return np.asarray(outputs[name], "float32")


# ----------------------------------------------------------------------------- augmentation (tf, in tf.data)


def _scale_depth(label, factor, ignore_value):
    """Depth seen `factor` times larger is that much closer; the ignore value stays."""
    import tensorflow as tf

    return tf.where(label == ignore_value, label, label / tf.cast(factor, label.dtype))


def _flip_normals(label, ignore_value):
    """A horizontal mirror negates the x component (the ignore value stays)."""
    import tensorflow as tf

    x = label[..., :1]
    x = tf.where(x == ignore_value, x, -x)
    return tf.concat([x, label[..., 1:]], axis=-1)


# ----------------------------------------------------------------------------- random valid labels (tests, benchmarks)
# `(rng, shape, channels) -> (*shape, label_channels)` numpy labels, every pixel valid; `rng` is a numpy Generator.


def _random_classes(rng, shape, channels):
    return rng.integers(0, channels, (*shape, 1))


def _random_binary(rng, shape, channels):
    # About one pixel in five positive: binary maps (edges, saliency) are mostly background.
    return rng.uniform(size=(*shape, 1)) < 0.2


def _random_depth(rng, shape, channels):
    return rng.uniform(0.5, 5.0, (*shape, 1))


def _random_normals(rng, shape, channels):
    v = rng.normal(size=(*shape, 3))
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


# ----------------------------------------------------------------------------- the kind object


@dataclasses.dataclass(frozen=True, eq=False)
class LabelKind:
    """Everything that depends on a label kind. One instance per kind; compare with `is`.

    Attributes:
        name: the kind's name, the value of `TaskSpec.kind`.
        label_channels: channels of the label tensor (H, W, label_channels).
        output_channels: output channels of every task of the kind, or None
            when the task sets them (classes: one per class, at least
            `min_output_channels`).
        min_output_channels: fewest output channels a task may have.
        discrete: labels are ids (stored as uint8 PNG, carried as int32,
            padded with the ignore value, class-balanced by the regularizer).
        label_dtype: dtype of labels in the pipelines and batches.
        loss: default loss name (`keras_mtcl.losses.LOSSES`).
        metrics: default metric names; the first is the main one (delta_m).
        thresholds: (tau_pos, tau_neg) of the regularizer's threshold
            criterion, in the units of `distance` (METHOD.md section 2).
        ranking_margin: eps of the regularizer's ranking criterion.
        description: the label convention, for error messages and docs.
        validity: `(labels, channels, ignore_value, xp) -> (...) bool`.
        distance: `(a, b) -> (...) float32` label distance (keras.ops).
        serve: `(name, y) -> {output name: tensor}` serving post-processing.
        unserve: `(name, outputs) -> (H, W, C)` raw-like map from serving outputs.
        output_suffixes: names of the serving outputs: `name + suffix`.
        scale: `(label, factor, ignore_value) -> label` after a geometric
            resize by `factor`, or None when values do not change.
        flip: `(label, ignore_value) -> label` after a horizontal mirror of
            the map, or None when values do not change.
        sparse_resize: `(labels, size, channels, ignore_value) -> labels` at
            the feature resolution for tasks marked `sparse` (thin
            structures), or None when the kind has no sparse rule.
        random: `(rng, shape, channels) -> (*shape, label_channels)` numpy
            labels drawn with the numpy Generator `rng`, every pixel valid
            (`keras_mtcl.testing.labels.random_labels` adds invalid ones).
        min_value: lowest value a stored label of a continuous kind may hold
            (depth: 0), or None when any finite value may be stored; discrete
            kinds use `value_range`.
    """

    name: str
    label_channels: int
    output_channels: int | None
    min_output_channels: int
    discrete: bool
    label_dtype: str
    loss: str
    metrics: tuple[str, ...]
    thresholds: tuple[float, float]
    ranking_margin: float
    description: str
    validity: Callable = dataclasses.field(repr=False)
    distance: Callable = dataclasses.field(repr=False)
    serve: Callable = dataclasses.field(repr=False)
    unserve: Callable = dataclasses.field(repr=False)
    output_suffixes: tuple[str, ...] = ("",)
    scale: Callable | None = dataclasses.field(default=None, repr=False)
    flip: Callable | None = dataclasses.field(default=None, repr=False)
    sparse_resize: Callable | None = dataclasses.field(default=None, repr=False)
    random: Callable | None = dataclasses.field(default=None, repr=False)
    min_value: float | None = None

    def __repr__(self) -> str:
        return f"LabelKind({self.name!r})"

    # -- labels

    def valid_mask(self, labels, channels: int, ignore_value: int = IGNORE_INDEX, xp=None):
        """(...) bool: which pixels of (..., c) labels are valid.

        Args:
            labels: (..., label_channels) labels (any numeric dtype).
            channels: the task's output channels (the class count of classes).
            ignore_value: the task's ignore value.
            xp: array namespace: `keras.ops` (default), numpy or
                `tf.experimental.numpy`.

        Example:
        >>> import numpy as np
        >>> BINARY.valid_mask(np.array([[0], [1], [2], [255]]), 1, xp=np).tolist()
        [True, True, False, False]
        """
        xp = _keras_ops() if xp is None else xp
        # keras.ops (the one namespace with `cast`) compares float32 on every backend. Not a test of
        # `xp.__name__`: `tf.experimental.numpy` reached as an attribute is `tensorflow._api.v2...`.
        if hasattr(xp, "cast"):
            labels = xp.cast(labels, "float32")
        return self.validity(labels, channels, ignore_value, xp)

    def pad_value(self, ignore_value: int = IGNORE_INDEX) -> float:
        """The value padding a label: the ignore value for discrete kinds, else 0 (invalid too)."""
        return float(ignore_value) if self.discrete else 0.0

    def value_range(self, channels: int) -> tuple[int, int] | None:
        """(lowest, highest) valid id of a discrete kind, None for continuous kinds."""
        if not self.discrete:
            return None
        return 0, (channels - 1 if self.output_channels is None else 1)

    def check_channels(self, channels: int) -> None:
        """Raises ValueError when a task of this kind cannot have `channels` outputs."""
        if self.output_channels is not None and channels != self.output_channels:
            raise ValueError(
                f"A `{self.name}` task has {self.output_channels} output channel(s). Received: channels={channels}"
            )
        if channels < self.min_output_channels:
            raise ValueError(
                f"A `{self.name}` task needs `channels` >= {self.min_output_channels}. Received: channels={channels}"
            )

    def num_classes(self, channels: int) -> int | None:
        """Classes of a discrete kind (binary: 2), None for continuous kinds."""
        if not self.discrete:
            return None
        return channels if self.output_channels is None else 2

    def feature_labels(self, labels, size, channels: int, ignore_value: int = IGNORE_INDEX, sparse: bool = False):
        """(B, H, W, c) labels at the feature resolution `size` = (h, w), as (B, h, w, c) float32.

        Nearest sampling, or the kind's sparse rule for tasks marked `sparse`.
        """
        if sparse:
            if self.sparse_resize is None:
                raise ValueError(f"Label kind `{self.name}` has no sparse rule. Received: sparse=True")
            return self.sparse_resize(labels, size, channels, ignore_value)
        return resize_nearest(labels, size)

    # -- storage

    def tfds_feature(self):
        """The tfds feature of one label: 1-channel PNG for ids, zlib float32 tensors otherwise."""
        import tensorflow_datasets as tfds

        if self.discrete:
            return tfds.features.Image(shape=(None, None, 1), dtype=np.uint8, encoding_format="png")
        return tfds.features.Tensor(shape=(None, None, self.label_channels), dtype=np.float32, encoding="zlib")

    # -- serving

    def output_names(self, name: str) -> list[str]:
        """Names of the serving outputs of task `name`."""
        return [name + suffix for suffix in self.output_suffixes]


CLASSES = LabelKind(
    name="classes",
    label_channels=1,
    output_channels=None,
    min_output_channels=2,
    discrete=True,
    label_dtype="int32",
    loss="cross_entropy",
    metrics=("miou", "pixel_accuracy"),
    thresholds=(0.0, 0.0),
    ranking_margin=0.0,
    description="class ids 0..C-1 with {ignore} = ignore, an integer (H, W, 1) map (any integer dtype)",
    validity=_classes_valid,
    distance=_discrete_distance,
    serve=_serve_classes,
    unserve=_unserve_classes,
    output_suffixes=("_classes", "_probabilities"),
    random=_random_classes,
)

BINARY = LabelKind(
    name="binary",
    label_channels=1,
    output_channels=1,
    min_output_channels=1,
    discrete=True,
    label_dtype="int32",
    loss="balanced_bce",
    metrics=("maxf", "miou"),
    thresholds=(0.0, 0.0),
    ranking_margin=0.0,
    description="0/1 with {ignore} = ignore, an integer (H, W, 1) map (any integer dtype)",
    validity=_binary_valid,
    distance=_binary_distance,
    serve=_serve_binary,
    unserve=_unserve_binary,
    output_suffixes=("_probability",),
    sparse_resize=_any_positive,
    random=_random_binary,
)

DEPTH = LabelKind(
    name="depth",
    label_channels=1,
    output_channels=1,
    min_output_channels=1,
    discrete=False,
    label_dtype="float32",
    loss="depth_l1",
    metrics=("rmse", "log_rmse", "abs_rel", "delta1"),
    thresholds=(math.log(1.05), math.log(1.25)),  # within 5 % / beyond 25 %
    ranking_margin=math.log(1.05),
    description="metres as float32 (H, W, 1), 0 = no measurement",
    validity=_depth_valid,
    distance=_log_depth_distance,
    serve=_serve_depth,
    unserve=_unserve_identity,
    scale=_scale_depth,
    random=_random_depth,
    min_value=0.0,
)

NORMALS = LabelKind(
    name="normals",
    label_channels=3,
    output_channels=3,
    min_output_channels=3,
    discrete=False,
    label_dtype="float32",
    loss="normals_l1",
    metrics=("mean_angle", "median_angle", "within_11.25", "within_22.5", "within_30"),
    thresholds=(10.0, 30.0),  # degrees
    ranking_margin=10.0,
    description=(
        "unit vectors as float32 (H, W, 3), the zero vector = invalid (decode 8-bit maps with 2 * x / 255 - 1)"
    ),
    validity=_normals_valid,
    distance=_angle_distance,
    serve=_serve_normals,
    unserve=_unserve_identity,
    flip=_flip_normals,
    random=_random_normals,
)

# Every kind, by name, in the order of the docs.
KINDS: Mapping[str, LabelKind] = types.MappingProxyType({k.name: k for k in (CLASSES, BINARY, DEPTH, NORMALS)})


def get_kind(name: str | LabelKind) -> LabelKind:
    """The `LabelKind` called `name` (a `LabelKind` is returned as it is).

    Example:
    >>> get_kind("depth").label_channels
    1
    """
    if isinstance(name, LabelKind):
        return name
    if name not in KINDS:
        raise ValueError(f"Unknown label kind. Expected one of {list(KINDS)}. Received: kind={name!r}")
    return KINDS[name]


__all__ = ["BINARY", "CLASSES", "DEPTH", "IGNORE_INDEX", "KINDS", "LabelKind", "NORMALS", "get_kind"]
