"""Run configurations: `RunConfig` in four groups, the `--set` overrides, and the registry of presets.

A run is fully described by a `RunConfig`: a few run-wide fields and four
groups, `data` (`DataConfig`), `model` (`ModelConfig`), `optimizer`
(`OptimizerConfig`) and `augment` (`keras_mtcl.data.augment_config.AugmentConfig`).
Every field can be overridden from the command line by its dotted name
(`--set optimizer.learning_rate=1e-3 --set augment.scale_range=0.75,1.5`) or by
its own name where no other group has a field of that name (`--set epochs=3
--set tasks=semseg,depth`); `--set augment=false` turns the augmentation off
(`AugmentConfig.off()`). The run writes its final config beside its outputs,
grouped as the dataclasses are; `RunConfig.from_dict` also reads the flat
config.json of earlier releases.

A preset is a module of `keras_mtcl.configs` whose `get_config(smoke=False)`
returns a `RunConfig`; `get_preset` finds it by name.

Example:
>>> config = get_preset("quickstart", overrides=["epochs=1", "model.contrastive=false", "learning_rate=1e-3"])
>>> config.epochs, config.model.contrastive, config.optimizer.learning_rate
(1, False, 0.001)
>>> config.augment == get_preset("quickstart", ["augment=true"]).augment
True
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import math
import pkgutil
import types
import typing
from typing import Any, Iterator, Mapping, Sequence

from keras_mtcl.data import list_datasets
from keras_mtcl.data.augment_config import AugmentConfig
from keras_mtcl.errors import ConfigError

# Larger learning rates only ever diverge (NaN weights); refused up front.
MAX_LEARNING_RATE = 10.0


def _describe(hint) -> str:
    """What a field of type `hint` takes, in words (for error messages)."""
    if typing.get_origin(hint) is tuple:
        return "a list of " + {int: "integers", str: "strings", float: "numbers"}.get(typing.get_args(hint)[0], "values")
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string"}.get(hint, "a JSON object")


def _has_type(value, hint) -> bool:
    if typing.get_origin(hint) is tuple:
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
    if isinstance(hint, type):
        return isinstance(value, hint)
    return isinstance(value, Mapping) and all(isinstance(k, str) for k in value)


def _fail(path: str, rule: str, value) -> None:
    raise ConfigError(f"`{path}` must be {rule}. Received: {path}={value!r}")


def _check_group(group, prefix: str) -> None:
    """Checks each field's type against its annotation, then stores mappings read-only and sequences as tuples."""
    hints = typing.get_type_hints(type(group))
    for field in dataclasses.fields(group):
        value = getattr(group, field.name)
        if not _has_type(value, hints[field.name]):
            _fail(prefix + field.name, _describe(hints[field.name]), value)
        if isinstance(value, Mapping):
            object.__setattr__(group, field.name, types.MappingProxyType(dict(value)))
        elif isinstance(value, list):
            object.__setattr__(group, field.name, tuple(value))


def _check_minimums(group, prefix: str, minimums: Sequence[tuple[str, float, str]]) -> None:
    for field, minimum, meaning in minimums:
        value = getattr(group, field)
        if value < minimum:
            raise ConfigError(f"`{prefix}{field}` must be >= {minimum}{meaning}. Received: {prefix}{field}={value}")


def _check_choice(group, prefix: str, field: str, allowed: tuple[str, ...]) -> None:
    if getattr(group, field) not in allowed:
        _fail(prefix + field, f"one of {allowed}", getattr(group, field))


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """What a run reads and how it batches it (`RunConfig.data`).

    Attributes:
        dataset: `"synthetic"` (embedded, no download), `"nyud"`, `"pascal"`
            or `"folder"`.
        data_dir: tensorflow-datasets data_dir where datasets are prepared.
        manual_dir: folder of the raw dataset (NYUD/PASCAL release, custom folder).
        tasks: subset of the dataset's tasks; empty = all tasks it carries.
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
        synthetic_train: number of synthetic training scenes.
        synthetic_val: number of synthetic validation scenes.
        synthetic_size: (height, width) of the synthetic scenes.
    """

    dataset: str = "synthetic"
    data_dir: str = ""
    manual_dir: str = ""
    tasks: tuple[str, ...] = ()
    image_size: tuple[int, ...] = (96, 128)
    eval_size: tuple[int, ...] = ()
    eval_split: str = "val"
    edge_max_dist: float = 0.0
    batch_size: int = 8
    synthetic_train: int = 256
    synthetic_val: int = 32
    synthetic_size: tuple[int, ...] = (120, 160)

    def __post_init__(self):
        _check_group(self, "data.")
        _check_choice(self, "data.", "dataset", tuple(list_datasets()))
        for field in ("synthetic_size",) + tuple(f for f in ("image_size", "eval_size") if getattr(self, f)):
            size = getattr(self, field)
            if len(size) != 2 or min(size) < 8:
                raise ConfigError(f"`data.{field}` must be (height, width), each >= 8. Received: data.{field}={size}")
        _check_minimums(self, "data.", (("batch_size", 1, ""), ("synthetic_train", 1, ""), ("synthetic_val", 1, "")))
        if not (math.isfinite(self.edge_max_dist) and 0 <= self.edge_max_dist < 1):
            _fail("data.edge_max_dist", "a fraction of the image diagonal in [0, 1) (0 = the dataset's protocol)",
                  self.edge_max_dist)
        if not self.eval_split:
            _fail("data.eval_split", "a split of the dataset (e.g. val)", self.eval_split)


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """The network and the regularizer (`RunConfig.model`).

    Attributes:
        backbone: registered backbone name (`keras_mtcl.backbones.list_backbones()`).
        backbone_options: keyword arguments of the backbone builder.
        framework: decoder (`"baseline"`, ...; `keras_mtcl.decoders.list_decoders()`).
        decoder_options: keyword arguments of the decoder.
        contrastive: whether to train with the cross-task contrastive regularizer.
        contrastive_options: keyword arguments of `CrossTaskContrastive`.
    """

    backbone: str = "tiny_cnn"
    backbone_options: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    framework: str = "baseline"
    decoder_options: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    contrastive: bool = False
    contrastive_options: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        _check_group(self, "model.")


@dataclasses.dataclass(frozen=True)
class OptimizerConfig:
    """The optimizer and its learning-rate schedule (`RunConfig.optimizer`).

    Attributes:
        name: `"adam"`, `"adamw"` or `"sgd"` (momentum 0.9).
        learning_rate: initial learning rate.
        weight_decay: decoupled weight decay (0 disables).
        schedule: `"poly"` (decay to 0 with `poly_power` per step) or `"constant"`.
        poly_power: exponent of the poly schedule.
        clipnorm: clip each gradient's norm to this value (0 disables).
    """

    name: str = "adam"
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    schedule: str = "poly"
    poly_power: float = 0.9
    clipnorm: float = 0.0

    def __post_init__(self):
        _check_group(self, "optimizer.")
        _check_choice(self, "optimizer.", "name", ("adam", "adamw", "sgd"))
        _check_choice(self, "optimizer.", "schedule", ("poly", "constant"))
        _check_minimums(self, "optimizer.", (
            ("weight_decay", 0, " (0 disables it)"), ("clipnorm", 0, " (0 disables it)"), ("poly_power", 0, ""),
        ))
        if not (math.isfinite(self.learning_rate) and 0 < self.learning_rate <= MAX_LEARNING_RATE):
            _fail("optimizer.learning_rate", f"a number in (0, {MAX_LEARNING_RATE:g}] (typically 1e-4 to 1e-1)",
                  self.learning_rate)


# The groups of a RunConfig: {field name: dataclass}.
GROUPS = types.MappingProxyType(
    {"data": DataConfig, "model": ModelConfig, "optimizer": OptimizerConfig, "augment": AugmentConfig}
)


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """Everything a training run needs: run-wide fields and four groups.

    Attributes:
        name: run name; outputs go to `output_dir` (default `runs/<name>`).
        seed: global random seed (weights, sampling, augmentation).
        epochs: training epochs.
        steps_per_epoch: steps per epoch; 0 = one pass over the training split.
        mixed_precision: train in mixed bfloat16 (`"mixed_bfloat16"` policy).
        distribute: train data-parallel over all local devices (JAX:
            keras.distribution; TensorFlow: MirroredStrategy; see
            `keras_mtcl.distribute`); `data.batch_size` is the global batch.
        num_pictures: validation images written as prediction pictures.
        output_dir: where checkpoints, logs and pictures go; empty = `runs/<name>`.
        data: the data, splits, sizes and batch (`DataConfig`).
        model: backbone, decoder and regularizer (`ModelConfig`).
        optimizer: optimizer and schedule (`OptimizerConfig`).
        augment: the training augmentation (`AugmentConfig`; `AugmentConfig.off()`
            crops only).

    Example:
    >>> config = RunConfig().replace(epochs=2, learning_rate=0.01)
    >>> config.epochs, config.optimizer.learning_rate, config.data.batch_size
    (2, 0.01, 8)
    """

    name: str = "run"
    seed: int = 0
    epochs: int = 10
    steps_per_epoch: int = 0
    mixed_precision: bool = False
    distribute: bool = False
    num_pictures: int = 4
    output_dir: str = ""
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    optimizer: OptimizerConfig = OptimizerConfig()
    augment: AugmentConfig = AugmentConfig()

    def __post_init__(self):
        for group, cls in GROUPS.items():
            if not isinstance(getattr(self, group), cls):
                _fail(group, f"a {cls.__name__}", getattr(self, group))
        _check_group(self, "")
        _check_minimums(self, "", (
            ("epochs", 1, ""), ("steps_per_epoch", 0, " (0 = one pass over the training split)"), ("num_pictures", 0, ""),
        ))

    @property
    def run_dir(self) -> str:
        return self.output_dir or f"runs/{self.name}"

    def flat_dict(self) -> dict:
        """{dotted field name: JSON value}; `data.synthetic_*` only for the synthetic dataset, which reads them."""
        out = {}
        for path, value in _leaves(self):
            if path.startswith("data.synthetic_") and self.data.dataset != "synthetic":
                continue
            out[path] = dict(value) if isinstance(value, Mapping) else list(value) if isinstance(value, tuple) else value
        return out

    def to_dict(self) -> dict:
        """The fields as JSON values (`flat_dict`), each group a nested object."""
        out: dict = {}
        for path, value in self.flat_dict().items():
            group, _, field = path.rpartition(".")
            (out.setdefault(group, {}) if group else out)[field] = value
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "RunConfig":
        """The config of a JSON object: grouped (`to_dict`) or the flat config.json of releases up to 0.4.

        Flat keys are read as their `--set` names; the flat `optimizer` names
        `optimizer.name` and the flat `augment` true/false means
        `AugmentConfig()` / `AugmentConfig.off()`.
        """
        if not isinstance(values, Mapping):
            raise ConfigError(f"A config must be a JSON object of RunConfig fields. Received: {type(values).__name__}")
        return _updated(cls(), values.items(), parse=False)

    def replace(self, **changes) -> "RunConfig":
        """A copy with fields changed, each named as `--set` names it (`epochs`, `learning_rate`, `data`, ...)."""
        return _updated(self, changes.items(), parse=False)


def _leaves(config: RunConfig) -> Iterator[tuple[str, Any]]:
    """(dotted name, value) of every field, run-wide fields first, then each group's in order."""
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        if field.name in GROUPS:
            yield from ((f"{field.name}.{f.name}", getattr(value, f.name)) for f in dataclasses.fields(value))
        else:
            yield field.name, value


def field_names() -> list[str]:
    """The dotted name of every `RunConfig` field, as `--set` takes it.

    >>> [n for n in field_names() if n.startswith("optimizer.")][:2]
    ['optimizer.name', 'optimizer.learning_rate']
    """
    return [path for path, _ in _leaves(RunConfig())]


def resolve_field(key: str, names: Sequence[str] | None = None) -> str:
    """The dotted field name that `key` means: itself, a group, or the one field of that name in any group.

    Args:
        key: a dotted name (`optimizer.learning_rate`), a run-wide field or a
            group (`epochs`, `augment`), or a field name that one group alone has
            (`learning_rate`).
        names: the dotted names to choose from (default `field_names()`).

    Raises:
        ConfigError: no field has that name, or several groups do (the message lists them).

    >>> resolve_field("learning_rate"), resolve_field("name"), resolve_field("augment")
    ('optimizer.learning_rate', 'name', 'augment')
    >>> resolve_field("size", ["data.size", "model.size"])
    Traceback (most recent call last):
    ...
    keras_mtcl.errors.ConfigError: `size` is a field of several groups: pass one of ['data.size', 'model.size']. Received: size
    """
    names = field_names() if names is None else list(names)
    if key in names or key in GROUPS:
        return key
    matches = [n for n in names if n.rpartition(".")[2] == key]
    if len(matches) > 1:
        raise ConfigError(f"`{key}` is a field of several groups: pass one of {matches}. Received: {key}")
    if not matches:
        raise ConfigError(f"Unknown RunConfig field {key!r}. Known: {', '.join(names)}. Received: {key}")
    return matches[0]


def _hint(path: str):
    group, _, field = path.rpartition(".")
    return typing.get_type_hints(GROUPS[group] if group else RunConfig)[field]


def _parse_bool(path: str, text: str) -> bool:
    lowered = text.strip().lower()
    if lowered not in ("true", "false", "1", "0", "yes", "no", "on", "off"):
        raise ConfigError(f"`{path}` takes true/false. Received: {path}={text!r}")
    return lowered in ("true", "1", "yes", "on")


def _parse_text(path: str, text: str):
    """A command-line value for field `path`, read by its type annotation."""
    hint = _hint(path)
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if hint is bool:
        return _parse_bool(path, text)
    if hint in (int, float, str):
        return hint(text)
    if typing.get_origin(hint) is tuple:
        item = args[0]
        # Sizes read as 64x96 or 64,96.
        parts = [p for p in (text.replace("x", ",") if item is int else text).split(",") if p]
        return tuple(item(p) for p in parts)
    if args == [str]:  # optional names: empty or none is None
        return None if text.strip().lower() in ("", "none") else text
    value = json.loads(text)
    if not isinstance(value, dict):
        raise ConfigError(f"`{path}` takes a JSON object. Received: {path}={text!r}")
    return value


def _expand(key: str, value, parse: bool) -> Iterator[tuple[str, Any]]:
    """(dotted field name, value) pairs that `key=value` sets; a group's value is the group itself or its changes."""
    path = resolve_field(key)
    if path not in GROUPS:
        yield path, _parse_text(path, value) if parse else value
        return
    if parse:
        value = json.loads(value) if value.strip().startswith("{") else value
    if isinstance(value, Mapping):
        for field, item in value.items():
            if field not in {f.name for f in dataclasses.fields(GROUPS[path])}:
                raise ConfigError(f"Unknown RunConfig field {path}.{field}. Known: {', '.join(field_names())}")
            yield from _expand(f"{path}.{field}", item, parse=False)
    elif isinstance(value, GROUPS[path]):
        yield path, value
    elif path == "optimizer" and isinstance(value, str):  # the flat `optimizer` of releases up to 0.4
        yield "optimizer.name", value
    elif path == "augment" and isinstance(value, (bool, str)):  # on (the recipe) or off (crops only)
        on = _parse_bool(path, value) if isinstance(value, str) else value
        yield path, AugmentConfig() if on else AugmentConfig.off()
    else:
        raise ConfigError(f"`{path}` takes a JSON object of its fields. Received: {path}={value!r}")


def _updated(config: RunConfig, items, parse: bool) -> RunConfig:
    """`config` with `(key, value)` items applied in order (a later one wins; a group's fields after the group)."""
    top: dict[str, Any] = {}
    groups: dict[str, dict[str, Any]] = {}
    for key, value in items:
        for path, item in _expand(str(key).strip(), value, parse):
            group, _, field = path.rpartition(".")
            if group:
                groups.setdefault(group, {})[field] = item
            else:
                top[path] = item
                groups.pop(path, None)
    for group, changes in groups.items():
        try:
            top[group] = dataclasses.replace(top.get(group, getattr(config, group)), **changes)
        except ConfigError:
            raise
        except ValueError as error:  # AugmentConfig checks itself with ValueError naming its field
            raise ConfigError(f"`{group}`: {error}") from None
    return dataclasses.replace(config, **top)


def apply_overrides(config: RunConfig, overrides: Sequence[str]) -> RunConfig:
    """Applies `key=value` strings, e.g. `["epochs=3", "data.image_size=64x96", "tasks=semseg,depth"]`."""
    pairs = []
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep:
            raise ConfigError(f"Overrides take the form field=value (mtcl-train --help lists the fields). Received: {item!r}")
        try:
            pairs += _expand(key.strip(), text, parse=True)
        except ConfigError:
            raise
        except ValueError as error:  # json.JSONDecodeError included
            raise ConfigError(f"Cannot parse the value of `{key.strip()}`: {error}. Received: {item!r}") from None
    return _updated(config, pairs, parse=False)


def _text(value) -> str:
    if isinstance(value, tuple):
        return ",".join(str(v) for v in value)
    if isinstance(value, Mapping):
        return json.dumps(dict(value))
    return str(value).lower() if isinstance(value, bool) else "none" if value is None else str(value)


def field_defaults() -> str:
    """One line per `RunConfig` field with its default, by dotted name, as `--set` takes it (for command-line help).

    >>> field_defaults().splitlines()[0]
    '  name=run'
    >>> [line for line in field_defaults().splitlines() if "learning_rate" in line]
    ['  optimizer.learning_rate=0.001']
    """
    return "\n".join(f"  {path}={_text(value)}" for path, value in _leaves(RunConfig()))


# The preset a run starts from when only the dataset is chosen (`mtcl-train --set dataset=folder`).
DATASET_PRESETS = types.MappingProxyType(
    {"synthetic": "quickstart", "folder": "folder", "nyud": "nyud_hrnet18_baseline", "pascal": "pascal_hrnet18_contrastive"}
)


def list_presets() -> list[str]:
    """The names of the presets: the modules of `keras_mtcl.configs`.

    >>> "quickstart" in list_presets()
    True
    """
    from keras_mtcl import configs

    return sorted(m.name for m in pkgutil.iter_modules(configs.__path__) if not m.name.startswith("_"))


def starting_preset(overrides: Sequence[str]) -> str:
    """The preset of the dataset that `overrides` set (`DATASET_PRESETS`; the quickstart's when none is set).

    >>> starting_preset(["data.dataset=folder", "manual_dir=/data/rooms"])
    'folder'
    >>> starting_preset(["epochs=2"])
    'quickstart'
    """
    keys = [item.partition("=") for item in overrides]
    datasets = [text.strip() for key, _, text in keys if key.strip() in ("dataset", "data.dataset")]
    return DATASET_PRESETS.get(datasets[-1] if datasets else "synthetic", "quickstart")


def get_preset(name: str, overrides: Sequence[str] = (), smoke: bool = False) -> RunConfig:
    """The `RunConfig` of preset `name` (`keras_mtcl.configs.<name>.get_config(smoke)`), with `key=value` overrides."""
    if name not in list_presets():
        raise ConfigError(f"Unknown preset. Expected one of {list_presets()}. Received: name={name!r}")
    module = importlib.import_module(f"keras_mtcl.configs.{name}")
    return apply_overrides(module.get_config(smoke=smoke), overrides)
