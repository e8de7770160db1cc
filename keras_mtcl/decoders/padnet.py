"""PAD-Net (Xu et al., CVPR 2018) as used in MTL-PyTorch."""

from __future__ import annotations

import keras
from keras import layers, ops

from keras_mtcl.decoders import register_decoder
from keras_mtcl.decoders.base import Decoder
from keras_mtcl.decoders.blocks import Bottleneck, InitialPrediction, MultiModalDistillation, build_by_tracing
from keras_mtcl.layers import resize_to


@register_decoder("padnet")
@keras.saving.register_keras_serializable(package="keras_mtcl")
class PADNetDecoder(Decoder):
    """PAD-Net: initial per-task predictions, multi-modal distillation, final heads.

    The backbone pyramid is upsampled to its finest map and concatenated.
    Per task, two BasicBlocks map it to `channels` features and a 1x1 conv
    gives the initial prediction (deeply supervised, `"auxiliary"` group
    `"initial"`, computed in training only). Multi-modal distillation adds to each task's features
    attention-gated messages from every other task. Each task's final head
    is two Bottlenecks (its output is the task feature F_t that the
    regularizer reads) and a 1x1 prediction conv.

    Args:
        tasks: list of `TaskSpec` (or their configs).
        channels: channels of the per-task features (256 in MTL-PyTorch).

    Input: list of (B, H_i, W_i, C_i) maps, finest first.
    Output: `"predictions"` and `"features"` ({task: (B, H_0, W_0, channels)})
    at the finest map's size; `"auxiliary"`: {"initial": {task: prediction}}.
    """

    def __init__(self, tasks, channels: int = 256, **kwargs):
        super().__init__(tasks, **kwargs)
        if int(channels) < 4:
            raise ValueError(f"`channels` must be >= 4. Received: channels={channels}")
        specs = self.task_specs
        self.channels = int(channels)
        names = [t.name for t in specs]
        self.initial = InitialPrediction(names, [t.channels for t in specs], self.channels, name="initial", dtype=self.dtype_policy)
        self.distillation = MultiModalDistillation(names, self.channels, name="distillation", dtype=self.dtype_policy)
        self.heads = [
            keras.Sequential(
                [Bottleneck(self.channels, name="bottleneck1", dtype=self.dtype_policy),
                 Bottleneck(self.channels, name="bottleneck2", dtype=self.dtype_policy)],
                name=f"{t.name}_head",
            )
            for t in specs
        ]
        self.predictors = [layers.Conv2D(t.channels, 1, name=f"{t.name}_out", dtype=self.dtype_policy) for t in specs]

    def build(self, feature_shapes):
        build_by_tracing(self, [tuple(s) for s in feature_shapes], auxiliary=True)

    def auxiliary_groups(self, feature_shapes) -> tuple[str, ...]:
        return ("initial",)

    def task_feature_shapes(self, feature_shapes) -> dict[str, tuple]:
        shape = tuple(feature_shapes[0][:-1]) + (self.channels,)
        return {t.name: shape for t in self.task_specs}

    def decode(self, features, training=None, auxiliary=False):
        size = ops.shape(features[0])[1:3]
        shared = ops.concatenate([features[0]] + [resize_to(f, size) for f in features[1:]], axis=-1)
        initial_features, initial_predictions = self.initial(shared, training=training, predict=auxiliary)
        distilled = self.distillation(initial_features)
        predictions, task_features = {}, {}
        for task, head, predict in zip(self.task_specs, self.heads, self.predictors):
            task_features[task.name] = head(distilled[task.name], training=training)
            predictions[task.name] = predict(task_features[task.name])
        auxiliary_outputs = {"initial": initial_predictions} if auxiliary else {}
        return {"predictions": predictions, "features": task_features, "auxiliary": auxiliary_outputs}

    def get_config(self):
        config = super().get_config()
        config.update(channels=self.channels)
        return config
