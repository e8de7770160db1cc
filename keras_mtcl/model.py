"""`MultiTaskModel`: the inference network (backbone + decoder), and loading `.keras` files.

Training-only parts (the regularizer, deep-supervision losses, loss trackers)
live in `keras_mtcl.trainer.MultiTaskTrainer`, which wraps this model; the
model itself never contains them, so what is exported is what is trained
minus nothing.
"""

from __future__ import annotations

import copy
from typing import Any, Mapping, Sequence

import keras
from keras import ops

from keras_mtcl.backbones.pyramid import FeaturePyramid
from keras_mtcl.decoders import get_decoder
from keras_mtcl.layers import resize_to
from keras_mtcl.tasks import TaskSpec, validate_tasks


@keras.saving.register_keras_serializable(package="keras_mtcl")
class MultiTaskModel(keras.Model):
    """A multi-task dense prediction network: backbone, decoder, predictions at the input size.

    The backbone maps images to a feature pyramid (`FeaturePyramid`, checked
    against the decoder's contract at build time), the decoder maps the
    pyramid to per-task predictions, which are resized (bilinear) to the
    input size. `call` always returns `{task: (B, H, W, C_task)}`; the
    decoder's deep-supervision heads are never run here. Train it with
    `keras_mtcl.trainer.MultiTaskTrainer`, which adds the task losses, deep
    supervision and the regularizer.

    Args:
        backbone: Keras model mapping (B, H, W, C) images to a list of feature
            maps, finest first (see `keras_mtcl.backbones`).
        tasks: list of `TaskSpec` (or their configs), e.g.
            `keras_mtcl.tasks.task_set("nyud")`.
        decoder: decoder name in `keras_mtcl.decoders` (`"baseline"`,
            `"padnet"`, `"mtinet"`).
        decoder_options: keyword arguments of the decoder.
        input_channels: channels of the input images.

    Input shape: (B, H, W, input_channels) float images (normalised).
    Output: {task: (B, H, W, C_task)} in float32.

    Example:
    >>> import numpy as np
    >>> from keras_mtcl import backbones, tasks
    >>> model = MultiTaskModel(backbones.get_backbone("tiny_cnn", widths=(8, 8, 16, 16)), tasks.task_set("nyud"))
    >>> outputs = model.predict(np.zeros((1, 32, 48, 3)), verbose=0)
    >>> {name: y.shape for name, y in sorted(outputs.items())}
    {'depth': (1, 32, 48, 1), 'edge': (1, 32, 48, 1), 'normals': (1, 32, 48, 3), 'semseg': (1, 32, 48, 40)}
    """

    def __init__(
        self,
        backbone: keras.Model,
        tasks: Sequence[TaskSpec],
        decoder: str = "baseline",
        decoder_options: Mapping[str, Any] | None = None,
        input_channels: int = 3,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if not isinstance(backbone, keras.Model):
            raise ValueError(f"`backbone` must be a keras.Model. Received: backbone={backbone!r}")
        if not isinstance(decoder, str):
            raise ValueError(f"`decoder` must be the name of a registered decoder. Received: decoder={decoder!r}")
        self.task_specs: tuple[TaskSpec, ...] = tuple(validate_tasks(tasks))
        self.backbone = backbone
        self.decoder_name = decoder
        self.decoder_options = dict(decoder_options or {})
        self.decoder = get_decoder(decoder, tasks=list(self.task_specs), **self.decoder_options)
        self.input_channels = int(input_channels)
        self.pyramid = FeaturePyramid.of(backbone, input_channels=self.input_channels)
        self.decoder.check_pyramid(self.pyramid)
        self.build((None, None, None, self.input_channels))

    @property
    def task_names(self) -> list[str]:
        return [t.name for t in self.task_specs]

    def build(self, input_shape):
        if self.built:
            return
        pyramid_shapes = self.backbone.compute_output_shape(tuple(input_shape))
        self.decoder.build([tuple(s) for s in pyramid_shapes])
        self.built = True

    def pyramid_shapes(self, input_shape=(None, None, None, None)) -> list[tuple]:
        """Shapes of the backbone's maps for images of `input_shape`."""
        input_shape = tuple(input_shape[:3]) + (self.input_channels,)
        return [tuple(s) for s in self.backbone.compute_output_shape(input_shape)]

    def task_feature_shapes(self, input_shape=(None, None, None, None)) -> dict[str, tuple]:
        """{task: shape of F_t} for images of `input_shape`."""
        return self.decoder.task_feature_shapes(self.pyramid_shapes(input_shape))

    def auxiliary_groups(self) -> tuple[str, ...]:
        """Names of the decoder's deep-supervision groups."""
        return tuple(self.decoder.auxiliary_groups(self.pyramid_shapes()))

    def _decode(self, images, training, auxiliary):
        pyramid = self.backbone(images, training=training)
        return self.decoder(list(pyramid), training=training, auxiliary=auxiliary)

    def call(self, images, training=None):
        outputs = self._decode(images, training, auxiliary=False)
        return _to_size(outputs["predictions"], ops.shape(images)[1:3])

    def task_features(self, images, training=False) -> dict:
        """{task: F_t (B, h, w, C_f)}: the decoder's last task-specific maps, at the decoder's resolution."""
        return self._decode(images, training, auxiliary=False)["features"]

    def training_outputs(self, images, training=True) -> dict:
        """One forward pass for training: the trainer protocol of `keras_mtcl.trainer`.

        Returns:
            {"predictions": {task: (B, H, W, C)} at the input size,
             "features": {task: F_t},
             "auxiliary": {group: {task: (B, H, W, C)}} at the input size}.
        """
        outputs = self._decode(images, training, auxiliary=True)
        size = ops.shape(images)[1:3]
        return {
            "predictions": _to_size(outputs["predictions"], size),
            "features": outputs["features"],
            "auxiliary": {group: _to_size(ys, size) for group, ys in outputs["auxiliary"].items()},
        }

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "backbone": keras.saving.serialize_keras_object(self.backbone),
            "tasks": [t.get_config() for t in self.task_specs],
            "decoder": self.decoder_name,
            "decoder_options": dict(self.decoder_options),
            "input_channels": self.input_channels,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        if "framework" in config or "contrastive" in config:
            raise LegacyModelError(
                "This model was saved by keras_mtcl 0.1, whose MultiTaskModel held the regularizer and trained "
                "itself; 0.2 keeps them apart (MultiTaskModel + MultiTaskTrainer). Load it with "
                "keras_mtcl.model.load_model, which converts it."
            )
        # A copy: deserialising a functional model pops keys from its config, which would leave the caller's
        # config unusable for a second model.
        config["backbone"] = keras.saving.deserialize_keras_object(copy.deepcopy(config["backbone"]))
        config["tasks"] = [TaskSpec.from_config(t) for t in config["tasks"]]
        return cls(**config)


def _to_size(predictions: Mapping, size) -> dict:
    """Resizes each prediction to `size` (bilinear) in float32."""
    return {name: resize_to(ops.cast(y, "float32"), size) for name, y in predictions.items()}


class LegacyModelError(ValueError):
    """A `.keras` file in the v0.1 layout was given to plain `keras.saving.load_model`."""


class ModelFileError(ValueError):
    """A model path exists but is not a `.keras` archive (a folder, another file format, a broken archive)."""


# What keras_mtcl saves: the inference network, or a trainer holding one.
_SAVED_CLASSES = ("MultiTaskModel", "MultiTaskTrainer")


def load_model(path, compile: bool = False) -> MultiTaskModel:
    """Loads a `.keras` file written by `MultiTaskModel.save` (or by keras_mtcl 0.1), on any backend.

    Imports every module that registers serialisable classes (decoders,
    backbones' layers) first, so a fresh process can load it. A file in the
    0.1 layout (the model held the regularizer and its optimizer) is
    converted: its backbone and decoder weights are loaded into a 0.2
    `MultiTaskModel`; the projectors and the optimizer state are left out
    (they are training state, kept by the run's `backup/` for resuming).

    Args:
        path: the `.keras` file.
        compile: restore a compile state saved in the file, if any (files
            written by `MultiTaskModel.save` have none).

    Raises:
        FileNotFoundError: nothing at `path`.
        ModelFileError: `path` is a folder, or a file that is not a `.keras`
            zip archive with a `config.json`, holds another kind of model,
            cannot be loaded, or is a 0.1 file that cannot be converted.
    """
    import json
    import os
    import zipfile

    if os.path.isdir(path):
        raise ModelFileError(f"{path} is a folder, not a .keras model file; pass the .keras file mtcl-train wrote.")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no model file at {path}; train one with mtcl-train first.")
    if not zipfile.is_zipfile(path):
        raise ModelFileError(f"{path} is not a .keras model file (a zip archive written by model.save).")
    with zipfile.ZipFile(path) as archive:
        if "config.json" not in archive.namelist():
            raise ModelFileError(f"{path} is a zip archive without config.json, not a .keras model file.")
        try:
            config = json.loads(archive.read("config.json"))
        except (ValueError, OSError, zipfile.BadZipFile) as error:
            raise ModelFileError(f"{path} has an unreadable config.json ({error}), not a .keras model file.") from None

    _register_serializables()
    inner = config.get("config", {}) if isinstance(config, dict) else {}
    class_name = config.get("class_name") if isinstance(config, dict) else None
    if class_name not in _SAVED_CLASSES:
        raise ModelFileError(
            f"{path} holds a {class_name or 'non-Keras'} model, not a keras_mtcl MultiTaskModel; pass a model.keras "
            "written by mtcl-train or MultiTaskModel.save."
        )
    if class_name == "MultiTaskModel" and ("framework" in inner or "contrastive" in inner):
        return _convert_v01(path, inner)
    try:
        model = keras.saving.load_model(path, compile=compile)
    except (KeyError, TypeError, AttributeError, ValueError, OSError) as error:
        # Keras reports a damaged archive or an edited config with any of these types.
        raise ModelFileError(f"{path} cannot be loaded ({type(error).__name__}: {error}); train or save it again.") from error
    return model


def _register_serializables() -> None:
    from keras_mtcl import backbones, decoders

    decoders.list_decoders()
    backbones.list_backbones()


def _convert_v01(path, config: Mapping) -> MultiTaskModel:
    """A 0.2 `MultiTaskModel` with the backbone and decoder weights of a 0.1 `.keras` file."""
    import os
    import tempfile
    import zipfile

    import h5py

    decoder = config.get("framework", "baseline")
    config = {k: v for k, v in config.items() if k not in ("contrastive", "framework")}
    config["decoder"] = decoder
    try:
        model = MultiTaskModel.from_config(config)
    except Exception as error:  # noqa: BLE001 - any failure means the file cannot be converted
        raise ModelFileError(
            f"{path} was saved by keras_mtcl 0.1 and cannot be converted ({type(error).__name__}: {error}); "
            "train it again with this version."
        ) from error
    with tempfile.TemporaryDirectory() as folder:
        with zipfile.ZipFile(path) as archive:
            archive.extract("model.weights.h5", folder)
        source = os.path.join(folder, "model.weights.h5")
        target = os.path.join(folder, "inference.weights.h5")
        with h5py.File(source, "r") as old, h5py.File(target, "w") as new:
            # Only the inference network's groups: the projectors and optimizer state are training state.
            for group in ("backbone", "decoder", "vars"):
                if group in old:
                    old.copy(group, new)
        model.load_weights(target)
    return model
