"""keras_mtcl: multi-task dense prediction with the cross-task contrastive regularizer.

`keras_mtcl.MultiTaskModel` is the inference network (backbone + decoder),
`keras_mtcl.MultiTaskTrainer` trains it (task losses, deep supervision, the
regularizer of `keras_mtcl.contrastive`), `keras_mtcl.TaskSpec` describes a
task and `keras_mtcl.LabelKind` a kind of label (`keras_mtcl.kinds`).

Submodules and these names are imported lazily, on first access, so that
`import keras_mtcl` stays cheap and never imports TensorFlow or
tensorflow-datasets on the JAX or PyTorch path; only the tf.data modules
(`keras_mtcl.data.*`, and what reads them) and the SavedModel export import
TensorFlow, when they are used.

Example:
>>> import keras_mtcl
>>> keras_mtcl.TaskSpec("height", "depth").loss
'depth_l1'
>>> keras_mtcl.kinds.get_kind("normals") is keras_mtcl.kinds.NORMALS
True
"""

import importlib as _importlib

__version__ = "0.5.0"

# Public submodules, each imported on first access (`keras_mtcl.<name>`).
_SUBMODULES = (
    "analysis",
    "backbones",
    "callbacks",
    "cli",
    "configs",
    "contrastive",
    "data",
    "decoders",
    "distribute",
    "edge_eval",
    "errors",
    "evaluation",
    "export",
    "inference",
    "kinds",
    "layers",
    "losses",
    "metrics",
    "model",
    "optional",
    "preprocessing",
    "presets",
    "tasks",
    "testing",
    "trainer",
    "training",
    "visualize",
)

# Public classes: {name: defining submodule}, imported on first access.
_NAMES = {
    "LabelKind": "kinds",
    "MultiTaskModel": "model",
    "MultiTaskTrainer": "trainer",
    "TaskSpec": "tasks",
}

__all__ = sorted(_NAMES) + list(_SUBMODULES)


def __getattr__(name):
    if name in _SUBMODULES:
        return _importlib.import_module(f"{__name__}.{name}")
    if name in _NAMES:
        return getattr(_importlib.import_module(f"{__name__}.{_NAMES[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
