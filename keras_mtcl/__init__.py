"""keras_mtcl: multi-task dense prediction with the cross-task contrastive regularizer.

Submodules are imported lazily so that `import keras_mtcl` stays cheap and
never imports TensorFlow or tensorflow-datasets on the JAX or PyTorch path.
"""

import importlib

__version__ = "0.1.0"

_SUBMODULES = (
    "backbones",
    "contrastive",
    "data",
    "decoders",
    "edge_eval",
    "export",
    "layers",
    "losses",
    "metrics",
    "model",
    "presets",
    "tasks",
)


def __getattr__(name):
    if name in _SUBMODULES:
        return importlib.import_module(f"keras_mtcl.{name}")
    if name == "MultiTaskModel":
        return importlib.import_module("keras_mtcl.model").MultiTaskModel
    raise AttributeError(f"module 'keras_mtcl' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_SUBMODULES) + ["MultiTaskModel"])
