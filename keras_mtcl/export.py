"""Inference-only models, SavedModels with a serving signature, TF Serving folders.

A SavedModel is written from the TensorFlow backend. A model trained under
JAX or PyTorch is saved as `.keras` and exported from a TensorFlow-backend
process (`apps/export.py` does this).

The serving signature `serving_default` takes `images`: a (B, H, W, 3)
uint8 RGB batch of any size. Inside, it normalises (ImageNet mean/std by
default), pads H and W up to a multiple of `pad_multiple` with zeros (the
mean colour, as the evaluation pipeline pads), runs the model, crops back to
(H, W) and returns, per task:

| task kind | outputs |
|---|---|
| classes (`semseg`, `human_parts`) | `<task>_classes` (B, H, W) int32, `<task>_probabilities` (B, H, W, C) float32 |
| depth | `depth` (B, H, W, 1) float32 metres, clamped at 0 |
| normals | `normals` (B, H, W, 3) float32 unit vectors |
| binary (`edge`, `saliency`) | `<task>_probability` (B, H, W, 1) float32 |

No projector and no deep-supervision head is inside: the exported model is
`inference_model(model)`, which has exactly the baseline's weights.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import keras
import numpy as np

from keras_mtcl.model import MultiTaskModel
from keras_mtcl.preprocessing import IMAGENET_MEAN, IMAGENET_STD


class ExportError(RuntimeError):
    """The model cannot be exported as asked (wrong backend, bad target folder)."""


def inference_model(model: MultiTaskModel) -> MultiTaskModel:
    """A copy of `model` without the contrastive regularizer, with the same weights.

    Its parameters are exactly those of the baseline (backbone, decoder,
    heads) and its predictions equal `model.predict`'s.
    """
    config = model.get_config()
    config["contrastive"] = None
    copy = MultiTaskModel.from_config(config)
    copy.backbone.set_weights(model.backbone.get_weights())
    copy.decoder.set_weights(model.decoder.get_weights())
    return copy


def output_names(model: MultiTaskModel) -> list[str]:
    """Names of the serving outputs, in task order."""
    names = []
    for task in model.task_specs:
        if task.kind == "classes":
            names += [f"{task.name}_classes", f"{task.name}_probabilities"]
        elif task.kind == "binary":
            names.append(f"{task.name}_probability")
        else:
            names.append(task.name)
    return names


def _require_tensorflow_backend():
    if keras.backend.backend() != "tensorflow":
        raise ExportError(
            "SavedModel export runs on the TensorFlow backend. Save the model as .keras and export it from a "
            "process started with KERAS_BACKEND=tensorflow (apps/export.py does this). "
            f"Received: backend={keras.backend.backend()!r}"
        )


def serving_function(
    model: MultiTaskModel,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    pad_multiple: int = 32,
):
    """The serving computation: uint8 images (B, H, W, 3) -> {output name: tensor}.

    Runs under the TensorFlow backend; see the module docstring for outputs.
    """
    _require_tensorflow_backend()
    import tensorflow as tf

    if int(pad_multiple) < 1:
        raise ValueError(f"`pad_multiple` must be >= 1. Received: pad_multiple={pad_multiple}")
    mean = tf.constant(np.asarray(mean, "float32") * 255.0)
    std = tf.constant(np.asarray(std, "float32") * 255.0)

    def serve(images):
        tf.debugging.assert_equal(
            tf.shape(images)[-1], 3, message="`images` must be a (B, H, W, 3) uint8 RGB batch: wrong channel count"
        )
        x = (tf.cast(images, tf.float32) - mean) / std
        height, width = tf.shape(x)[1], tf.shape(x)[2]
        padded_h = (height + pad_multiple - 1) // pad_multiple * pad_multiple
        padded_w = (width + pad_multiple - 1) // pad_multiple * pad_multiple
        x = tf.pad(x, [[0, 0], [0, padded_h - height], [0, padded_w - width], [0, 0]])
        predictions = model(x, training=False)
        outputs = {}
        for task in model.task_specs:
            y = tf.cast(predictions[task.name], tf.float32)[:, :height, :width, :]
            if task.kind == "classes":
                outputs[f"{task.name}_classes"] = tf.argmax(y, axis=-1, output_type=tf.int32)
                outputs[f"{task.name}_probabilities"] = tf.nn.softmax(y, axis=-1)
            elif task.kind == "binary":
                outputs[f"{task.name}_probability"] = tf.sigmoid(y)
            elif task.kind == "depth":
                outputs[task.name] = tf.maximum(y, 0.0)
            else:
                outputs[task.name] = tf.math.l2_normalize(y, axis=-1, epsilon=1e-12)
        return outputs

    return serve


def export_saved_model(
    model: MultiTaskModel,
    directory: str | os.PathLike,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    pad_multiple: int = 32,
) -> Path:
    """Writes `inference_model(model)` as a SavedModel with the `serving_default` signature."""
    _require_tensorflow_backend()
    import tensorflow as tf

    directory = Path(directory)
    served = inference_model(model)
    archive = keras.export.ExportArchive()
    archive.track(served)
    archive.add_endpoint(
        name="serving_default",
        fn=serving_function(served, mean, std, pad_multiple),
        input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8, name="images")],
    )
    archive.write_out(str(directory), verbose=False)
    return directory


MODELS_CONFIG_TEMPLATE = """model_config_list {{
  config {{
    name: "{name}"
    base_path: "{base_path}"
    model_platform: "tensorflow"
  }}
}}
"""


def export_for_serving(
    model: MultiTaskModel,
    serving_root: str | os.PathLike,
    name: str,
    version: int = 1,
    overwrite: bool = False,
    base_path: str | None = None,
    **signature_options,
) -> Path:
    """Writes a TF Serving model folder `<serving_root>/<name>/<version>/` and `models.config`.

    Args:
        serving_root: the folder TF Serving is pointed at.
        name: model name in TF Serving's URLs (`/v1/models/<name>:predict`).
        version: integer version folder.
        overwrite: replace an existing version folder.
        base_path: `base_path` written into `models.config` (default: the
            absolute path of `<serving_root>/<name>`; use `/models/<name>` when
            the folder is mounted into the TF Serving container there).
        **signature_options: `mean`, `std`, `pad_multiple` of `serving_function`.

    Returns:
        The version folder.
    """
    if not name or "/" in name or name.startswith("."):
        raise ExportError(f"`name` must be a plain folder name. Received: name={name!r}")
    if int(version) < 1:
        raise ExportError(f"`version` must be a positive integer. Received: version={version}")
    model_dir = Path(serving_root) / name
    version_dir = model_dir / str(int(version))
    if version_dir.exists() and not overwrite:
        raise ExportError(f"{version_dir} exists: pass overwrite=True (--overwrite) or a new version.")
    temporary = model_dir / f".{int(version)}.tmp"
    if temporary.exists():
        import shutil

        shutil.rmtree(temporary)
    export_saved_model(model, temporary, **signature_options)
    if version_dir.exists():
        import shutil

        shutil.rmtree(version_dir)
    os.replace(temporary, version_dir)  # TF Serving never sees a half-written version
    config_text = MODELS_CONFIG_TEMPLATE.format(name=name, base_path=base_path or str(model_dir.resolve()))
    (Path(serving_root) / "models.config").write_text(config_text)
    return version_dir


def verify_saved_model(
    model: MultiTaskModel,
    saved_model_dir: str | os.PathLike,
    images: np.ndarray | None = None,
    pad_multiple: int = 32,
    tolerance: float = 1e-4,
) -> float:
    """Loads the SavedModel with TensorFlow and compares it with the Keras model's serving outputs.

    Args:
        images: (B, H, W, 3) uint8 test images (default: one random 61x83 image,
            a size that needs padding).

    Returns:
        The largest absolute difference over all outputs.

    Raises:
        ExportError: if an output is missing or differs by more than `tolerance`.
    """
    import tensorflow as tf

    if images is None:
        images = np.random.default_rng(0).integers(0, 256, (1, 61, 83, 3), dtype="uint8")
    loaded = tf.saved_model.load(str(saved_model_dir))
    served = loaded.signatures["serving_default"](images=tf.constant(images))
    expected = serving_function(inference_model(model), pad_multiple=pad_multiple)(tf.constant(images))
    worst = 0.0
    for name, value in expected.items():
        if name not in served:
            raise ExportError(f"The SavedModel has no output {name!r}; it has {sorted(served)}.")
        difference = float(np.max(np.abs(served[name].numpy().astype("float64") - value.numpy().astype("float64"))))
        if name.endswith("_classes"):
            # argmax may flip on exact ties; count mismatching pixels instead.
            difference = float(np.mean(served[name].numpy() != value.numpy()))
        worst = max(worst, difference)
        if difference > tolerance:
            raise ExportError(f"SavedModel output {name!r} differs from Keras by {difference:.3g} > {tolerance}.")
    return worst
