"""The multi-task baseline decoder (shared encoder, one head per task)."""

from __future__ import annotations

import keras
from keras import layers, ops

from keras_mtcl.decoders import register_decoder
from keras_mtcl.decoders.base import Decoder
from keras_mtcl.layers import ConvBNReLU, resize_to


@register_decoder("baseline")
@keras.saving.register_keras_serializable(package="keras_mtcl")
class BaselineDecoder(Decoder):
    """Multi-task baseline of MTL-PyTorch: concatenate the pyramid, one head per task.

    All backbone features are upsampled (bilinear) to the finest map and
    concatenated; each task then has a head conv-BN-ReLU (its hidden map,
    the task feature F_t) followed by a 1x1 convolution to the task's
    channels.

    Args:
        tasks: list of `TaskSpec` (or their configs).
        head_channels: channels of each head's hidden map; `None` uses the
            concatenated channel count, as MTL-PyTorch's HRNet head does.
        head_kernel_size: kernel size of the hidden convolution (1 in
            MTL-PyTorch's HRNet head).

    Input: list of (B, H_i, W_i, C_i) maps, finest first.
    Output: dict with `"predictions"` {task: (B, H_0, W_0, C_task)},
    `"features"` {task: (B, H_0, W_0, head_channels)} and `"auxiliary"` {}
    (no deep supervision).
    """

    def __init__(self, tasks, head_channels: int | None = None, head_kernel_size: int = 1, **kwargs):
        super().__init__(tasks, **kwargs)
        if head_channels is not None and int(head_channels) < 1:
            raise ValueError(f"`head_channels` must be >= 1 or None. Received: head_channels={head_channels}")
        if int(head_kernel_size) < 1:
            raise ValueError(f"`head_kernel_size` must be >= 1. Received: head_kernel_size={head_kernel_size}")
        self.head_channels = None if head_channels is None else int(head_channels)
        self.head_kernel_size = int(head_kernel_size)
        self.hidden_layers = []
        self.output_layers = []

    def _hidden_channels(self, feature_shapes) -> int:
        return self.head_channels or sum(int(s[-1]) for s in feature_shapes)

    def build(self, feature_shapes):
        channels = self._hidden_channels(feature_shapes)
        concat_shape = tuple(feature_shapes[0][:-1]) + (sum(int(s[-1]) for s in feature_shapes),)
        hidden_shape = tuple(feature_shapes[0][:-1]) + (channels,)
        for task in self.task_specs:
            hidden = ConvBNReLU(channels, self.head_kernel_size, name=f"{task.name}_hidden", dtype=self.dtype_policy)
            out = layers.Conv2D(task.channels, 1, name=f"{task.name}_out", dtype=self.dtype_policy)
            hidden.build(concat_shape)
            out.build(hidden_shape)
            self.hidden_layers.append(hidden)
            self.output_layers.append(out)

    def task_feature_shapes(self, feature_shapes) -> dict[str, tuple]:
        shape = tuple(feature_shapes[0][:-1]) + (self._hidden_channels(feature_shapes),)
        return {task.name: shape for task in self.task_specs}

    def decode(self, features, training=None, auxiliary=False):
        size = ops.shape(features[0])[1:3]
        x = ops.concatenate([features[0]] + [resize_to(f, size) for f in features[1:]], axis=-1)
        predictions, task_features = {}, {}
        for task, hidden, out in zip(self.task_specs, self.hidden_layers, self.output_layers):
            task_features[task.name] = hidden(x, training=training)
            predictions[task.name] = out(task_features[task.name])
        return {"predictions": predictions, "features": task_features, "auxiliary": {}}

    def get_config(self):
        config = super().get_config()
        config.update(head_channels=self.head_channels, head_kernel_size=self.head_kernel_size)
        return config
