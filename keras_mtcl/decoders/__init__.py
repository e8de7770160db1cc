"""Multi-task decoders: from a backbone's feature pyramid to per-task outputs.

A decoder is a `keras_mtcl.decoders.base.Decoder` layer built from the task
list and registered by name (`register_decoder`). Called on the backbone's
list of feature maps (finest first, `keras_mtcl.backbones.pyramid`), it
returns `"predictions"`, `"features"` (the task features F_t the
regularizer reads) and `"auxiliary"` (deep-supervision outputs, computed only
when asked, in training). Decoders know nothing of datasets or of the
regularizer. A new decoder is one file with a `Decoder` subclass and
`@register_decoder("name")`; the contract harness (`keras_mtcl.testing`)
checks every registered one against every backbone.
"""

from __future__ import annotations

from typing import Callable

import keras

_REGISTRY: dict[str, Callable[..., keras.layers.Layer]] = {}


def register_decoder(name: str):
    """Decorator registering a `Decoder` subclass under `name`."""

    def decorator(cls):
        from keras_mtcl.decoders.base import Decoder

        if not (isinstance(cls, type) and issubclass(cls, Decoder)):
            raise ValueError(f"A registered decoder must subclass keras_mtcl.decoders.base.Decoder. Received: {cls!r}")
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError(f"A decoder named {name!r} is already registered. Received: name={name!r}")
        _REGISTRY[name] = cls
        return cls

    return decorator


def _load_builtin():
    from keras_mtcl.decoders import baseline, invpt, mtinet, padnet  # noqa: F401


def list_decoders() -> list[str]:
    """Names of the registered decoders."""
    _load_builtin()
    return sorted(_REGISTRY)


def decoder_class(name: str) -> Callable[..., keras.layers.Layer]:
    """The `Decoder` subclass registered as `name` (its signature lists the decoder's options; nothing is built)."""
    _load_builtin()
    if name not in _REGISTRY:
        raise ValueError(f"Unknown decoder. Expected one of {sorted(_REGISTRY)}. Received: decoder={name!r}")
    return _REGISTRY[name]


def get_decoder(name: str, tasks, **options) -> keras.layers.Layer:
    """Builds the decoder registered as `name` for `tasks` with its keyword `options`."""
    return decoder_class(name)(tasks=tasks, **options)
