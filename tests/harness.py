"""Checks shared by the layer and model tests (keras-hub's TestCase habit)."""

from __future__ import annotations

import inspect

import keras
import numpy as np


def assert_config_covers_constructor(instance, ignore=("kwargs",)) -> dict:
    """Every constructor argument appears in `get_config()`; returns the config."""
    config = instance.get_config()
    params = [p for p in inspect.signature(type(instance).__init__).parameters if p not in ("self",) + tuple(ignore)]
    missing = [p for p in params if p not in config]
    assert not missing, f"{type(instance).__name__}.get_config() lacks constructor arguments {missing}"
    return config


def assert_round_trip(instance, **expected_values):
    """`from_config(get_config())` keeps every argument, including the non-default ones given."""
    config = assert_config_covers_constructor(instance)
    restored = type(instance).from_config(config)
    restored_config = restored.get_config()
    for key, value in expected_values.items():
        assert config[key] == value, f"{key}: config has {config[key]!r}, expected {value!r}"
        assert restored_config[key] == value, f"{key} lost in a round trip: {restored_config[key]!r}"
    return restored


def to_numpy(tree):
    return keras.tree.map_structure(lambda x: np.asarray(keras.ops.convert_to_numpy(x)), tree)
