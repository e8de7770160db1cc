"""Backbones: Keras models mapping (B, H, W, 3) images to a feature pyramid.

A backbone is any Keras model that returns a list of feature maps, finest
first, e.g. strides 4, 8, 16, 32: `[(B, H/4, W/4, C1), ..., (B, H/32, W/32, C4)]`.
Decoders read nothing else. Named builders are registered here (timm's
habit) and built by name with `get_backbone("tiny_cnn", ...)`; weights are
loaded separately from the architecture.
"""

from __future__ import annotations

from typing import Callable

import keras

_REGISTRY: dict[str, Callable[..., keras.Model]] = {}


def register_backbone(name: str):
    """Decorator registering a backbone builder under `name`."""

    def decorator(builder):
        if name in _REGISTRY and _REGISTRY[name] is not builder:
            raise ValueError(f"A backbone named {name!r} is already registered. Received: name={name!r}")
        _REGISTRY[name] = builder
        return builder

    return decorator


def _load_builtin():
    # Importing the modules registers their builders; none of them imports torch or keras_hub at import time.
    from keras_mtcl.backbones import efficientnet_lite, hrnet, hub, tiny, vit  # noqa: F401


def list_backbones() -> list[str]:
    """Names of the registered backbone builders."""
    _load_builtin()
    return sorted(_REGISTRY)


def backbone_builder(name: str) -> Callable[..., keras.Model]:
    """The builder registered as `name` (its signature lists the backbone's options; nothing is built)."""
    _load_builtin()
    if name not in _REGISTRY:
        raise ValueError(f"Unknown backbone. Expected one of {sorted(_REGISTRY)}. Received: name={name!r}")
    return _REGISTRY[name]


def get_backbone(name: str, **kwargs) -> keras.Model:
    """Builds the backbone registered as `name` with the builder's keyword arguments."""
    return backbone_builder(name)(**kwargs)
