"""Small building blocks shared by backbones and decoders."""

from __future__ import annotations

import keras
from keras import layers, ops

from keras_mtcl.backend_compat import resize_images


@keras.saving.register_keras_serializable(package="keras_mtcl")
class ConvBNReLU(layers.Layer):
    """Convolution, batch normalisation, ReLU.

    Args:
        filters: output channels.
        kernel_size: square kernel size.
        strides: convolution stride.
        activation: applied after batch norm (`"relu"` or `None`).

    Input shape: (B, H, W, C_in). Output shape: (B, H / strides, W / strides, filters).
    """

    def __init__(self, filters: int, kernel_size: int = 3, strides: int = 1, activation: str | None = "relu", **kwargs):
        super().__init__(**kwargs)
        if int(filters) < 1:
            raise ValueError(f"`filters` must be >= 1. Received: filters={filters}")
        self.conv = layers.Conv2D(
            filters, kernel_size, strides=strides, padding="same", use_bias=False, name="conv", dtype=self.dtype_policy
        )
        self.bn = layers.BatchNormalization(momentum=0.9, epsilon=1e-5, name="bn", dtype=self.dtype_policy)
        self.filters = int(filters)
        self.kernel_size = int(kernel_size)
        self.strides = int(strides)
        self.activation = activation

    def build(self, input_shape):
        self.conv.build(input_shape)
        self.bn.build(self.conv.compute_output_shape(input_shape))

    def call(self, inputs, training=None):
        x = self.bn(self.conv(inputs), training=training)
        return ops.relu(x) if self.activation == "relu" else x

    def compute_output_shape(self, input_shape):
        return self.conv.compute_output_shape(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update(
            filters=self.filters, kernel_size=self.kernel_size, strides=self.strides, activation=self.activation
        )
        return config


def resize_to(x, size, interpolation: str = "bilinear"):
    """Resizes (B, h, w, C) to (B, size[0], size[1], C); no-op when already that size.

    Bilinear with half-pixel centres, like PyTorch's
    `F.interpolate(mode="bilinear", align_corners=False)` when upsampling.
    Resizing is done in float32 and cast back to the input dtype.
    """
    static = all(isinstance(d, int) for d in size)  # sizes are tensors in a TF graph with dynamic shapes
    if static and tuple(x.shape[1:3]) == tuple(size):
        return x
    dtype = x.dtype
    out = resize_images(ops.cast(x, "float32"), size, interpolation=interpolation)
    return ops.cast(out, dtype)
