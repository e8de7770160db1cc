"""Predictions on arbitrary images with a Keras model: normalise, pad, predict, crop back; serving-style outputs."""

from __future__ import annotations

from typing import Mapping, Sequence

import keras
import numpy as np

from keras_mtcl.export import ServingConfig
from keras_mtcl.model import MultiTaskModel
from keras_mtcl.preprocessing import normalize
from keras_mtcl.tasks import TaskSpec


def predict_image(model: MultiTaskModel, image: np.ndarray, serving: ServingConfig = ServingConfig()) -> dict[str, np.ndarray]:
    """Raw predictions {task: (H, W, C)} for one (H, W, 3) uint8 RGB image of any size.

    The image is normalised with `serving`'s mean and std and padded with
    zeros (the mean colour) to a multiple of its `pad_multiple`, as the
    evaluation pipeline and the exported signature do; outputs are cropped back.
    """
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[-1] != 3 or image.dtype != np.uint8:
        raise ValueError(
            f"`image` must be an (H, W, 3) uint8 RGB array. Received: image with shape {image.shape} and dtype {image.dtype}"
        )
    height, width = image.shape[:2]
    multiple = serving.pad_multiple
    batch = np.zeros((1, -(-height // multiple) * multiple, -(-width // multiple) * multiple, 3), "float32")
    batch[0, :height, :width] = normalize(image, serving.mean, serving.std)
    outputs = model.predict_on_batch(batch)
    return {name: np.asarray(keras.ops.convert_to_numpy(value))[0, :height, :width] for name, value in outputs.items()}


def serving_outputs(task_specs: Sequence[TaskSpec], predictions: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The exported signature's outputs for one image, computed in numpy from raw predictions.

    The same post-processing as `keras_mtcl.export.serving_function` (table
    in that module's docstring), without the batch axis: the task's kind's
    `LabelKind.serve`, in `keras.ops` on any backend.

    Args:
        task_specs: the model's tasks.
        predictions: {task: (H, W, C)} raw outputs, as `predict_image` returns.

    Returns:
        {output name: array}: `<task>_classes` (H, W) int32 and
        `<task>_probabilities` (H, W, C) for classes, `<task>_probability`
        (H, W, 1) for binary tasks, depth (H, W, 1) clamped at 0, normals
        (H, W, 3) unit vectors; all float32 but the class ids.
    """
    outputs = {}
    for task in task_specs:
        y = keras.ops.convert_to_tensor(np.asarray(predictions[task.name], "float32"))
        served = task.label_kind.serve(task.name, y)
        outputs.update({name: np.asarray(keras.ops.convert_to_numpy(value)) for name, value in served.items()})
    return outputs


def panel_maps(task_specs: Sequence[TaskSpec], outputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Per-task maps for `visualize.prediction_panel` from serving outputs of one image.

    The panel reads raw predictions (logits for class and binary tasks);
    log-probabilities and the logit of a probability give the same pictures
    (the task's kind's `LabelKind.unserve`).

    Args:
        outputs: {output name: array} as `serving_outputs` returns (or a
            SavedModel's signature, batch axis removed).

    Returns:
        {task: (H, W, C)} float32.
    """
    return {task.name: task.label_kind.unserve(task.name, outputs) for task in task_specs}
