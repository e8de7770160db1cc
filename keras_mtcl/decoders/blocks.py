"""Blocks of the distillation decoders (PAD-Net, MTI-Net), after MTL-PyTorch's definitions.

All blocks are NHWC Keras layers with `get_config`. Shapes use (B, H, W, C).
"""

from __future__ import annotations

import keras
from keras import layers, ops

from keras_mtcl.layers import ConvBNReLU, resize_to


def _bn(name, dtype):
    return layers.BatchNormalization(momentum=0.9, epsilon=1e-5, name=name, dtype=dtype)


@keras.saving.register_keras_serializable(package="keras_mtcl")
class BasicBlock(layers.Layer):
    """ResNet basic block: conv3x3-BN-ReLU-conv3x3-BN, plus the (projected) input, ReLU.

    The shortcut is a 1x1 conv + BN when the channel count changes.

    Input shape: (B, H, W, C_in). Output shape: (B, H, W, filters).
    """

    def __init__(self, filters: int, **kwargs):
        super().__init__(**kwargs)
        self.filters = int(filters)
        self.conv1 = ConvBNReLU(self.filters, 3, name="conv1", dtype=self.dtype_policy)
        self.conv2 = ConvBNReLU(self.filters, 3, activation=None, name="conv2", dtype=self.dtype_policy)
        self.shortcut = None

    def build(self, input_shape):
        if int(input_shape[-1]) != self.filters:
            self.shortcut = ConvBNReLU(self.filters, 1, activation=None, name="shortcut", dtype=self.dtype_policy)
            self.shortcut.build(input_shape)
        self.conv1.build(input_shape)
        self.conv2.build(tuple(input_shape[:-1]) + (self.filters,))

    def call(self, inputs, training=None):
        residual = inputs if self.shortcut is None else self.shortcut(inputs, training=training)
        x = self.conv2(self.conv1(inputs, training=training), training=training)
        return ops.relu(x + residual)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.filters,)

    def get_config(self):
        config = super().get_config()
        config.update(filters=self.filters)
        return config


@keras.saving.register_keras_serializable(package="keras_mtcl")
class Bottleneck(layers.Layer):
    """ResNet bottleneck (expansion 4): 1x1 -> 3x3 -> 1x1 convs with BN, identity shortcut, ReLU.

    Input shape: (B, H, W, channels). Output shape: (B, H, W, channels).
    """

    def __init__(self, channels: int, **kwargs):
        super().__init__(**kwargs)
        self.channels = int(channels)
        width = max(1, self.channels // 4)
        self.reduce = ConvBNReLU(width, 1, name="reduce", dtype=self.dtype_policy)
        self.conv = ConvBNReLU(width, 3, name="conv", dtype=self.dtype_policy)
        self.expand = ConvBNReLU(self.channels, 1, activation=None, name="expand", dtype=self.dtype_policy)

    def build(self, input_shape):
        if int(input_shape[-1]) != self.channels:
            raise ValueError(
                f"Bottleneck keeps its channel count: input has {input_shape[-1]}. Received: channels={self.channels}"
            )
        width_shape = tuple(input_shape[:-1]) + (max(1, self.channels // 4),)
        self.reduce.build(input_shape)
        self.conv.build(width_shape)
        self.expand.build(width_shape)

    def call(self, inputs, training=None):
        x = self.reduce(inputs, training=training)
        x = self.conv(x, training=training)
        return ops.relu(self.expand(x, training=training) + inputs)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update(channels=self.channels)
        return config


@keras.saving.register_keras_serializable(package="keras_mtcl")
class SpatialAttention(layers.Layer):
    """PAD-Net's message block: conv3x3(x) * sigmoid(conv3x3(x)).

    Input shape: (B, H, W, C). Output shape: (B, H, W, channels).
    """

    def __init__(self, channels: int, **kwargs):
        super().__init__(**kwargs)
        self.channels = int(channels)
        self.gate = layers.Conv2D(self.channels, 3, padding="same", use_bias=False, name="gate", dtype=self.dtype_policy)
        self.message = layers.Conv2D(
            self.channels, 3, padding="same", use_bias=False, name="message", dtype=self.dtype_policy
        )

    def build(self, input_shape):
        self.gate.build(input_shape)
        self.message.build(input_shape)

    def call(self, inputs):
        return self.message(inputs) * ops.sigmoid(self.gate(inputs))

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.channels,)

    def get_config(self):
        config = super().get_config()
        config.update(channels=self.channels)
        return config


@keras.saving.register_keras_serializable(package="keras_mtcl")
class SqueezeExcitation(layers.Layer):
    """Channel gating: x * sigmoid(W2 relu(W1 mean_hw(x))), reduction `ratio`.

    Input shape: (B, H, W, C). Output shape: (B, H, W, C).
    """

    def __init__(self, ratio: int = 16, **kwargs):
        super().__init__(**kwargs)
        self.ratio = int(ratio)
        self.squeeze = None
        self.excite = None

    def build(self, input_shape):
        channels = int(input_shape[-1])
        self.squeeze = layers.Dense(max(1, channels // self.ratio), activation="relu", name="squeeze", dtype=self.dtype_policy)
        self.excite = layers.Dense(channels, activation="sigmoid", name="excite", dtype=self.dtype_policy)
        self.squeeze.build((input_shape[0], channels))
        self.excite.build((input_shape[0], max(1, channels // self.ratio)))

    def call(self, inputs):
        weights = self.excite(self.squeeze(ops.mean(inputs, axis=(1, 2))))
        return inputs * weights[:, None, None, :]

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update(ratio=self.ratio)
        return config


@keras.saving.register_keras_serializable(package="keras_mtcl")
class MultiModalDistillation(layers.Layer):
    """Each task's features plus attention-gated messages from every other task's features.

    out_t = x_t + sum_{a != t} SpatialAttention_{t,a}(x_a)

    Args:
        task_names: the tasks, in order.
        channels: channels of every task's features.

    Input/output: {task: (B, H, W, channels)}.
    """

    def __init__(self, task_names, channels: int, **kwargs):
        super().__init__(**kwargs)
        self.task_names = list(task_names)
        self.channels = int(channels)
        self.messages = []  # one per ordered (target, source) pair, targets outer
        for target in self.task_names:
            for source in self.task_names:
                if source != target:
                    self.messages.append(
                        SpatialAttention(self.channels, name=f"{source}_to_{target}", dtype=self.dtype_policy)
                    )

    def build(self, input_shapes):
        for block in self.messages:
            block.build(input_shapes[self.task_names[0]])

    def call(self, features):
        out, blocks = {}, iter(self.messages)
        for target in self.task_names:
            total = features[target]
            for source in self.task_names:
                if source != target:
                    total = total + next(blocks)(features[source])
            out[target] = total
        return out

    def get_config(self):
        config = super().get_config()
        config.update(task_names=self.task_names, channels=self.channels)
        return config


@keras.saving.register_keras_serializable(package="keras_mtcl")
class InitialPrediction(layers.Layer):
    """Per task: two BasicBlocks to `channels`, then a 1x1 conv to the task's outputs.

    With `previous` features (MTI-Net), each task's propagated map from the
    coarser scale is upsampled x2 (bilinear) and concatenated to the input.

    Args:
        task_names: tasks, in order.
        task_channels: output channels per task (same order).
        channels: channels of each task's refined features.

    Input: (B, H, W, C) shared features [, {task: (B, H/2, W/2, C')}].
    Output: ({task: features (B, H, W, channels)}, {task: prediction (B, H, W, C_task)}); the
    predictions (deep supervision only) are computed when `predict=True`, else `{}`.
    """

    def __init__(self, task_names, task_channels, channels: int, **kwargs):
        super().__init__(**kwargs)
        self.task_names = list(task_names)
        self.task_channels = [int(c) for c in task_channels]
        self.channels = int(channels)
        self.refiners = [
            keras.Sequential(
                [BasicBlock(self.channels, name="block1", dtype=self.dtype_policy),
                 BasicBlock(self.channels, name="block2", dtype=self.dtype_policy)],
                name=f"{t}_refine",
            )
            for t in self.task_names
        ]
        self.predictors = [
            layers.Conv2D(c, 1, name=f"{t}_predict", dtype=self.dtype_policy)
            for t, c in zip(self.task_names, self.task_channels)
        ]

    def call(self, shared, previous=None, training=None, predict=True):
        features, predictions = {}, {}
        for name, refine, predictor in zip(self.task_names, self.refiners, self.predictors):
            x = shared
            if previous is not None:
                size = ops.shape(shared)[1:3]
                x = ops.concatenate([shared, resize_to(previous[name], size)], axis=-1)
            features[name] = refine(x, training=training)
            if predict:
                predictions[name] = predictor(features[name])
        return features, predictions

    def get_config(self):
        config = super().get_config()
        config.update(task_names=self.task_names, task_channels=self.task_channels, channels=self.channels)
        return config


@keras.saving.register_keras_serializable(package="keras_mtcl")
class FeaturePropagation(layers.Layer):
    """MTI-Net's feature propagation module (FPM).

    The tasks' features are concatenated (N tasks x C channels), a
    non-linear map gives per-channel attention over the tasks (softmax across
    tasks), the gated concatenation is reduced to C channels by a BasicBlock,
    and each task adds its own squeeze-excitation of that shared map to its
    features. Channel k of the concatenation is paired with task k mod N, as
    the reference's `view(B, C // N, N, H, W)` does.

    Input/output: {task: (B, H, W, C)}.
    """

    def __init__(self, task_names, channels: int, **kwargs):
        super().__init__(**kwargs)
        self.task_names = list(task_names)
        self.channels = int(channels)
        n = len(self.task_names)
        shared = n * self.channels
        self.non_linear = keras.Sequential(
            [
                BasicBlock(max(1, shared // 4), name="block1", dtype=self.dtype_policy),
                BasicBlock(max(1, shared // 4), name="block2", dtype=self.dtype_policy),
                layers.Conv2D(shared, 1, name="expand", dtype=self.dtype_policy),
            ],
            name="non_linear",
        )
        self.reduce = BasicBlock(self.channels, name="reduce", dtype=self.dtype_policy)
        self.excitations = [SqueezeExcitation(name=f"{t}_se", dtype=self.dtype_policy) for t in self.task_names]

    def call(self, features, training=None):
        n = len(self.task_names)
        concat = ops.concatenate([features[t] for t in self.task_names], axis=-1)
        attention = self.non_linear(concat, training=training)
        batch, height, width = ops.shape(concat)[0], ops.shape(concat)[1], ops.shape(concat)[2]
        grouped = (batch, height, width, self.channels, n)
        mask = ops.softmax(ops.reshape(attention, grouped), axis=-1)
        gated = ops.reshape(mask * ops.reshape(concat, grouped), (batch, height, width, self.channels * n))
        shared = self.reduce(gated, training=training)
        return {t: se(shared) + features[t] for t, se in zip(self.task_names, self.excitations)}

    def get_config(self):
        config = super().get_config()
        config.update(task_names=self.task_names, channels=self.channels)
        return config


def build_by_tracing(layer: layers.Layer, *input_shapes, **call_kwargs) -> None:
    """Creates every weight of `layer` by running its `call` on symbolic inputs of the given shapes."""
    symbolic = keras.tree.map_shape_structure(lambda s: keras.KerasTensor(s), input_shapes)
    # Layer.compute_output_spec traces `call` symbolically; sublayers build on the way.
    layer.compute_output_spec(*symbolic, **call_kwargs)
