"""Image normalisation constants and numpy helpers, shared by pipelines, export and pictures."""

from __future__ import annotations

import numpy as np

# ImageNet statistics on the [0, 1] scale, as the reference codebases use.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def normalize(image: np.ndarray, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> np.ndarray:
    """uint8 RGB (..., 3) -> float32 (x / 255 - mean) / std."""
    return ((np.asarray(image, "float32") / 255.0 - np.asarray(mean, "float32")) / np.asarray(std, "float32")).astype(
        "float32"
    )


def denormalize(image: np.ndarray, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> np.ndarray:
    """Inverse of `normalize`, rounded and clipped to uint8."""
    image = np.asarray(image, "float32") * np.asarray(std, "float32") + np.asarray(mean, "float32")
    return (image * 255.0).round().clip(0, 255).astype("uint8")
