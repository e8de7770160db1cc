"""`Decoder`: the base class of multi-task decoders, and the contract they keep."""

from __future__ import annotations

from typing import Sequence

import keras

from keras_mtcl.backbones.pyramid import FeaturePyramid
from keras_mtcl.tasks import TaskSpec, validate_tasks


class Decoder(keras.layers.Layer):
    """From a backbone's feature pyramid to per-task predictions, task features and deep-supervision outputs.

    Subclasses implement `decode(pyramid, training, auxiliary)` and
    `task_feature_shapes(pyramid_shapes)`, and name their deep-supervision
    groups in `auxiliary_groups(pyramid_shapes)` (none by default). Calling
    the layer returns

    - `"predictions"`: {task: (B, h_0, w_0, C_task)} at the finest level's
      resolution (the model resizes them to the input);
    - `"features"`: {task: F_t (B, h_0, w_0, C_f)}, the last task-specific
      map before each task's prediction layer (what the regularizer reads,
      METHOD.md section 7);
    - `"auxiliary"`: {group: {task: prediction}} for deep supervision, computed
      only when `auxiliary=True` (training); `{}` otherwise, so inference
      never runs the deep-supervision heads.

    Args:
        tasks: list of `TaskSpec` (or their configs).
        min_levels: fewest pyramid levels the decoder reads (class attribute).

    Input: list of (B, H_i, W_i, C_i) maps, finest first (`FeaturePyramid`).
    """

    min_levels = 1

    def __init__(self, tasks: Sequence[TaskSpec], **kwargs):
        super().__init__(**kwargs)
        self.task_specs: tuple[TaskSpec, ...] = tuple(validate_tasks(tasks))

    def check_pyramid(self, pyramid: FeaturePyramid) -> None:
        """Raises ValueError naming the problem when `pyramid` is not one this decoder can read."""
        if not isinstance(pyramid, FeaturePyramid):
            raise ValueError(f"`pyramid` must be a FeaturePyramid. Received: pyramid={pyramid!r}")
        if len(pyramid) < self.min_levels:
            raise ValueError(
                f"The {type(self).__name__} reads at least {self.min_levels} pyramid level(s); the backbone gives "
                f"{len(pyramid)}. Received: strides={pyramid.strides}"
            )

    def auxiliary_groups(self, pyramid_shapes) -> tuple[str, ...]:
        """Names of the deep-supervision groups (each {task: prediction}); none by default."""
        return ()

    def task_feature_shapes(self, pyramid_shapes) -> dict[str, tuple]:
        """{task: shape of F_t} for the given pyramid shapes."""
        raise NotImplementedError

    def decode(self, pyramid, training=None, auxiliary: bool = False) -> dict:
        """The decoder's computation; see the class docstring for the returned dict."""
        raise NotImplementedError

    def call(self, pyramid, training=None, auxiliary: bool = False):
        outputs = self.decode(list(pyramid), training=training, auxiliary=auxiliary)
        if not auxiliary:
            outputs = {**outputs, "auxiliary": {}}
        return outputs

    def get_config(self):
        config = super().get_config()
        config["tasks"] = [t.get_config() for t in self.task_specs]
        return config


__all__ = ["Decoder"]
