"""Predictions on arbitrary images with a Keras model: normalise, pad, predict, crop back."""

from __future__ import annotations

from typing import Sequence

import keras
import numpy as np

from keras_mtcl.model import MultiTaskModel
from keras_mtcl.preprocessing import IMAGENET_MEAN, IMAGENET_STD, normalize


def predict_image(
    model: MultiTaskModel,
    image: np.ndarray,
    pad_multiple: int = 32,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> dict[str, np.ndarray]:
    """Raw predictions {task: (H, W, C)} for one (H, W, 3) uint8 RGB image of any size.

    The image is normalised like the training data and padded with zeros
    (the mean colour) to a multiple of `pad_multiple`, as the evaluation
    pipeline and the exported signature do; outputs are cropped back.
    """
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[-1] != 3 or image.dtype != np.uint8:
        raise ValueError(
            f"`image` must be an (H, W, 3) uint8 RGB array. Received: image with shape {image.shape} and dtype {image.dtype}"
        )
    height, width = image.shape[:2]
    padded_h = -(-height // pad_multiple) * pad_multiple
    padded_w = -(-width // pad_multiple) * pad_multiple
    batch = np.zeros((1, padded_h, padded_w, 3), "float32")
    batch[0, :height, :width] = normalize(image, mean, std)
    outputs = model.predict_on_batch(batch)
    return {name: np.asarray(keras.ops.convert_to_numpy(value))[0, :height, :width] for name, value in outputs.items()}
