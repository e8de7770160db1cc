"""A small convolutional backbone for tests and quick runs."""

from __future__ import annotations

from typing import Sequence

import keras

from keras_mtcl.backbones import register_backbone
from keras_mtcl.layers import ConvBNReLU


@register_backbone("tiny_cnn")
def tiny_cnn(widths: Sequence[int] = (16, 32, 64, 128), input_channels: int = 3, name: str = "tiny_cnn") -> keras.Model:
    """Four-stage convolutional backbone returning features at strides 4, 8, 16, 32.

    A stride-2 stem, then one stride-2 conv-BN-ReLU and one stride-1
    conv-BN-ReLU per stage. About 0.3 M parameters with the default widths.

    Args:
        widths: channels of the four stages.
        input_channels: channels of the input image.

    Input shape: (B, H, W, input_channels).
    Output: list of four maps (B, H/4, W/4, widths[0]), ..., (B, H/32, W/32, widths[3]).
    """
    widths = tuple(int(w) for w in widths)
    if len(widths) != 4 or min(widths) < 1:
        raise ValueError(f"`widths` must be four positive integers. Received: widths={widths}")
    inputs = keras.Input((None, None, input_channels), name="images")
    x = ConvBNReLU(widths[0] // 2 or 1, 3, strides=2, name="stem")(inputs)
    features = []
    for i, width in enumerate(widths):
        x = ConvBNReLU(width, 3, strides=2, name=f"stage{i + 1}_down")(x)
        x = ConvBNReLU(width, 3, name=f"stage{i + 1}_conv")(x)
        features.append(x)
    return keras.Model(inputs, features, name=name)
