"""The public API of `import keras_mtcl`: every documented name resolves, lazily, and the JAX and PyTorch paths never
import TensorFlow or tensorflow-datasets."""

import importlib
import json
import os
import subprocess
import sys
import textwrap

import keras
import pytest

import keras_mtcl

# The package's own modules that hold no public API of their own.
INTERNAL_MODULES = {"backend_compat"}


def test_every_public_name_resolves():
    names = set(keras_mtcl.__all__)
    assert names <= set(dir(keras_mtcl))
    for name in sorted(set(dir(keras_mtcl)) | names):
        assert getattr(keras_mtcl, name) is not None, name


def test_submodules_and_classes_are_the_modules_own():
    for name in keras_mtcl._SUBMODULES:
        assert getattr(keras_mtcl, name) is importlib.import_module(f"keras_mtcl.{name}"), name
    assert keras_mtcl.MultiTaskModel is keras_mtcl.model.MultiTaskModel
    assert keras_mtcl.MultiTaskTrainer is keras_mtcl.trainer.MultiTaskTrainer
    assert keras_mtcl.TaskSpec is keras_mtcl.tasks.TaskSpec
    assert keras_mtcl.LabelKind is keras_mtcl.kinds.LabelKind


def test_every_top_level_module_is_public_or_known_internal():
    """A new module of the package is either reachable as `keras_mtcl.<name>` or listed here as internal."""
    import pkgutil

    modules = {m.name for m in pkgutil.iter_modules(keras_mtcl.__path__)}
    assert modules - INTERNAL_MODULES == set(keras_mtcl._SUBMODULES)


def test_unknown_name_raises_attribute_error():
    with pytest.raises(AttributeError, match="no_such_name"):
        keras_mtcl.no_such_name  # noqa: B018
    assert not hasattr(keras_mtcl, "no_such_name")


# Run in a fresh interpreter: `import keras_mtcl`, every public name, the registries (what `load_model` imports),
# the four modules a JAX / PyTorch user starts from and the analysis modules of the GPU benchmark (a machine without
# TensorFlow); report which of TensorFlow and tensorflow-datasets got imported.
_PROBE = textwrap.dedent(
    """
    import json, sys
    import keras_mtcl
    import keras_mtcl.kinds, keras_mtcl.model, keras_mtcl.tasks, keras_mtcl.trainer
    import keras_mtcl.testing.labels
    import keras_mtcl.analysis.gpu_bench, keras_mtcl.analysis.timing, keras_mtcl.analysis.train_bench
    for name in keras_mtcl.__all__:
        getattr(keras_mtcl, name)
    keras_mtcl.backbones.list_backbones()
    keras_mtcl.decoders.list_decoders()
    import keras
    print(json.dumps({
        "backend": keras.backend.backend(),
        "tensorflow": sorted(m for m in sys.modules if m == "tensorflow" or m.startswith("tensorflow.")),
        "tensorflow_datasets": "tensorflow_datasets" in sys.modules,
    }))
    """
)


@pytest.mark.skipif(
    keras.backend.backend() == "tensorflow", reason="the TensorFlow backend imports TensorFlow by definition"
)
def test_backend_import_path_imports_no_tensorflow():
    """Checked in the pass of each non-TensorFlow backend, with that backend's KERAS_BACKEND."""
    backend = keras.backend.backend()
    env = {**os.environ, "KERAS_BACKEND": backend}
    result = subprocess.run(
        [sys.executable, "-c", _PROBE], env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert result.returncode == 0, result.stderr[-4000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["backend"] == backend
    assert report["tensorflow"] == [], f"imported on the {backend} path: {report['tensorflow'][:5]}"
    assert not report["tensorflow_datasets"]
