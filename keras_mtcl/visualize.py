"""Pictures of predictions and labels: one RGB uint8 image per task map (numpy only)."""

from __future__ import annotations

import types
from typing import Callable, Mapping

import numpy as np

from keras_mtcl import kinds
from keras_mtcl.tasks import TaskSpec


def class_palette(num_classes: int) -> np.ndarray:
    """(num_classes, 3) uint8 colours, distinct for neighbouring ids (PASCAL VOC bit pattern)."""
    palette = np.zeros((num_classes, 3), "uint8")
    for index in range(num_classes):
        value, colour = index, [0, 0, 0]
        for shift in range(7, -1, -1):
            for channel in range(3):
                colour[channel] |= ((value >> channel) & 1) << shift
            value >>= 3
        palette[index] = colour
    return palette


def _gray(values: np.ndarray) -> np.ndarray:
    return np.repeat((np.clip(values, 0.0, 1.0) * 255).round().astype("uint8")[..., None], 3, axis=-1)


def _paint_classes(task: TaskSpec, values: np.ndarray, is_label: bool, valid: np.ndarray) -> np.ndarray:
    ids = values[..., 0] if is_label else values.argmax(-1)
    return class_palette(task.channels)[np.clip(np.where(valid, ids, 0), 0, task.channels - 1).astype(int)]


def _paint_binary(task: TaskSpec, values: np.ndarray, is_label: bool, valid: np.ndarray) -> np.ndarray:
    return _gray(values[..., 0] if is_label else 1.0 / (1.0 + np.exp(-values[..., 0])))


def _paint_depth(task: TaskSpec, values: np.ndarray, is_label: bool, valid: np.ndarray) -> np.ndarray:
    depth = values[..., 0]
    if not valid.any():
        return np.zeros(depth.shape + (3,), "uint8")
    low, high = np.percentile(depth[valid], [2, 98])
    return _gray(1.0 - (np.where(valid, depth, low) - low) / max(high - low, 1e-6))


def _paint_normals(task: TaskSpec, values: np.ndarray, is_label: bool, valid: np.ndarray) -> np.ndarray:
    # Unit vectors in [-1, 1] mapped to RGB in [0, 255].
    values = np.where(valid[..., None], values, 0.0)
    unit = values / np.maximum(np.linalg.norm(values, axis=-1, keepdims=True), 1e-12)
    return ((unit + 1.0) * 127.5).round().clip(0, 255).astype("uint8")


# How each label kind is drawn: {kind: painter(task, values, is_label, valid) -> (H, W, 3) uint8}.
# `valid` marks the pixels the kind's validity rule keeps (all of a class or
# binary prediction); `colorize` blacks out the others. Adding a kind means
# adding its painter (a test checks that every kind has one).
PAINTERS: Mapping[kinds.LabelKind, Callable] = types.MappingProxyType(
    {
        kinds.CLASSES: _paint_classes,
        kinds.BINARY: _paint_binary,
        kinds.DEPTH: _paint_depth,
        kinds.NORMALS: _paint_normals,
    }
)


def colorize(task: TaskSpec, values: np.ndarray, is_label: bool = False) -> np.ndarray:
    """One task map as an (H, W, 3) uint8 picture; invalid pixels are black.

    Classes: the VOC palette; binary: gray levels of the probability; depth:
    nearness in gray (2nd to 98th percentile of the valid depths); normals:
    (x, y, z) in [-1, 1] as RGB. Invalid pixels are those of the task's
    kind's validity rule (`TaskSpec.valid_mask`): in labels, and in
    predictions of continuous kinds (depth, normals), which are in label
    units; a logit map (classes, binary) has none.

    Args:
        task: the task's spec.
        values: a prediction (H, W, C) as the model returns it (logits,
            metres, vectors), or a label (H, W, 1) / (H, W, 3) if `is_label`.
        is_label: whether `values` is a label in the label conventions.
    """
    values = np.asarray(values, "float32")
    if is_label or not task.label_kind.discrete:
        valid = np.asarray(task.valid_mask(values, xp=np), bool)
    else:
        valid = np.ones(values.shape[:-1], bool)
    picture = PAINTERS[task.label_kind](task, values, is_label, valid)
    picture[~valid] = 0
    return picture


def prediction_panel(
    image: np.ndarray,
    tasks: list[TaskSpec],
    predictions: Mapping[str, np.ndarray],
    labels: Mapping[str, np.ndarray] | None = None,
) -> np.ndarray:
    """A grid picture: the image, then one column per task; predictions on top, labels below.

    Args:
        image: (H, W, 3) uint8 RGB.
        predictions: {task: (H, W, C)} raw model outputs for this image.
        labels: optional {task: (H, W, 1 or 3)} labels for a second row.

    Returns:
        (rows * H, (1 + T) * W, 3) uint8.
    """
    image = np.asarray(image, "uint8")
    top = [image] + [colorize(t, predictions[t.name]) for t in tasks]
    rows = [np.concatenate(top, axis=1)]
    if labels is not None:
        bottom = [np.zeros_like(image)] + [
            colorize(t, labels[t.name], is_label=True) if t.name in labels else np.zeros_like(image) for t in tasks
        ]
        rows.append(np.concatenate(bottom, axis=1))
    return np.concatenate(rows, axis=0)
