"""`MultiTaskModel`: backbone + multi-task decoder (+ the contrastive regularizer in training)."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import keras
from keras import ops

from keras_mtcl.backend_compat import scale_loss_for_distribution
from keras_mtcl.decoders import get_decoder
from keras_mtcl.layers import resize_to
from keras_mtcl.losses import task_loss
from keras_mtcl.tasks import TaskSpec, validate_tasks


@keras.saving.register_keras_serializable(package="keras_mtcl")
class MultiTaskModel(keras.Model):
    """A multi-task dense prediction network trained with `model.fit` on any backend.

    The backbone maps images to a feature pyramid, the decoder of
    `framework` maps the pyramid to per-task predictions, which are resized
    (bilinear) to the input size. Task losses and their weights are applied
    in `compute_loss`, so `compile` takes no `loss`.

    In training (`training=True`) the model returns
    `{"predictions": {task: y}, "features": {task: F_t}, "auxiliary": {...}}`;
    `compute_loss` adds the task losses, any deep-supervision losses and, if
    `contrastive` is set, the cross-task contrastive term computed on the
    features. Otherwise (`predict`, `evaluate`, export) it returns
    `{task: y}` only: the regularizer's projectors are never on the inference
    path, so the inference model has exactly the baseline's computation.

    Args:
        backbone: Keras model mapping (B, H, W, C) images to a list of feature
            maps, finest first (see `keras_mtcl.backbones`).
        tasks: list of `TaskSpec` (or their configs), e.g.
            `keras_mtcl.tasks.task_set("nyud")`.
        framework: decoder name in `keras_mtcl.decoders` (`"baseline"`).
        decoder_options: keyword arguments of the decoder.
        contrastive: a `keras_mtcl.contrastive.CrossTaskContrastive` layer, or
            `None` for the baseline.
        input_channels: channels of the input images.

    Input shape: (B, H, W, input_channels) float images (normalised).
    Output: {task: (B, H, W, C_task)} in float32.

    Example:
    >>> from keras_mtcl import backbones, tasks
    >>> model = MultiTaskModel(backbones.get_backbone("tiny_cnn"), tasks.task_set("nyud"))
    >>> sorted(model.predict(np.zeros((1, 64, 64, 3)), verbose=0))
    ['depth', 'edge', 'normals', 'semseg']
    """

    def __init__(
        self,
        backbone: keras.Model,
        tasks: Sequence[TaskSpec],
        framework: str = "baseline",
        decoder_options: Mapping[str, Any] | None = None,
        contrastive: keras.layers.Layer | None = None,
        input_channels: int = 3,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if not isinstance(backbone, keras.Model):
            raise ValueError(f"`backbone` must be a keras.Model. Received: backbone={backbone!r}")
        self.task_specs: tuple[TaskSpec, ...] = tuple(validate_tasks(tasks))
        self.backbone = backbone
        self.framework = framework
        self.decoder_options = dict(decoder_options or {})
        self.decoder = get_decoder(framework, tasks=list(self.task_specs), **self.decoder_options)
        self.contrastive = contrastive
        if contrastive is not None:
            contrastive.bind(list(self.task_specs))
        self.input_channels = int(input_channels)
        self.task_loss_trackers = [keras.metrics.Mean(name=f"{t.name}_loss") for t in self.task_specs]
        if getattr(self.decoder, "has_auxiliary", False):
            self.auxiliary_loss_tracker = keras.metrics.Mean(name="auxiliary_loss")
        if contrastive is not None:
            self.contrastive_trackers = [keras.metrics.Mean(name=f"contrastive_{t.name}") for t in self.task_specs]
            self.triplet_fraction_tracker = keras.metrics.Mean(name="contrastive_triplet_fraction")
        self.build((None, None, None, self.input_channels))

    @property
    def task_names(self) -> list[str]:
        return [t.name for t in self.task_specs]

    def build(self, input_shape):
        if self.built:
            return
        feature_shapes = self.backbone.compute_output_shape(tuple(input_shape))
        if not isinstance(feature_shapes, (list, tuple)) or not isinstance(feature_shapes[0], (list, tuple)):
            raise ValueError(
                "`backbone` must return a list of feature maps (finest first). "
                f"Received output shapes: {feature_shapes}"
            )
        feature_shapes = [tuple(s) for s in feature_shapes]
        self.decoder.build(feature_shapes)
        if self.contrastive is not None:
            self.contrastive.build(self.decoder.feature_shapes(feature_shapes))
        self.built = True

    def call(self, images, training=None):
        features = self.backbone(images, training=training)
        outputs = self.decoder(list(features), training=training)
        size = ops.shape(images)[1:3]

        def to_input_size(group):
            return {name: resize_to(ops.cast(y, "float32"), size) for name, y in group.items()}

        predictions = to_input_size(outputs["predictions"])
        if not training:
            return predictions
        return {
            "predictions": predictions,
            "features": outputs["features"],
            "auxiliary": {group: to_input_size(ys) for group, ys in outputs["auxiliary"].items()},
        }

    def compile(self, optimizer="adam", loss=None, **kwargs):
        """Like `keras.Model.compile`, without `loss`: task losses come from the task specs."""
        if loss is not None:
            raise ValueError(
                "MultiTaskModel computes its task losses from its TaskSpecs; change a task's `loss` or "
                f"`loss_weight` there instead of passing `loss` to compile(). Received: loss={loss!r}"
            )
        super().compile(optimizer=optimizer, **kwargs)

    def compile_from_config(self, config):
        """Restores the compile state saved in a `.keras` file (optimizer included)."""
        config = keras.saving.deserialize_keras_object(config)
        config.pop("loss", None)
        self.compile(**config)
        if self.built:
            self.optimizer.build(self.trainable_variables)

    def _split_outputs(self, y_pred):
        """(predictions, features or None, auxiliary) from training or inference outputs."""
        if isinstance(y_pred, Mapping) and "predictions" in y_pred and "features" in y_pred:
            return y_pred["predictions"], y_pred["features"], y_pred.get("auxiliary", {})
        return y_pred, None, {}

    def _labels(self, y) -> dict:
        if not isinstance(y, Mapping):
            raise ValueError(
                f"Labels must be a dict {{task: label}} with keys {self.task_names}. Received: y of type {type(y).__name__}"
            )
        missing = [name for name in self.task_names if name not in y]
        if missing:
            raise ValueError(
                f"Labels are missing for tasks {missing}: the model predicts {self.task_names} but the labels "
                f"have {sorted(y)}. Build the model with the dataset's tasks. Received: y keys={sorted(y)}"
            )
        labels = {}
        for name in self.task_names:
            label = y[name]
            labels[name] = ops.expand_dims(label, -1) if len(label.shape) == 3 else label
        return labels

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        if sample_weight is not None:
            raise ValueError(
                "MultiTaskModel does not take sample weights; mark pixels to skip with the ignore value (255). "
                "Received: sample_weight is not None"
            )
        predictions, features, auxiliary = self._split_outputs(y_pred)
        labels = self._labels(y)
        total = ops.zeros((), "float32")
        auxiliary_total = ops.zeros((), "float32")
        for task, tracker in zip(self.task_specs, self.task_loss_trackers):
            loss = task_loss(task, labels[task.name], predictions[task.name])
            tracker.update_state(loss)
            total = total + task.loss_weight * loss
            for group in auxiliary.values():
                auxiliary_total = auxiliary_total + task.loss_weight * task_loss(
                    task, labels[task.name], group[task.name]
                )
        if auxiliary:
            self.auxiliary_loss_tracker.update_state(auxiliary_total)
            total = total + auxiliary_total
        if self.contrastive is not None and features is not None:
            regularizer = self.contrastive(features, labels, training=training)
            for task, tracker in zip(self.task_specs, self.contrastive_trackers):
                tracker.update_state(regularizer["per_task"][task.name])
            self.triplet_fraction_tracker.update_state(regularizer["triplet_fraction"])
            total = total + ops.cast(regularizer["loss"], "float32")
        # Regularisation losses of layers (kernel regularizers, add_loss).
        for extra in self.losses:
            total = total + ops.cast(extra, "float32")
        return scale_loss_for_distribution(total)

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        predictions, features, _ = self._split_outputs(y_pred)
        results = super().compute_metrics(x, y, predictions, sample_weight)
        if features is None:
            # Evaluation: the regularizer and deep supervision do not run, so their trackers say nothing.
            training_only = {m.name for m in self._training_only_trackers()}
            results = {name: value for name, value in results.items() if name not in training_only}
        return results

    def _training_only_trackers(self) -> list:
        trackers = list(getattr(self, "contrastive_trackers", []))
        for name in ("triplet_fraction_tracker", "auxiliary_loss_tracker"):
            if hasattr(self, name):
                trackers.append(getattr(self, name))
        return trackers

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "backbone": keras.saving.serialize_keras_object(self.backbone),
            "tasks": [t.get_config() for t in self.task_specs],
            "framework": self.framework,
            "decoder_options": dict(self.decoder_options),
            "contrastive": None
            if self.contrastive is None
            else keras.saving.serialize_keras_object(self.contrastive),
            "input_channels": self.input_channels,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["backbone"] = keras.saving.deserialize_keras_object(config["backbone"])
        if config.get("contrastive") is not None:
            config["contrastive"] = keras.saving.deserialize_keras_object(config["contrastive"])
        config["tasks"] = [TaskSpec.from_config(t) for t in config["tasks"]]
        return cls(**config)


class ModelFileError(ValueError):
    """A model path exists but is not a `.keras` archive (a folder, another file format, a broken archive)."""


def load_model(path, compile: bool = True) -> MultiTaskModel:
    """Loads a `.keras` file written by `MultiTaskModel.save`, on any backend.

    Imports every module that registers serialisable classes (decoders,
    backbones' layers, the regularizer) first, so a fresh process can load it.

    Raises:
        FileNotFoundError: nothing at `path`.
        ModelFileError: `path` is a folder, or a file that is not a `.keras`
            zip archive with a `config.json`.
    """
    import importlib
    import os
    import zipfile

    if os.path.isdir(path):
        raise ModelFileError(f"{path} is a folder, not a .keras model file; pass the .keras file apps/train.py wrote.")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no model file at {path}; train one with apps/train.py first.")
    if not zipfile.is_zipfile(path):
        raise ModelFileError(f"{path} is not a .keras model file (a zip archive written by model.save).")
    with zipfile.ZipFile(path) as archive:
        if "config.json" not in archive.namelist():
            raise ModelFileError(f"{path} is a zip archive without config.json, not a .keras model file.")

    from keras_mtcl import backbones, decoders

    for module in ("keras_mtcl.contrastive", "keras_mtcl.metrics"):
        importlib.import_module(module)
    decoders.list_decoders()
    backbones.list_backbones()
    return keras.saving.load_model(path, compile=compile)
