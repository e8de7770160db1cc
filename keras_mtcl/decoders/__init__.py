"""Multi-task decoders ("frameworks"): from a backbone's feature pyramid to per-task outputs.

A decoder is a Keras layer built from the task list. Called on the list of
backbone feature maps (finest first), it returns a dict:

- `"predictions"`: {task: (B, h, w, C_task)} final predictions at the
  decoder's output resolution (the model resizes them to the input size);
- `"features"`: {task: (B, h, w, C_f)} the last task-specific feature map
  before each task's prediction layer (what the contrastive regularizer
  reads; METHOD.md section 7);
- `"auxiliary"`: {group: {task: prediction}} intermediate predictions for
  deep supervision (empty for the baseline), computed in training.

Decoders know nothing of datasets or of the regularizer.
"""

from __future__ import annotations

from typing import Callable

import keras

_REGISTRY: dict[str, Callable[..., keras.layers.Layer]] = {}


def register_decoder(name: str):
    """Decorator registering a decoder class under a framework name."""

    def decorator(cls):
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError(f"A decoder named {name!r} is already registered. Received: name={name!r}")
        _REGISTRY[name] = cls
        return cls

    return decorator


def _load_builtin():
    from keras_mtcl.decoders import baseline, mtinet, padnet  # noqa: F401


def list_decoders() -> list[str]:
    """Names of the registered frameworks."""
    _load_builtin()
    return sorted(_REGISTRY)


def get_decoder(framework: str, tasks, **options) -> keras.layers.Layer:
    """Builds the decoder of `framework` for `tasks` with its keyword `options`."""
    _load_builtin()
    if framework not in _REGISTRY:
        raise ValueError(f"Unknown framework. Expected one of {sorted(_REGISTRY)}. Received: framework={framework!r}")
    return _REGISTRY[framework](tasks=tasks, **options)
