"""Pictures of predictions and labels: one RGB uint8 image per task map (numpy only)."""

from __future__ import annotations

from typing import Mapping

import numpy as np

from keras_mtcl.tasks import IGNORE_INDEX, TaskSpec


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


def colorize(task: TaskSpec, values: np.ndarray, is_label: bool = False) -> np.ndarray:
    """One task map as an (H, W, 3) uint8 picture; ignored label pixels are black.

    Args:
        task: the task's spec.
        values: a prediction (H, W, C) as the model returns it (logits,
            metres, vectors), or a label (H, W, 1) / (H, W, 3) if `is_label`.
        is_label: whether `values` is a label in the label conventions.
    """
    values = np.asarray(values, "float32")
    if task.kind == "classes":
        ids = values[..., 0] if is_label else values.argmax(-1)
        ignored = ids == IGNORE_INDEX
        picture = class_palette(task.channels)[np.clip(ids, 0, task.channels - 1).astype(int)]
        picture[ignored] = 0
        return picture
    if task.kind == "binary":
        probability = values[..., 0] if is_label else 1.0 / (1.0 + np.exp(-values[..., 0]))
        picture = _gray(probability)
        picture[values[..., 0] == IGNORE_INDEX if is_label else np.zeros_like(probability, bool)] = 0
        return picture
    if task.kind == "depth":
        depth = values[..., 0]
        valid = (depth > 0) & (depth != IGNORE_INDEX)
        if not valid.any():
            return np.zeros(depth.shape + (3,), "uint8")
        low, high = np.percentile(depth[valid], [2, 98])
        nearness = 1.0 - (depth - low) / max(high - low, 1e-6)
        picture = _gray(nearness)
        picture[~valid] = 0
        return picture
    # normals: unit vectors in [-1, 1] mapped to RGB in [0, 255].
    norm = np.linalg.norm(values, axis=-1, keepdims=True)
    unit = values / np.maximum(norm, 1e-12)
    picture = ((unit + 1.0) * 127.5).round().clip(0, 255).astype("uint8")
    invalid = (norm[..., 0] == 0) | np.all(values == IGNORE_INDEX, axis=-1)
    picture[invalid] = 0
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
