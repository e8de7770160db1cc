"""tf.data input pipelines: augmented training batches and padded evaluation batches.

Both read datasets of dict examples in the package's format (`keras_mtcl.data`):
`"image"` (H, W, 3) uint8 RGB, `"id"` string (optional here, used in error
messages and metadata) and one label per task in the conventions of
`keras_mtcl.tasks`. Keys other than the image, the id and the requested tasks
are dropped.

Outputs, ready for `model.fit` / `model.evaluate` on every Keras backend:

- image: (B, H, W, 3) float32, `(x / 255 - mean) / std`.
- labels: {task: label}; classes and binary (B, H, W, 1) int32 (ignore 255),
  depth (B, H, W, 1) float32 metres (0 invalid), normals (B, H, W, 3) float32
  (zero vector invalid).

`train_pipeline` applies the ATRC / InvPT augmentation of
`keras_mtcl.data.augment` and yields `(image, labels)` of the crop size.
`eval_pipeline` normalises and pads only (centred, like the reference) and
yields `(image, labels, meta)` where `meta` says where each original image
lies in its padded input: {"id": (B,) string, "height", "width", "top",
"left": (B,) int32}. `strip_meta` drops `meta` for `model.evaluate`;
`crop_to_original` cuts predictions back to each original image.

Labels are checked as they stream: a class id outside 0..C-1 (other than the
ignore value), a binary value other than 0, 1 or ignore, NaN, infinite or
negative depth, non-finite normals, or a label whose size differs from its
image stops the pipeline with `tf.errors.InvalidArgumentError` naming the
task, the example id and the fix. Layout problems visible from the dataset's
`element_spec` (a missing task, a wrong dtype or channel count) raise
`ExampleFormatError` when the pipeline is built.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import tensorflow as tf

# The module under another name: `augment` is the option of `train_pipeline`.
from keras_mtcl.data import augment as augment_ops
from keras_mtcl.data.augment import AugmentConfig
from keras_mtcl.preprocessing import IMAGENET_MEAN, IMAGENET_STD
from keras_mtcl.tasks import TaskSpec, validate_tasks

AUTOTUNE = tf.data.AUTOTUNE
SHUFFLE_BUFFER = 256
META_KEYS = ("id", "height", "width", "top", "left")

_INTEGER_DTYPES = (tf.uint8, tf.uint16, tf.int8, tf.int16, tf.int32, tf.int64)
_FLOAT_DTYPES = (tf.float16, tf.bfloat16, tf.float32, tf.float64)


class ExampleFormatError(ValueError):
    """Dataset examples do not have the keys, dtypes or shapes the pipeline needs."""


# ----------------------------------------------------------------------------- checks


def check_element_spec(element_spec: Any, tasks: Sequence[TaskSpec]) -> None:
    """Checks a dataset's `element_spec` against the example format and `tasks`.

    Raises:
        ExampleFormatError: elements are not dicts, or the image or a task's
            label is missing or has the wrong dtype, rank or channel count.
    """
    if not isinstance(element_spec, Mapping):
        raise ExampleFormatError(
            "Dataset elements must be dicts with 'image' (H, W, 3) uint8 and one label per task "
            f"(see keras_mtcl.data). Received: element_spec={element_spec!r}"
        )
    image = element_spec.get("image")
    if image is None:
        raise ExampleFormatError(
            f"Dataset elements have no 'image' key. Available keys: {sorted(element_spec)}. "
            f"Received: element_spec={element_spec!r}"
        )
    is_rgb = isinstance(image, tf.TensorSpec) and image.shape.rank == 3 and image.shape[-1] in (3, None)
    if not is_rgb or image.dtype != tf.uint8:
        raise ExampleFormatError(
            f"'image' must be a (H, W, 3) uint8 RGB tensor. Received: image={image!r}"
        )
    if "id" in element_spec and element_spec["id"].dtype != tf.string:
        raise ExampleFormatError(f"'id' must be a string. Received: id={element_spec['id']!r}")
    for task in tasks:
        spec = element_spec.get(task.name)
        kind = task.label_kind
        hint = kind.description.format(ignore=task.ignore_value)
        if spec is None:
            raise ExampleFormatError(
                f"Task '{task.name}' has no label in the dataset's examples. Available keys: "
                f"{sorted(element_spec)}. Remove '{task.name}' from `tasks` or use a dataset that "
                f"carries it. Received: tasks={[t.name for t in tasks]}"
            )
        if not isinstance(spec, tf.TensorSpec) or spec.shape.rank != 3:
            raise ExampleFormatError(
                f"Label '{task.name}' must be a (H, W, {task.label_channels}) tensor; add the channel "
                f"axis with label[..., None] if it is (H, W). Received: {task.name}={spec!r}"
            )
        if spec.shape[-1] not in (task.label_channels, None):
            raise ExampleFormatError(
                f"Label '{task.name}' ({kind.name}) must have {task.label_channels} channel(s): {hint}. "
                f"Received: {task.name}={spec!r}"
            )
        allowed, family = (_INTEGER_DTYPES, "an integer") if kind.discrete else (_FLOAT_DTYPES, "a float")
        if spec.dtype not in allowed:
            raise ExampleFormatError(
                f"Label '{task.name}' ({kind.name}) has dtype {spec.dtype.name}; expected {family} dtype: {hint}. "
                f"Received: {task.name}={spec!r}"
            )


def _assert(condition, pieces) -> tf.Operation:
    """An assertion whose message joins static text and tensors (the example id, offending values)."""
    parts = [p if isinstance(p, str) else p if p.dtype == tf.string else tf.strings.format("{}", p) for p in pieces]
    return tf.debugging.Assert(condition, [tf.strings.join(parts)])


def check_example(example: Mapping[str, tf.Tensor], tasks: Sequence[TaskSpec]) -> dict[str, tf.Tensor]:
    """Returns `example` unchanged once its label values are checked (eager or in `Dataset.map`).

    Raises:
        tf.errors.InvalidArgumentError: a label is out of range, not finite,
            or not the size of the image; the message names the task and
            the example id.
    """
    example_id = example.get("id", tf.constant("<no id>"))
    image_size = tf.shape(example["image"])[:2]
    checks = []
    for task in tasks:
        label, ignore, channels = example[task.name], task.ignore_value, task.label_channels
        where = ["Label `", task.name, "` of example `", example_id, "` "]
        size = tf.shape(label)
        same_size = tf.reduce_all(tf.equal(size[:2], image_size)) & tf.equal(size[2], channels)
        checks.append(
            _assert(
                same_size,
                where + ["has shape ", size, " but its image is ", image_size, f"; expected (H, W, {channels}) "
                         "of the image's size. Resize the label to the image (nearest neighbour) when decoding."],
            )
        )  # fmt: skip
        kind = task.label_kind
        value_range = kind.value_range(task.channels)
        if value_range is not None:
            bottom, top = value_range
            values = tf.cast(label, tf.int64)
            in_range = tf.reduce_all(((values >= bottom) & (values <= top)) | (values == ignore))
            low, high = tf.reduce_min(values), tf.reduce_max(values)
            span = f"{bottom}..{top}"
            problem = [f"has values outside {span} and the ignore value {ignore} (min ", low, ", max ", high, "). "]
            fix = [f"Decode labels to {span} with {ignore} = ignore, or give the task the right number of classes."]
            checks.append(_assert(in_range, where + problem + fix))
        else:
            values = tf.cast(label, tf.float32)
            valid = tf.math.is_finite(values)
            problem = "has NaN or infinite values. "
            if kind.min_value is not None:
                valid &= values >= kind.min_value
                problem = f"has NaN or infinite values, or values below {kind.min_value:g}. "
            fix = f"Expected {kind.description.format(ignore=ignore)}."
            checks.append(_assert(tf.reduce_all(valid), where + [problem, fix]))
    with tf.control_dependencies(checks):
        return {key: tf.identity(value) for key, value in example.items()}


def _no_autograph(fn):
    # The ops use tf.cond / tf.while_loop explicitly; skipping AutoGraph conversion makes tracing fast.
    return tf.autograph.experimental.do_not_convert(fn)


def _select(example: Mapping[str, tf.Tensor], tasks: Sequence[TaskSpec]) -> dict[str, tf.Tensor]:
    keys = ["image", "id"] + [t.name for t in tasks]
    return {key: example[key] for key in keys if key in example}


def _check_positive_int(name: str, value, allow_zero: bool = False) -> None:
    low = 0 if allow_zero else 1
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        rule = "a non-negative integer" if allow_zero else "a positive integer"
        raise ValueError(f"`{name}` must be {rule}. Received: {name}={value!r}")


def _check_prefetch(prefetch) -> None:
    if prefetch != AUTOTUNE:
        _check_positive_int("prefetch", prefetch, allow_zero=True)


# ----------------------------------------------------------------------------- pipelines


def train_pipeline(
    dataset: tf.data.Dataset,
    tasks: Sequence[TaskSpec],
    batch_size: int,
    crop_size: tuple[int, int],
    seed: int | None = None,
    shuffle_buffer: int = SHUFFLE_BUFFER,
    *,
    augment: AugmentConfig = AugmentConfig(),
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    pad_values: Mapping[str, float] | None = None,
    drop_remainder: bool = True,
    prefetch: int = AUTOTUNE,
    deterministic: bool | None = None,
    validate: bool = True,
    num_parallel_calls: int = AUTOTUNE,
) -> tf.data.Dataset:
    """Shuffled, augmented training batches of the crop size.

    Per example: validate, shuffle, then the augmentation of
    `keras_mtcl.data.augment.train_transform` (scale, crop with the
    class-ratio rule, flip, photometric distortion, normalisation, padding,
    ignore regions) from a per-example stateless seed. With a `seed`, the batches (order and
    augmentation) are the same on every run that has the same TensorFlow
    global seed (`keras.utils.set_random_seed` sets it); every new pass over
    the dataset (epoch) reshuffles and redraws the augmentation.

    Args:
        dataset: `tf.data.Dataset` of dict examples (`keras_mtcl.data`).
        tasks: `TaskSpec`s of the labels to yield, in order.
        batch_size: examples per batch.
        crop_size: (height, width) of the batches (`keras_mtcl.data.augment.CROP_SIZES`:
            NYUD (448, 576), PASCAL (512, 512)).
        seed: makes shuffling and augmentation reproducible; None draws fresh
            randomness.
        shuffle_buffer: examples in the shuffle buffer (0 turns shuffling
            off). Raw examples are held here: NYUD examples take ~6 MB each.
        augment: the augmentation options (`AugmentConfig`: scale, flip,
            class-ratio crop rule, photometric distortion, ignore regions);
            the reference recipe by default, `AugmentConfig.off()` for crops
            only.
        mean: per-channel normalisation mean (0..1 scale, ImageNet default).
        std: per-channel normalisation std (0..1 scale).
        pad_values: optional per-key padding values ("image" or a task name);
            defaults: image 0, classes/binary 255, depth 0, normals 0.
        drop_remainder: drop a last incomplete batch (fixed batch shapes).
        prefetch: batches to prefetch (`tf.data.AUTOTUNE` or 0 = none).
        deterministic: keep element order under parallel mapping; None means
            True when `seed` is given, else False (faster).
        validate: check label values as they stream (`check_example`).
        num_parallel_calls: parallelism of the augmentation map.

    Returns:
        `tf.data.Dataset` of `(image, labels)`: image (B, crop_h, crop_w, 3)
        float32; labels {task: (B, crop_h, crop_w, C)}, int32 for classes and
        binary, float32 for depth and normals.

    Raises:
        ValueError: an invalid option.
        ExampleFormatError: the examples lack a task or have wrong dtypes or
            channels.

    Example:
    >>> from keras_mtcl import tasks
    >>> examples = tf.data.Dataset.from_tensors({
    ...     "image": np.zeros((60, 80, 3), "uint8"), "id": "a",
    ...     "semseg": np.ones((60, 80, 1), "uint8"), "depth": np.ones((60, 80, 1), "float32")})
    >>> ds = train_pipeline(examples, [tasks.semseg(40), tasks.depth()], batch_size=1,
    ...                     crop_size=(32, 48), seed=0)
    >>> image, labels = next(iter(ds))
    >>> image.shape, labels["semseg"].dtype.name, labels["depth"].shape
    (TensorShape([1, 32, 48, 3]), 'int32', TensorShape([1, 32, 48, 1]))
    """
    tasks = validate_tasks(tasks)
    _check_positive_int("batch_size", batch_size)
    _check_positive_int("shuffle_buffer", shuffle_buffer, allow_zero=True)
    _check_prefetch(prefetch)
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer))):
        raise ValueError(f"`seed` must be an integer or None. Received: seed={seed!r}")
    options = dict(crop_size=crop_size, augment=augment, mean=mean, std=std, pad_values=pad_values)
    # Checked here as well as when the map traces `train_transform`: bad options fail before the dataset checks.
    augment_ops.check_train_options(tasks, **options)
    check_element_spec(dataset.element_spec, tasks)
    if deterministic is None:
        deterministic = seed is not None

    ds = dataset.map(_no_autograph(lambda ex: _select(ex, tasks)))
    if validate:
        ds = ds.map(_no_autograph(lambda ex: check_example(ex, tasks)))
    if shuffle_buffer:
        ds = ds.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    # One random int64 per example, redrawn each pass, seeds that example's transform.
    draws = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)
    ds = tf.data.Dataset.zip((ds, draws))

    def transform(example, draw):
        seed_pair = tf.stack([draw, tf.constant(0, tf.int64)])
        return augment_ops.train_transform(example, tasks, seed_pair, **options)

    ds = ds.map(_no_autograph(transform), num_parallel_calls=num_parallel_calls, deterministic=deterministic)
    ds = ds.batch(batch_size, drop_remainder=drop_remainder)
    if prefetch:
        ds = ds.prefetch(prefetch)
    return ds


def eval_pipeline(
    dataset: tf.data.Dataset,
    tasks: Sequence[TaskSpec],
    batch_size: int,
    pad_size: tuple[int, int] | None = None,
    pad_multiple: int | None = None,
    *,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    pad_values: Mapping[str, float] | None = None,
    empty_ignore_tasks: Sequence[str] = augment_ops.EMPTY_IGNORE_TASKS,
    prefetch: int = AUTOTUNE,
    validate: bool = True,
    num_parallel_calls: int = AUTOTUNE,
) -> tf.data.Dataset:
    """Normalised, padded evaluation batches with each image's placement.

    Each image is padded, centred, to at least `pad_size` (larger images
    keep their size, as in the reference), then up to the next multiple of
    `pad_multiple`; a batch of differently sized results is padded further
    at the bottom and right to its largest member. Labels are padded with
    invalid values, so metrics on padded batches ignore the padding.

    Args:
        dataset: `tf.data.Dataset` of dict examples (`keras_mtcl.data`).
        tasks: `TaskSpec`s of the labels to yield.
        batch_size: examples per batch (the last batch may be smaller).
        pad_size: optional (height, width) every image is padded to at least
            (e.g. `augment.CROP_SIZES["pascal"]`).
        pad_multiple: optional multiple the padded height and width are
            rounded up to (e.g. the backbone's output stride).
        mean: per-channel normalisation mean (0..1 scale).
        std: per-channel normalisation std (0..1 scale).
        pad_values: optional per-key padding values ("image" or a task name);
            defaults: image 0, classes/binary 255, depth 0, normals 0.
        empty_ignore_tasks: tasks whose label becomes all-ignore when the
            image has no foreground pixel of that task (reference: human_parts).
        prefetch: batches to prefetch (`tf.data.AUTOTUNE` or 0 = none).
        validate: check label values as they stream (`check_example`).
        num_parallel_calls: parallelism of the map (order is always kept).

    Returns:
        `tf.data.Dataset` of `(image, labels, meta)`: image (B, H, W, 3)
        float32; labels as in `train_pipeline`; meta {"id": (B,) string
        ("" when the examples have none), "height", "width": (B,) int32 size
        of the original, "top", "left": (B,) int32 where it starts}.

    Raises:
        ValueError: an invalid option.
        ExampleFormatError: the examples lack a task or have wrong dtypes or
            channels.

    Example:
    >>> from keras_mtcl import tasks
    >>> examples = tf.data.Dataset.from_tensors({
    ...     "image": np.zeros((30, 45, 3), "uint8"), "id": "a", "depth": np.ones((30, 45, 1), "float32")})
    >>> image, labels, meta = next(iter(eval_pipeline(examples, [tasks.depth()], 1, pad_multiple=16)))
    >>> image.shape, [int(meta[k][0]) for k in ("top", "left", "height", "width")]
    (TensorShape([1, 32, 48, 3]), [1, 1, 30, 45])
    >>> crop_to_original(labels["depth"], meta)[0].shape
    (30, 45, 1)
    """
    tasks = validate_tasks(tasks)
    _check_positive_int("batch_size", batch_size)
    _check_prefetch(prefetch)
    if pad_size is not None:
        try:
            size = tuple(int(v) for v in pad_size)
        except (TypeError, ValueError):
            size = ()
        if len(size) != 2 or min(size) < 1 or size != tuple(pad_size):
            raise ValueError(
                f"`pad_size` must be two positive integers (height, width) or None. Received: pad_size={pad_size!r}"
            )
    if pad_multiple is not None:
        _check_positive_int("pad_multiple", pad_multiple)
    augment_ops.check_normalization(mean, std)
    augment_ops.check_pad_values(tasks, pad_values)
    check_element_spec(dataset.element_spec, tasks)
    multiple = int(pad_multiple or 1)
    fills = augment_ops.pad_fills(tasks, pad_values)

    def transform(example):
        example_id = example.get("id", tf.constant(""))
        example = augment_ops.to_working_dtypes(example, tasks)
        example["image"] = augment_ops.normalize(example["image"], mean, std)
        size = tf.shape(example["image"])[:2]
        target = size if pad_size is None else tf.maximum(size, tf.constant(pad_size, tf.int32))
        target = -(-target // multiple) * multiple
        example, top, left = augment_ops.pad_to_size(example, tasks, target, pad_values)
        example = augment_ops.ignore_empty(example, tasks, tuple(empty_ignore_tasks))
        image = example.pop("image")
        meta = {"id": example_id, "height": size[0], "width": size[1], "top": top, "left": left}
        return image, {t.name: example[t.name] for t in tasks}, meta

    ds = dataset.map(_no_autograph(lambda ex: _select(ex, tasks)))
    if validate:
        ds = ds.map(_no_autograph(lambda ex: check_example(ex, tasks)))
    ds = ds.map(_no_autograph(transform), num_parallel_calls=num_parallel_calls, deterministic=True)
    padding = (
        tf.constant(fills["image"], tf.float32),
        {t.name: tf.cast(fills[t.name], t.label_kind.label_dtype) for t in tasks},
        {"id": tf.constant(""), **{k: tf.constant(0, tf.int32) for k in META_KEYS[1:]}},
    )
    ds = ds.padded_batch(batch_size, padding_values=padding)
    if prefetch:
        ds = ds.prefetch(prefetch)
    return ds


def strip_meta(dataset: tf.data.Dataset) -> tf.data.Dataset:
    """`(image, labels, meta)` batches of `eval_pipeline` -> `(image, labels)` for `model.evaluate`."""
    return dataset.map(_no_autograph(lambda image, labels, meta: (image, labels)))


def crop_to_original(predictions, meta: Mapping[str, Any]) -> list[np.ndarray]:
    """Cuts each prediction of a padded batch back to its original image.

    Args:
        predictions: (B, H, W, C) array-like at the padded input's resolution
            (resize lower-resolution outputs to the input size first).
        meta: the batch's `meta` from `eval_pipeline`.

    Returns:
        A list of B numpy arrays, the i-th (height_i, width_i, C).
    """
    predictions = np.asarray(predictions)
    rows = [np.asarray(meta[k]).reshape(-1) for k in ("top", "left", "height", "width")]
    if predictions.ndim != 4 or any(len(r) != predictions.shape[0] for r in rows):
        raise ValueError(
            "`predictions` must be (B, H, W, C) with one entry of `meta` per batch item. "
            f"Received: predictions.shape={predictions.shape}, batch of meta={len(rows[0])}"
        )
    return [
        predictions[i, top : top + height, left : left + width]
        for i, (top, left, height, width) in enumerate(zip(*[r.astype(int) for r in rows]))
    ]
