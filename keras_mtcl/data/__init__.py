"""Datasets and tf.data pipelines.

Modules are imported on demand (`from keras_mtcl.data import synthetic`), so
importing the package never pulls in TensorFlow or tensorflow-datasets.

Every dataset yields examples in one format: a dict with `"image"` (H, W, 3)
uint8 RGB, `"id"` (string) and one entry per task it carries, in the label
conventions of `keras_mtcl.tasks`.

Datasets are known by name: `list_datasets()` names them (without importing
tensorflow-datasets) and `get_dataset(name)` gives the registered builder
class (a `keras_mtcl.data.builder.MultiTaskBuilder`), whose `prepare`,
`open_split` and `main` (`mtcl-prepare <name>`) every reader of a dataset
goes through. A new dataset is a subclass decorated with
`@register_dataset("name")`.

Example:
>>> list_datasets()
['synthetic', 'nyud', 'pascal', 'folder']
"""

from __future__ import annotations

import importlib
import types
from typing import TYPE_CHECKING, Callable

from keras_mtcl.errors import ConfigError

if TYPE_CHECKING:
    from keras_mtcl.data.builder import MultiTaskBuilder

# The built-in datasets and the module that registers each, imported when the dataset is first asked for.
_BUILTIN = types.MappingProxyType(
    {
        "synthetic": "keras_mtcl.data.synthetic_builder",
        "nyud": "keras_mtcl.data.nyud",
        "pascal": "keras_mtcl.data.pascal",
        "folder": "keras_mtcl.data.folder",
    }
)
_REGISTRY: dict[str, type[MultiTaskBuilder]] = {}


def register_dataset(name: str) -> Callable[[type[MultiTaskBuilder]], type[MultiTaskBuilder]]:
    """Decorator registering a `MultiTaskBuilder` subclass as the dataset `name` (stored as its `dataset_name`).

    Raises:
        ValueError: if another class is already registered under `name`.
    """

    def decorator(cls: type[MultiTaskBuilder]) -> type[MultiTaskBuilder]:
        if _REGISTRY.get(name, cls) is not cls:
            raise ValueError(f"A dataset named {name!r} is already registered. Received: name={name!r}")
        cls.dataset_name = name
        _REGISTRY[name] = cls
        return cls

    return decorator


def list_datasets() -> list[str]:
    """The names of the datasets: the built-in ones first, then those registered since."""
    return [*_BUILTIN, *(name for name in _REGISTRY if name not in _BUILTIN)]


def get_dataset(name: str) -> type[MultiTaskBuilder]:
    """The builder class registered as `name` (imports its module on first use).

    Raises:
        ConfigError: for an unknown name, listing the known ones.
    """
    if name not in _REGISTRY and name in _BUILTIN:
        importlib.import_module(_BUILTIN[name])
    if name not in _REGISTRY:
        raise ConfigError(f"`dataset` must be one of {list_datasets()}. Received: dataset={name!r}")
    return _REGISTRY[name]
