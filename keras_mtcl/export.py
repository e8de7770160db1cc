"""Inference-only models, SavedModels with two serving signatures, TF Serving folders.

A SavedModel is written from the TensorFlow backend. A model trained under
JAX or PyTorch is saved as `.keras` and exported from a TensorFlow-backend
process (`mtcl-export` does this).

The signature `serving_default` takes `images`: a (B, H, W, 3)
uint8 RGB batch of any size. Inside, it normalises with the `ServingConfig`'s
mean and std (ImageNet's by default), pads H and W up to a multiple of its
`pad_multiple` with zeros (the mean colour, as the evaluation pipeline pads),
runs the model, crops back to (H, W) and returns, per task:

| task kind | outputs |
|---|---|
| classes (`semseg`, `human_parts`) | `<task>_classes` (B, H, W) int32, `<task>_probabilities` (B, H, W, C) float32 |
| depth | `depth` (B, H, W, 1) float32 metres, clamped at 0 |
| normals | `normals` (B, H, W, 3) float32 unit vectors |
| binary (`edge`, `saliency`) | `<task>_probability` (B, H, W, 1) float32 |

The second signature `serving_bytes` takes `images_bytes`: a (B,) string
batch of encoded JPEG, PNG, GIF (first frame) or BMP files, the form TF
Serving's REST API builds from `{"b64": ...}` values. It decodes them to
(B, H, W, 3) uint8 RGB (grey images are repeated to three channels, alpha is
dropped) and runs the same computation, so it returns the same outputs as
`serving_default` on the decoded pixels. All images of one call must have the
same height and width (they form one batch); a call with images of different
sizes fails with a message saying so. Bytes that are no image fail in
TensorFlow's decoder ("Unknown image file format. One of JPEG, ... required").

No projector and no deep-supervision head is inside: the exported model is
the inference `MultiTaskModel` (a `MultiTaskTrainer` given here is unwrapped
to its `model`), which has exactly the baseline's weights.

Beside the SavedModel, `assets.extra/tasks.json` (a folder that TensorFlow
and TF Serving leave alone) records the task specs, output names, each
signature's input and the `ServingConfig` (mean, std, pad multiple);
`load_saved_model` reads it back.
`docker_command` gives the `docker run` line for a serving root, with the
`tensorflow/serving` image of the TensorFlow version that exports.

`export_onnx` converts the same serving computation to ONNX with tf2onnx
(`pip install "keras_mtcl[onnx]"`): one input `images` (B, H, W, 3) uint8 with
dynamic B, H and W, and the outputs above, by name.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, Callable, Sequence

import keras
import numpy as np

from keras_mtcl import optional
from keras_mtcl.model import MultiTaskModel
from keras_mtcl.preprocessing import IMAGENET_MEAN, IMAGENET_STD
from keras_mtcl.tasks import TaskSpec

if TYPE_CHECKING:
    import tensorflow as tf

# Where the task specs travel with a SavedModel, relative to its folder.
TASKS_FILE = Path("assets.extra") / "tasks.json"
ONNX_OPSET = 17

# Signature names and their inputs. TF Serving's REST API decodes `{"b64": ...}` JSON values into the bytes of a
# DT_STRING input; `_bytes` is the name suffix it gives binary tensors (string outputs so named come back in b64).
SERVING_DEFAULT = "serving_default"
SERVING_BYTES = "serving_bytes"
SIGNATURES = (SERVING_DEFAULT, SERVING_BYTES)
IMAGES_INPUT = "images"
IMAGES_BYTES_INPUT = "images_bytes"


class ExportError(RuntimeError):
    """The model cannot be exported as asked (wrong backend, bad target folder, failed check)."""


class SavedModelNotFoundError(FileNotFoundError):
    """A folder given as an exported model holds no SavedModel."""


@dataclasses.dataclass(frozen=True)
class ServingConfig:
    """How served images are prepared: the normalisation and the padding of every export and prediction.

    Checks itself when built (`ValueError` naming the field and the value
    received) and stores canonical values (float tuples, an int), so equal
    configs compare equal. Exports write it to `assets.extra/tasks.json`
    (`to_metadata`); `from_metadata` reads it back.

    Attributes:
        mean: RGB mean on the 0..1 scale, subtracted after dividing by 255.
        std: RGB standard deviation on the 0..1 scale (each > 0).
        pad_multiple: H and W are padded with zeros (the mean colour) up to a
            multiple of this (a positive integer; the backbones' largest stride).

    Example:
    >>> config = ServingConfig(pad_multiple=16)
    >>> config.mean, config.pad_multiple
    ((0.485, 0.456, 0.406), 16)
    >>> ServingConfig.from_metadata(config.to_metadata()) == config
    True
    >>> ServingConfig(pad_multiple=0)
    Traceback (most recent call last):
    ...
    ValueError: `pad_multiple` must be a positive integer. Received: pad_multiple=0
    """

    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    pad_multiple: int = 32

    def __post_init__(self):
        for name in ("mean", "std"):
            value = getattr(self, name)
            try:
                numbers = tuple(float(v) for v in value)
            except (TypeError, ValueError):
                numbers = ()
            if len(numbers) != 3 or not all(math.isfinite(v) for v in numbers) or (name == "std" and min(numbers) <= 0):
                rule = "three finite numbers" + (", each > 0" if name == "std" else "")
                raise ValueError(f"`{name}` must be {rule} (R, G, B on the 0..1 scale). Received: {name}={value!r}")
            object.__setattr__(self, name, numbers)
        multiple = self.pad_multiple
        if isinstance(multiple, bool) or not isinstance(multiple, (int, np.integer)) or multiple < 1:
            raise ValueError(f"`pad_multiple` must be a positive integer. Received: pad_multiple={multiple!r}")
        object.__setattr__(self, "pad_multiple", int(multiple))

    def to_metadata(self) -> dict:
        """`{"mean": [...], "std": [...], "pad_multiple": n}`, as `tasks.json` holds them."""
        return {"mean": list(self.mean), "std": list(self.std), "pad_multiple": self.pad_multiple}

    @classmethod
    def from_metadata(cls, metadata: dict) -> ServingConfig:
        """The config in an export's metadata (`tasks.json`); the defaults for fields it lacks."""
        return cls(**{f.name: metadata[f.name] for f in dataclasses.fields(cls) if f.name in metadata})


def inference_model(model) -> MultiTaskModel:
    """The inference network of `model`: itself, or a `MultiTaskTrainer`'s `model`.

    Raises:
        ExportError: `model` is neither.
    """
    inner = getattr(model, "model", model)
    if not isinstance(inner, MultiTaskModel):
        raise ExportError(
            f"Export takes a keras_mtcl MultiTaskModel (or a MultiTaskTrainer holding one). Received: model={type(model).__name__}"
        )
    return inner


def output_names(model: MultiTaskModel) -> list[str]:
    """Names of the serving outputs, in task order (each task's kind's `LabelKind.output_names`)."""
    return [name for task in model.task_specs for name in task.label_kind.output_names(task.name)]


def _require_tensorflow_backend():
    if keras.backend.backend() != "tensorflow":
        raise ExportError(
            "SavedModel export runs on the TensorFlow backend. Save the model as .keras and export it from a "
            "process started with KERAS_BACKEND=tensorflow (mtcl-export does this). "
            f"Received: backend={keras.backend.backend()!r}"
        )


def serving_function(model: MultiTaskModel, serving: ServingConfig = ServingConfig()):
    """The serving computation: uint8 images (B, H, W, 3) -> {output name: tensor}.

    Normalises and pads as `serving` says. Runs under the TensorFlow backend;
    see the module docstring for outputs.
    """
    _require_tensorflow_backend()
    import tensorflow as tf

    pad_multiple = serving.pad_multiple
    # numpy, not tf.constant: an eager tensor would be captured as an extra graph input (tf2onnx keeps it as one).
    mean = np.asarray(serving.mean, "float32") * 255.0
    std = np.asarray(serving.std, "float32") * 255.0

    def serve(images):
        channels = tf.debugging.assert_equal(
            tf.shape(images)[-1], 3, message="`images` must be a (B, H, W, 3) uint8 RGB batch: wrong channel count"
        )
        # A runtime check after the channel count's: the signature declares rank 4, but a caller may still feed
        # a single (H, W, 3) image.
        with tf.control_dependencies([channels] if channels is not None else []):
            images = tf.ensure_shape(images, [None, None, None, 3], name="images_must_be_B_H_W_3")
        tf.debugging.assert_positive(
            tf.shape(images)[:3],
            message="`images` must hold at least one image of at least 1x1 pixels: (B, H, W, 3) with B, H, W >= 1",
        )
        x = (tf.cast(images, tf.float32) - tf.constant(mean)) / tf.constant(std)
        height, width = tf.shape(x)[1], tf.shape(x)[2]
        padded_h = (height + pad_multiple - 1) // pad_multiple * pad_multiple
        padded_w = (width + pad_multiple - 1) // pad_multiple * pad_multiple
        x = tf.pad(x, [[0, 0], [0, padded_h - height], [0, padded_w - width], [0, 0]])
        predictions = model(x, training=False)
        outputs = {}
        for task in model.task_specs:
            y = tf.cast(predictions[task.name], tf.float32)[:, :height, :width, :]
            # keras.ops of the kind's post-processing: TensorFlow ops on this backend.
            outputs.update(task.label_kind.serve(task.name, y))
        return outputs

    return serve


def decode_images(images_bytes: tf.Tensor | Sequence[bytes]) -> tf.Tensor:
    """Decodes a (B,) string batch of encoded images to a (B, H, W, 3) uint8 RGB batch (TensorFlow ops).

    JPEG, PNG, GIF (first frame) and BMP; 16-bit PNGs are scaled to uint8, grey
    images repeated to three channels, alpha dropped. All B images must have the
    same height and width, and B must be at least 1.
    """
    import tensorflow as tf

    images_bytes = tf.convert_to_tensor(images_bytes, tf.string)
    count = tf.debugging.assert_positive(
        tf.size(images_bytes), message=f"`{IMAGES_BYTES_INPUT}` must hold at least one encoded image"
    )

    def decode_one(data):
        image = tf.io.decode_image(data, channels=3, dtype=tf.uint8, expand_animations=False)
        # Flat pixels as one ragged row: map_fn cannot stack images of unequal sizes, and the size check below
        # should say what is wrong instead of failing inside the stacking.
        return tf.RaggedTensor.from_tensor(tf.reshape(image, [1, -1]))[0], tf.shape(image)[:2]

    with tf.control_dependencies([count] if count is not None else []):
        pixels, sizes = tf.map_fn(
            decode_one,
            images_bytes,
            fn_output_signature=(tf.RaggedTensorSpec([None], tf.uint8, ragged_rank=0), tf.TensorSpec([2], tf.int32)),
        )
    same = tf.debugging.assert_equal(
        sizes,
        tf.broadcast_to(sizes[:1], tf.shape(sizes)),
        message=f"All images of one `{IMAGES_BYTES_INPUT}` batch must have the same height and width; "
        "send images of other sizes in separate requests. (height, width) per image",
        summarize=16,
    )
    with tf.control_dependencies([same] if same is not None else []):
        return tf.reshape(pixels.flat_values, tf.concat([tf.shape(sizes)[:1], sizes[0], [3]], axis=0))


def bytes_serving_function(serve: Callable[[tf.Tensor], dict[str, tf.Tensor]]) -> Callable[[tf.Tensor], dict[str, tf.Tensor]]:
    """The `serving_bytes` computation: (B,) encoded images -> `serve(decode_images(...))`.

    Args:
        serve: the images (B, H, W, 3) uint8 -> {output name: tensor} function
            of `serving_function`, so both signatures share one computation.
    """

    def serve_bytes(images_bytes):
        return serve(decode_images(images_bytes))

    return serve_bytes


def export_saved_model(
    model: MultiTaskModel, directory: str | os.PathLike, serving: ServingConfig = ServingConfig()
) -> Path:
    """Writes `inference_model(model)` as a SavedModel with the `serving_default` and `serving_bytes` signatures.

    `serving_default` takes `images` (B, H, W, 3) uint8; `serving_bytes` takes
    `images_bytes` (B,) encoded image files (module docstring). Also writes
    `<directory>/assets.extra/tasks.json` (task specs, output names, each
    signature's input, and `serving`: mean, std, pad multiple).
    """
    _require_tensorflow_backend()
    import tensorflow as tf

    directory = Path(directory)
    served = inference_model(model)
    archive = keras.export.ExportArchive()
    archive.track(served)
    serve = serving_function(served, serving)
    archive.add_endpoint(
        name=SERVING_DEFAULT,
        fn=serve,
        input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8, name=IMAGES_INPUT)],
    )
    archive.add_endpoint(
        name=SERVING_BYTES,
        fn=bytes_serving_function(serve),
        input_signature=[tf.TensorSpec([None], tf.string, name=IMAGES_BYTES_INPUT)],
    )
    archive.write_out(str(directory), verbose=False)
    metadata = {
        "tasks": [task.get_config() for task in served.task_specs],
        "outputs": output_names(served),
        "signatures": {SERVING_DEFAULT: IMAGES_INPUT, SERVING_BYTES: IMAGES_BYTES_INPUT},
        **serving.to_metadata(),
    }
    (directory / TASKS_FILE).parent.mkdir(parents=True, exist_ok=True)
    (directory / TASKS_FILE).write_text(json.dumps(metadata, indent=2))
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
    serving: ServingConfig = ServingConfig(),
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
        serving: normalisation and padding of the signatures.

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
    export_saved_model(model, temporary, serving)
    if version_dir.exists():
        import shutil

        shutil.rmtree(version_dir)
    os.replace(temporary, version_dir)  # TF Serving never sees a half-written version
    config_text = MODELS_CONFIG_TEMPLATE.format(name=name, base_path=base_path or str(model_dir.resolve()))
    (Path(serving_root) / "models.config").write_text(config_text)
    return version_dir


def serving_image(tf_version: str | None = None) -> str:
    """The `tensorflow/serving` Docker image of the TensorFlow release that exports (default: this one's).

    A TF Serving older than the TensorFlow that wrote a SavedModel may lack
    ops it uses; the image of the same release knows them.
    """
    if tf_version is None:
        import tensorflow as tf

        tf_version = tf.__version__
    release = re.match(r"\d+\.\d+\.\d+", tf_version)
    # Pre-releases and nightlies (2.22.0rc1, 2.22.0.dev2026...) have no image: name the release they lead to.
    return f"tensorflow/serving:{release.group(0) if release else 'latest'}"


def docker_command(serving_root: str | os.PathLike, tf_version: str | None = None) -> str:
    """The `docker run` line that serves `<serving_root>/models.config` with TF Serving.

    Mounts the whole serving root at the folder above the `base_path` written
    in `models.config` (`/models` for `base_path: "/models/<name>"`, the root's
    own absolute path for the default), so the config's paths hold inside the
    container. REST on port 8501, gRPC on 8500.

    Raises:
        ExportError: no `models.config`, or a `base_path` that does not end in
            its model's folder name.
    """
    root = Path(serving_root).resolve()
    config = root / "models.config"
    if not config.is_file():
        raise ExportError(f"{config} does not exist: write it with export_for_serving (mtcl-export).")
    text = config.read_text()
    names = re.findall(r'name:\s*"([^"]*)"', text)
    bases = re.findall(r'base_path:\s*"([^"]*)"', text)
    containers = {str(PurePosixPath(base).parent) for base in bases}
    matching = len(names) == len(bases) and all(PurePosixPath(b).name == n for n, b in zip(names, bases))
    if not bases or not matching or len(containers) != 1:
        raise ExportError(
            f"{config} must give each model a base_path <folder>/<name>, all in one folder, to mount {root} there. "
            f"Received: names={names}, base_paths={bases}"
        )
    (container,) = containers
    return (
        f'docker run --rm -p 8500:8500 -p 8501:8501 -v "{root}:{container}" {serving_image(tf_version)} '
        f"--model_config_file={container}/models.config"
    )


def _largest_difference(
    expected: dict[str, np.ndarray], actual: dict[str, np.ndarray], what: str, tolerance: float, rtol: float = 0.0
) -> float:
    """Largest |actual - expected| over all outputs; class ids count the fraction of differing pixels.

    Raises ExportError if an output is missing or any element differs by more
    than `tolerance + rtol * max |expected|` (the output's largest magnitude).
    """
    worst = 0.0
    for name, value in expected.items():
        if name not in actual:
            raise ExportError(f"The {what} has no output {name!r}; it has {sorted(actual)}.")
        value = np.asarray(value)
        got = np.asarray(actual[name])
        if got.shape != value.shape:
            raise ExportError(f"{what} output {name!r} has shape {got.shape}; Keras gives {value.shape}.")
        if name.endswith("_classes"):
            # argmax may flip on exact ties; count mismatching pixels instead.
            difference = float(np.mean(got != value))
            too_far = difference > tolerance
        else:
            difference = float(np.max(np.abs(got.astype("float64") - value.astype("float64")), initial=0.0))
            # Relative to the output's scale: float32 rounding grows with it (untrained nets reach 1e7 metres).
            too_far = difference > tolerance + rtol * float(np.max(np.abs(value), initial=0.0))
        worst = max(worst, difference)
        if too_far:
            raise ExportError(
                f"{what} output {name!r} differs from Keras by up to {difference:.3g} "
                f"(allowed: {tolerance} + {rtol} * the output's largest magnitude)."
            )
    return worst


def _test_images(images: np.ndarray | None) -> np.ndarray:
    if images is None:
        # One random 61x83 image: a size that needs padding.
        return np.random.default_rng(0).integers(0, 256, (1, 61, 83, 3), dtype="uint8")
    return np.asarray(images, "uint8")


def verify_saved_model(
    model: MultiTaskModel,
    saved_model_dir: str | os.PathLike,
    images: np.ndarray | None = None,
    serving: ServingConfig | None = None,
    tolerance: float = 1e-4,
) -> float:
    """Loads the SavedModel with TensorFlow and compares its signatures with the Keras model's serving outputs.

    `serving_default` gets `images`; `serving_bytes` (where present) gets them
    encoded as PNG.

    Args:
        images: (B, H, W, 3) uint8 test images (default: one random 61x83 image,
            a size that needs padding).
        serving: the normalisation and padding the SavedModel was exported
            with (default: the `ServingConfig` in its `tasks.json`).

    Returns:
        The largest absolute difference over all outputs.

    Raises:
        ExportError: if an output is missing or differs by more than `tolerance`.
    """
    import tensorflow as tf

    images = _test_images(images)
    loaded = tf.saved_model.load(str(saved_model_dir))
    if serving is None:
        metadata = Path(saved_model_dir) / TASKS_FILE
        serving = ServingConfig.from_metadata(json.loads(metadata.read_text()) if metadata.is_file() else {})
    served = loaded.signatures[SERVING_DEFAULT](**{IMAGES_INPUT: tf.constant(images)})
    expected = serving_function(inference_model(model), serving)(tf.constant(images))
    expected = {k: v.numpy() for k, v in expected.items()}
    worst = _largest_difference(expected, {k: v.numpy() for k, v in served.items()}, "SavedModel", tolerance)
    if SERVING_BYTES in loaded.signatures:  # absent from SavedModels written before it existed
        # PNG is lossless: the decoded pixels are `images`, so the outputs must be serving_default's.
        encoded = tf.constant([tf.io.encode_png(image).numpy() for image in images])
        from_bytes = loaded.signatures[SERVING_BYTES](**{IMAGES_BYTES_INPUT: encoded})
        worst = max(
            worst,
            _largest_difference(expected, {k: v.numpy() for k, v in from_bytes.items()}, f"SavedModel {SERVING_BYTES}", tolerance),
        )
    return worst


def find_saved_model(path: str | os.PathLike) -> Path:
    """The SavedModel folder at `path`: `path` itself, or its highest numbered version folder.

    Args:
        path: a SavedModel folder (`<serving root>/<name>/<version>/`, with
            `saved_model.pb`) or a TF Serving model folder (`<serving root>/<name>/`).

    Raises:
        SavedModelNotFoundError: no SavedModel there.
    """
    path = Path(path)
    if not path.is_dir():
        raise SavedModelNotFoundError(f"no SavedModel folder at {path}.")
    if (path / "saved_model.pb").is_file():
        return path
    versions = [p for p in path.iterdir() if p.name.isdigit() and (p / "saved_model.pb").is_file()]
    if not versions:
        raise SavedModelNotFoundError(
            f"{path} is not an exported model: it has no saved_model.pb and no numbered version folder with one. "
            "Pass a .keras file, a version folder (<serving root>/<name>/<version>/) or a model folder "
            "(<serving root>/<name>/) written by mtcl-export."
        )
    return max(versions, key=lambda p: int(p.name))


def _tasks_from_outputs(outputs: dict[str, Any]) -> list[TaskSpec]:
    """Task specs read off output names and channel counts (for SavedModels without tasks.json).

    An output ending in a kind's last output suffix (`_probabilities`,
    `_probability`) names a task of that kind; an output without a suffix is
    the task of the kind whose output channels it has.
    """
    from keras_mtcl.kinds import KINDS

    suffixed = [k for k in KINDS.values() if k.output_suffixes[-1]]
    plain = {k.output_channels: k for k in KINDS.values() if not k.output_suffixes[-1]}
    specs, taken = [], set()
    for name, tensor in outputs.items():
        kind = next((k for k in suffixed if name.endswith(k.output_suffixes[-1])), None)
        if kind is not None:
            task = name[: -len(kind.output_suffixes[-1])]
            channels = None if kind.output_channels else int(tensor.shape[-1])
            specs.append(TaskSpec(task, kind.name, channels=channels))
            taken.update(kind.output_names(task))
    for name, tensor in outputs.items():
        if name in taken:
            continue
        kind = plain.get(tensor.shape[-1]) if len(tensor.shape) == 4 else None
        if kind is None:
            raise ExportError(f"Cannot tell the task of SavedModel output {name!r} with shape {tensor.shape}.")
        specs.append(TaskSpec(name, kind.name))
    return specs


def _uint8_images(images) -> np.ndarray:
    """`images` as uint8, refusing floats (a [0, 1] image would turn black) and integers outside 0..255.

    Also refuses what is not a non-empty (B, H, W, 3) batch, before TensorFlow sees it.
    """
    array = np.asarray(images)
    if array.ndim != 4 or array.shape[-1] != 3 or min(array.shape) < 1:
        hint = " (one image: pass images[None])" if array.ndim == 3 else ""
        raise ValueError(
            f"`images` must be a (B, H, W, 3) batch of at least one RGB image{hint}. Received: images with shape {array.shape}"
        )
    if array.dtype == np.uint8:
        return array
    if np.issubdtype(array.dtype, np.integer) and (array.size == 0 or (array.min() >= 0 and array.max() <= 255)):
        return array.astype("uint8")
    raise ValueError(
        "`images` must be uint8 RGB values 0..255 (B, H, W, 3), as read from an image file; convert float images "
        "with `np.clip(images * 255, 0, 255).astype('uint8')` if they are in [0, 1]. "
        f"Received: images with dtype {array.dtype}"
        + (f" and values {array.min()}..{array.max()}" if array.size and np.issubdtype(array.dtype, np.number) else "")
    )


def load_saved_model(path: str | os.PathLike) -> tuple[Callable[[np.ndarray], dict[str, np.ndarray]], list[TaskSpec], Path]:
    """Loads an exported SavedModel with TensorFlow (no Keras, any backend).

    Args:
        path: a version folder or a model folder (see `find_saved_model`).

    Returns:
        (predict, task specs, version folder): `predict` maps (B, H, W, 3)
        uint8 images to {output name: numpy array} through `serving_default`.
        The task specs come from `assets.extra/tasks.json`, or, for a
        SavedModel without it, from the output names and channel counts.

    Raises:
        SavedModelNotFoundError: no SavedModel at `path`.
        ExportError: the SavedModel has no `serving_default` signature.
    """
    import tensorflow as tf

    directory = find_saved_model(path)
    loaded = tf.saved_model.load(str(directory))
    if "serving_default" not in loaded.signatures:
        raise ExportError(
            f"The SavedModel at {directory} has no serving_default signature; it has {list(loaded.signatures)}."
        )
    signature = loaded.signatures["serving_default"]
    if (directory / TASKS_FILE).is_file():
        specs = [TaskSpec.from_config(c) for c in json.loads((directory / TASKS_FILE).read_text())["tasks"]]
    else:
        specs = _tasks_from_outputs(signature.structured_outputs)

    def predict(images: np.ndarray) -> dict[str, np.ndarray]:
        # Through `loaded`: the signature alone does not keep the restored variables alive.
        outputs = loaded.signatures["serving_default"](images=tf.constant(_uint8_images(images)))
        return {name: value.numpy() for name, value in outputs.items()}

    return predict, specs, directory


def export_onnx(
    model: MultiTaskModel,
    path: str | os.PathLike,
    serving: ServingConfig = ServingConfig(),
    opset: int = ONNX_OPSET,
) -> Path:
    """Writes the serving computation of `inference_model(model)` as an ONNX file (tf2onnx).

    Input `images`: (B, H, W, 3) uint8, B, H and W dynamic. Outputs: those
    of the SavedModel signature (module docstring), by name. The task specs
    are stored in the model's metadata under `keras_mtcl.tasks` (JSON).

    Runs on the TensorFlow backend and needs `pip install "keras_mtcl[onnx]"`.

    Raises:
        ExportError: another backend, or a failed conversion.
        MissingExtraError: tf2onnx or onnx is not installed (the `onnx` extra).
    """
    _require_tensorflow_backend()
    optional.require("onnx", "ONNX export", modules=("tf2onnx", "onnx"))  # one error naming both when both lack
    import tensorflow as tf

    onnx = optional.import_optional("onnx", "onnx", "ONNX export")
    tf2onnx = optional.import_optional("tf2onnx", "onnx", "ONNX export")

    path = Path(path)
    served = inference_model(model)
    signature = [tf.TensorSpec([None, None, None, 3], tf.uint8, name="images")]
    function = tf.function(serving_function(served, serving), input_signature=signature)
    try:
        proto, _ = tf2onnx.convert.from_function(function, input_signature=signature, opset=int(opset))
    except Exception as error:  # tf2onnx reports unsupported ops with many exception types
        raise ExportError(
            f"tf2onnx could not convert the model to ONNX (opset {opset}): {type(error).__name__}: {error}. "
            "The TensorFlow SavedModel export covers every model."
        ) from error
    entry = proto.metadata_props.add()
    entry.key, entry.value = "keras_mtcl.tasks", json.dumps([t.get_config() for t in served.task_specs])
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(proto, str(path))
    return path


def verify_onnx(
    model: MultiTaskModel,
    onnx_path: str | os.PathLike,
    images: np.ndarray | None = None,
    serving: ServingConfig = ServingConfig(),
    tolerance: float = 1e-3,
    rtol: float = 1e-3,
) -> float:
    """Runs the ONNX file with onnxruntime and compares it with the Keras model's serving outputs.

    onnxruntime's kernels round differently from TensorFlow's (relative
    differences of 1e-7 to 1e-4 of an output's scale, growing with depth).
    Softmax and sigmoid outputs amplify them where logits are huge, as in
    untrained deep models (PAD-Net on HRNet: logits near 1e4, probabilities
    off by 0.02); trained models have small logits and pass.

    Args:
        images: (B, H, W, 3) uint8 test images (default: one random 61x83 image).
        serving: the normalisation and padding the ONNX file was exported with.
        tolerance, rtol: an element may differ by `tolerance + rtol * m`,
            m the largest magnitude of its output; class ids by a fraction
            `tolerance` of pixels.

    Returns:
        The largest absolute difference over the float outputs (and the
        fraction of differing class ids).

    Raises:
        ExportError: an output missing or too far.
        MissingExtraError: onnxruntime is not installed (the `onnx` extra).
    """
    _require_tensorflow_backend()
    import tensorflow as tf

    onnxruntime = optional.import_optional("onnxruntime", "onnx", "Checking the ONNX file")
    images = _test_images(images)
    session = onnxruntime.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    actual = dict(zip(names, session.run(names, {"images": images})))
    expected = serving_function(inference_model(model), serving)(tf.constant(images))
    return _largest_difference({k: v.numpy() for k, v in expected.items()}, actual, "ONNX model", tolerance, rtol)
