"""MTI-Net (Vandenhende et al., ECCV 2020) as in MTL-PyTorch."""

from __future__ import annotations

import keras
from keras import layers, ops

from keras_mtcl.decoders import register_decoder
from keras_mtcl.decoders.base import Decoder
from keras_mtcl.decoders.blocks import (
    FeaturePropagation,
    InitialPrediction,
    MultiModalDistillation,
    build_by_tracing,
)
from keras_mtcl.layers import ConvBNReLU, resize_to


@register_decoder("mtinet")
@keras.saving.register_keras_serializable(package="keras_mtcl")
class MTINetDecoder(Decoder):
    """MTI-Net: multi-scale initial predictions, propagation, distillation, aggregation.

    From the coarsest backbone scale to the finest: per task, an initial
    prediction module (two BasicBlocks to the scale's channel count, 1x1
    prediction conv; deeply supervised as `"auxiliary"` group `scale_<i>`,
    computed in training only)
    whose input is the backbone map concatenated with the task's propagated
    features from the coarser scale (upsampled); a feature propagation module
    (FPM) passes the tasks' features to the next finer scale. Each scale then
    runs multi-modal distillation; per task, the distilled maps of all scales
    are upsampled to the finest scale and concatenated, and a head
    conv1x1-BN-ReLU (its output is the task feature F_t) + 1x1 conv predicts.

    Args:
        tasks: list of `TaskSpec` (or their configs).

    Input: list of (B, H_i, W_i, C_i) maps, finest first (any number >= 1).
    Output: `"predictions"`, `"features"` ({task: (B, H_0, W_0, sum C_i)})
    at the finest scale; `"auxiliary"`: {"scale_<i>": {task: prediction}}.
    """

    def __init__(self, tasks, **kwargs):
        super().__init__(tasks, **kwargs)
        self.scales, self.propagations, self.distillations = [], [], []
        self.hidden_layers, self.output_layers = [], []

    def build(self, feature_shapes):
        names = [t.name for t in self.task_specs]
        outputs = [t.channels for t in self.task_specs]
        channels = [int(s[-1]) for s in feature_shapes]
        for i, c in enumerate(channels):
            self.scales.append(InitialPrediction(names, outputs, c, name=f"scale_{i}", dtype=self.dtype_policy))
            self.distillations.append(MultiModalDistillation(names, c, name=f"distillation_{i}", dtype=self.dtype_policy))
            # Scale 0 has nothing finer to propagate to.
            self.propagations.append(
                None if i == 0 else FeaturePropagation(names, c, name=f"propagation_{i}", dtype=self.dtype_policy)
            )
        total = sum(channels)
        for t in self.task_specs:
            self.hidden_layers.append(ConvBNReLU(total, 1, name=f"{t.name}_hidden", dtype=self.dtype_policy))
            self.output_layers.append(layers.Conv2D(t.channels, 1, name=f"{t.name}_out", dtype=self.dtype_policy))
        self.propagations = [p for p in self.propagations if p is not None]
        build_by_tracing(self, [tuple(s) for s in feature_shapes], auxiliary=True)

    def auxiliary_groups(self, feature_shapes) -> tuple[str, ...]:
        return tuple(f"scale_{i}" for i in range(len(feature_shapes)))

    def task_feature_shapes(self, feature_shapes) -> dict[str, tuple]:
        shape = tuple(feature_shapes[0][:-1]) + (sum(int(s[-1]) for s in feature_shapes),)
        return {t.name: shape for t in self.task_specs}

    def decode(self, features, training=None, auxiliary=False):
        num_scales = len(features)
        scale_features = [None] * num_scales
        auxiliary_outputs = {}
        propagated = None
        for i in reversed(range(num_scales)):
            scale_features[i], predictions = self.scales[i](features[i], propagated, training=training, predict=auxiliary)
            if auxiliary:
                auxiliary_outputs[f"scale_{i}"] = predictions
            if i > 0:
                propagated = self.propagations[i - 1](scale_features[i], training=training)
        distilled = [self.distillations[i](scale_features[i]) for i in range(num_scales)]
        size = ops.shape(features[0])[1:3]
        predictions, task_features = {}, {}
        for task, hidden, out in zip(self.task_specs, self.hidden_layers, self.output_layers):
            maps = [distilled[0][task.name]] + [resize_to(d[task.name], size) for d in distilled[1:]]
            task_features[task.name] = hidden(ops.concatenate(maps, axis=-1), training=training)
            predictions[task.name] = out(task_features[task.name])
        return {"predictions": predictions, "features": task_features, "auxiliary": auxiliary_outputs}
