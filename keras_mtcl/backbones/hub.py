"""keras-hub backbones with a feature pyramid, wrapped as keras_mtcl encoders.

Any `keras_hub.models` backbone that exposes `pyramid_outputs` (ResNet,
MiT, CSPNet, DenseNet, EfficientNet, DINOv2, DINOv3, ...) becomes an
encoder returning a list of maps, finest first, at the requested strides
(default 4, 8, 16, 32):

- convolutional and hierarchical backbones (ResNet "P2".."P5", MiT
  "P1".."P4", ...): the pyramid entry at each stride is returned as is;
  strides are measured from the shapes, not read from the key names;
- vision transformers (DINOv2, DINOv3, and ViT, whose blocks keras-hub keeps
  inside one encoder layer: their outputs are read block by block; token
  sequences (B, N, D), all at the patch stride): the prefix tokens (class and
  register tokens) are dropped, the patch tokens laid out on their
  (H / patch, W / patch) grid, and one transformer stage per requested
  stride (evenly spaced, ending at the last stage, as DPT and InvPT read
  ViTs) is resized bilinearly to that stride.

Three ways to get the keras-hub backbone, only one of which needs the network:

- `config=`: the backbone's class name and constructor arguments (the
  content of a preset's `config.json`); builds random-initialised weights and
  never touches the network;
- `preset=` a local folder written by `Backbone.save_to_preset` (or any
  downloaded preset folder): offline, with its weights;
- `preset=` a preset name or handle ("resnet_50_imagenet",
  "kaggle://...", "hf://..."): downloaded by keras-hub, so it needs the
  network; when the host cannot be reached, `HubOfflineError` is raised at
  once, naming the offline alternatives.

The encoder feeds its input to the keras-hub backbone unchanged: keras_mtcl
pipelines produce ImageNet mean/std normalised images; check the preset's
image converter (`preprocessor.json`) for what its weights expect.

keras-hub is optional (the `hub` extra: `pip install "keras_mtcl[hub]"`), imported only
when one of these functions is called.
"""

from __future__ import annotations

import math
import os
import pathlib
import socket
from typing import Any, Mapping, Sequence

import keras
from keras import layers, ops

from keras_mtcl import optional
from keras_mtcl.backbones import register_backbone
from keras_mtcl.backbones.pyramid import PyramidLevel
from keras_mtcl.backbones.vit import evenly_spaced_blocks
from keras_mtcl.layers import resize_to

_SCHEME_HOSTS = {
    "kaggle": "api.kaggle.com",
    "hf": "huggingface.co",
    "modelscope": "www.modelscope.cn",
    "gs": "storage.googleapis.com",
}
_PROBE_SIZE = 256  # multiple of 32: input size used to measure the strides of backbones with a dynamic input


class HubOfflineError(ConnectionError):
    """A keras-hub preset must be downloaded, and its host cannot be reached."""


def _import_keras_hub():
    return optional.import_optional("keras_hub", "hub", "The keras_hub backbone")


@keras.saving.register_keras_serializable(package="keras_mtcl")
class TokensToMap(layers.Layer):
    """Drops prefix tokens, lays patch tokens out on their grid and resizes the grid.

    Args:
        num_prefix_tokens: class and register tokens before the patch tokens.
        grid_size: (h, w) of the patch grid, row-major in the sequence.
        output_size: (H', W') of the output map; bilinear resizing when it differs from `grid_size`.

    Input shape: (B, num_prefix_tokens + h * w, D). Output shape: (B, H', W', D).
    """

    def __init__(self, num_prefix_tokens: int, grid_size: Sequence[int], output_size: Sequence[int], **kwargs):
        super().__init__(**kwargs)
        self.num_prefix_tokens = int(num_prefix_tokens)
        self.grid_size = tuple(int(s) for s in grid_size)
        self.output_size = tuple(int(s) for s in output_size)
        if self.num_prefix_tokens < 0 or len(self.grid_size) != 2 or len(self.output_size) != 2:
            raise ValueError(
                "`num_prefix_tokens` must be >= 0 and `grid_size`, `output_size` pairs of integers. "
                f"Received: num_prefix_tokens={num_prefix_tokens}, grid_size={grid_size}, output_size={output_size}"
            )

    def call(self, tokens):
        h, w = self.grid_size
        grid = ops.reshape(tokens[:, self.num_prefix_tokens :, :], (-1, h, w, tokens.shape[-1]))
        return resize_to(grid, self.output_size)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], *self.output_size, input_shape[-1])

    def get_config(self):
        config = super().get_config()
        config.update(num_prefix_tokens=self.num_prefix_tokens, grid_size=self.grid_size, output_size=self.output_size)
        return config


def build_hub_backbone(
    preset: str | os.PathLike | None = None,
    config: Mapping[str, Any] | None = None,
    load_weights: bool = True,
):
    """Builds a `keras_hub.models.Backbone` from a config, a local preset folder or a preset name.

    Args:
        preset: a local preset folder (offline), or a keras-hub preset name
            or handle (downloaded; needs the network).
        config: `{"class_name": "ResNetBackbone", "config": {...}}`, the
            class in `keras_hub.models` and its constructor arguments (a
            preset's `config.json` has this form); never touches the network.
        load_weights: whether a preset's weights are loaded (else random init).

    Returns:
        The keras-hub backbone.

    Raises:
        ValueError: not exactly one of `preset` and `config`; a malformed
            config; a preset that is neither a folder nor a known name.
        HubOfflineError: a preset to download and its host is unreachable.
        ImportError: keras-hub is not installed.
    """
    if (preset is None) == (config is None):
        raise ValueError(
            "Pass exactly one of `preset` (a keras-hub preset name or local preset folder) and `config` "
            f"(a class name and constructor arguments). Received: preset={preset!r}, config={config!r}"
        )
    keras_hub = _import_keras_hub()
    if config is not None:
        return _backbone_from_config(keras_hub, config)
    if pathlib.Path(preset).is_dir():
        return keras_hub.models.Backbone.from_preset(str(preset), load_weights=load_weights)
    host = _preset_host(keras_hub, str(preset))
    if not _host_reachable(host):
        raise HubOfflineError(
            f"The keras-hub preset {str(preset)!r} is downloaded from {host}, which cannot be reached. Offline, "
            "pass `preset=` a local preset folder (written by `backbone.save_to_preset(folder)` on a machine "
            "with network access, or a folder downloaded before, e.g. under ~/.cache/kagglehub/models/), or "
            "`config=` the preset's class name and config.json arguments to build random-initialised weights. "
            f"Received: preset={str(preset)!r}"
        )
    return keras_hub.models.Backbone.from_preset(str(preset), load_weights=load_weights)


def _backbone_from_config(keras_hub, config: Mapping[str, Any]):
    if not isinstance(config, Mapping) or not isinstance(config.get("class_name"), str):
        raise ValueError(
            "`config` must be a mapping with a `class_name` string (a class of keras_hub.models, e.g. "
            f"'ResNetBackbone') and a `config` mapping of its arguments. Received: config={config!r}"
        )
    class_name = config["class_name"].split(">")[-1]  # registered names read "keras_hub>ResNetBackbone"
    cls = getattr(keras_hub.models, class_name, None)
    if not (isinstance(cls, type) and issubclass(cls, keras_hub.models.Backbone)):
        raise ValueError(
            "`config['class_name']` must name a backbone class of keras_hub.models, e.g. 'ResNetBackbone', "
            f"'MiTBackbone', 'DINOV2Backbone'. Received: class_name={config['class_name']!r}"
        )
    arguments = config.get("config", {})
    if not isinstance(arguments, Mapping):
        raise ValueError(f"`config['config']` must be a mapping of constructor arguments. Received: {arguments!r}")
    return cls.from_config(dict(arguments))


def _preset_host(keras_hub, preset: str) -> str:
    # keras-hub's preset table sits in a private module (hence the narrow keras-hub range in pyproject.toml).
    presets = optional.import_optional("keras_hub.src.utils.preset_utils", "hub", "A keras-hub preset").BUILTIN_PRESETS
    handle = presets[preset]["kaggle_handle"] if preset in presets else preset
    scheme = handle.split("://")[0].lower() if "://" in handle else None
    if scheme not in _SCHEME_HOSTS:
        raise ValueError(
            "`preset` must be a local preset folder, a keras-hub preset name (e.g. 'resnet_50_imagenet'; see "
            "`keras_hub.models.Backbone.presets`) or a handle starting with "
            f"{[s + '://' for s in _SCHEME_HOSTS]}. Received: preset={preset!r}"
        )
    return _SCHEME_HOSTS[scheme]


def _host_reachable(host: str, timeout: float = 3.0) -> bool:
    """Whether a TCP connection to host:443 opens within `timeout` seconds (True behind a configured proxy)."""
    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return True  # direct connections may be blocked while the proxy works
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False


def _backbone_input(backbone):
    inputs = backbone.input
    if isinstance(inputs, Mapping):
        if len(inputs) != 1:
            raise ValueError(f"The keras-hub backbone {backbone.name!r} takes several inputs {sorted(inputs)}.")
        return next(iter(inputs.values()))
    return inputs


def hub_pyramid_levels(backbone) -> list[PyramidLevel]:
    """The entries of a keras-hub backbone's `pyramid_outputs`, with measured strides, in their order.

    A map's stride is the input size over its size (measured at a
    256 x 256 input when the backbone takes any size); its level is named
    "P<log2 stride>" (`PyramidLevel.at`), whatever keras-hub calls it (MiT's
    "P1" is at stride 4). Token sequences are at the backbone's `patch_size`
    and keep keras-hub's name ("stage4") as their key, with `tokens=True`.
    Each level's `source` is its key in `pyramid_outputs`. Several entries
    may share a stride (every transformer stage), so this is a list, not a
    `FeaturePyramid`.

    Raises:
        ValueError: the backbone has no `pyramid_outputs`.
    """
    pyramid = _pyramid_outputs(backbone)
    if not pyramid:
        raise ValueError(
            f"The keras-hub backbone {backbone.name!r} ({type(backbone).__name__}) has no `pyramid_outputs`; "
            "only backbones with a feature pyramid can be encoders."
        )
    image = _backbone_input(backbone)
    height = image.shape[1]
    maps = {k: v for k, v in pyramid.items() if len(v.shape) == 4}
    sizes = {k: v.shape[1] for k, v in maps.items()}
    if maps and (height is None or any(s is None for s in sizes.values())):
        probe = keras.Model(backbone.input, list(maps.values()))
        shape = (1, _PROBE_SIZE, _PROBE_SIZE, image.shape[-1])
        probe_input = {k: shape for k in backbone.input} if isinstance(backbone.input, Mapping) else shape
        sizes = {k: s[1] for k, s in zip(maps, probe.compute_output_shape(probe_input))}
        height = _PROBE_SIZE
    levels = []
    for key, value in pyramid.items():
        if len(value.shape) == 4:
            levels.append(PyramidLevel.at(int(round(height / sizes[key])), int(value.shape[-1]), source=key))
        else:
            stride = _patch_size(backbone)
            levels.append(PyramidLevel(key, stride, int(value.shape[-1]), source=key, tokens=True))
    return levels


@register_backbone("keras_hub")
def keras_hub_encoder(
    preset: str | os.PathLike | None = None,
    config: Mapping[str, Any] | None = None,
    backbone=None,
    strides: Sequence[int] = (4, 8, 16, 32),
    load_weights: bool = True,
    name: str = "keras_hub_encoder",
) -> keras.Model:
    """A keras-hub backbone as an encoder returning maps at `strides`, finest first.

    Args:
        preset: a local preset folder (offline) or a keras-hub preset name or
            handle (needs the network); see `build_hub_backbone`.
        config: `{"class_name": ..., "config": {...}}`; builds offline.
        backbone: an already built keras-hub backbone (instead of `preset` / `config`).
        strides: output strides, increasing. Map pyramids must have an entry
            at each; token pyramids are resized to them.
        load_weights: whether a preset's weights are loaded.
        name: model name.

    Input shape: (B, H, W, C), the backbone's input (fixed H, W when the backbone fixes them).
    Output: list of maps (B, ceil(H / s), ceil(W / s), C_s) for s in `strides`
        (a map pyramid's own sizes, e.g. floor for MiT).

    Raises:
        ValueError: bad arguments, a stride the pyramid lacks, a token
            backbone with an unknown input size or patch size.
        HubOfflineError: a preset to download and its host is unreachable.

    Example:
    >>> encoder = keras_hub_encoder(config={"class_name": "ResNetBackbone", "config": {
    ...     "input_conv_filters": [8], "input_conv_kernel_sizes": [3],
    ...     "stackwise_num_filters": [64, 16, 16, 16], "stackwise_num_blocks": [1, 1, 1, 1],
    ...     "stackwise_num_strides": [1, 2, 2, 2], "block_type": "basic_block_vd"}})
    >>> [tuple(s) for s in encoder.compute_output_shape((1, 64, 96, 3))]
    [(1, 16, 24, 64), (1, 8, 12, 16), (1, 4, 6, 16), (1, 2, 3, 16)]
    """
    strides = tuple(int(s) for s in strides)
    if not strides or min(strides) < 1 or list(strides) != sorted(set(strides)):
        raise ValueError(f"`strides` must be increasing positive integers. Received: strides={strides}")
    if backbone is None:
        backbone = build_hub_backbone(preset=preset, config=config, load_weights=load_weights)
    elif preset is not None or config is not None:
        raise ValueError(
            "Pass `backbone` alone, or one of `preset` and `config`. "
            f"Received: backbone={backbone.name!r}, preset={preset!r}, config={config!r}"
        )
    levels = hub_pyramid_levels(backbone)
    pyramid = _pyramid_outputs(backbone)
    maps = {level.stride: level for level in levels if not level.tokens}  # the deepest entry at each stride
    if maps:
        missing = [s for s in strides if s not in maps]
        if missing:
            raise ValueError(
                f"The pyramid of {backbone.name!r} has maps at strides {sorted(maps)} "
                f"(keys {[lv.source for lv in levels]}), not at {missing}. Received: strides={strides}"
            )
        outputs = [pyramid[maps[s].source] for s in strides]
    else:
        outputs = _token_outputs(backbone, levels, strides)
    features = keras.Model(backbone.input, outputs, name=f"{backbone.name}_pyramid")
    image = _backbone_input(backbone)
    inputs = keras.Input(tuple(image.shape[1:]), name="images")
    if isinstance(backbone.input, Mapping):
        result = features({k: inputs for k in backbone.input})
    else:
        result = features(inputs)
    return keras.Model(inputs, list(result), name=name)


def _token_outputs(backbone, levels: list[PyramidLevel], strides: tuple[int, ...]) -> list:
    """One transformer stage per stride (evenly spaced, ending at the last), as a map at that stride."""
    image = _backbone_input(backbone)
    height, width = image.shape[1], image.shape[2]
    patch = _patch_size(backbone)
    if height is None or width is None or patch < 1:
        raise ValueError(
            f"The token backbone {backbone.name!r} needs a fixed `image_shape` and a `patch_size` to lay tokens "
            f"out on a grid. Received: image_shape={tuple(image.shape[1:])}, patch_size={patch}"
        )
    stages = [level for level in levels if level.source != "stem"]  # "stem" holds the embeddings, before any stage
    grid = (height // patch, width // patch)
    outputs = []
    for stride, block in zip(strides, evenly_spaced_blocks(len(stages), len(strides))):
        level = stages[block]
        tokens = _pyramid_outputs(backbone)[level.source]
        prefix = int(tokens.shape[1]) - grid[0] * grid[1]
        size = (math.ceil(height / stride), math.ceil(width / stride))
        outputs.append(TokensToMap(prefix, grid, size, name=f"{level.source}_to_stride{stride}")(tokens))
    return outputs


def _patch_size(backbone) -> int:
    """The side of a token backbone's square patches (keras-hub's ViT stores a pair); 0 when it has none."""
    patch = getattr(backbone, "patch_size", 0) or 0
    if isinstance(patch, (tuple, list)):
        if len(set(patch)) != 1:
            raise ValueError(f"Only square patches can be laid out on a grid. Received: patch_size={tuple(patch)}")
        patch = patch[0]
    return int(patch)


def _pyramid_outputs(backbone) -> dict:
    """`backbone.pyramid_outputs`; for keras-hub's ViT, which has none, its embeddings and each block's tokens.

    keras-hub's `ViTBackbone` runs all its blocks inside one `ViTEncoder`
    layer; its patch embedding and those blocks are called again, one after
    the other, on the backbone's input (the same weights), giving "stem" and
    "stage1".."stageN" as DINOv2's pyramid names them. The encoder's input
    dropout (off at inference) and final layer norm are left out. Stored on
    the backbone, so that every caller reads the same tensors.
    """
    pyramid = dict(getattr(backbone, "pyramid_outputs", None) or {})
    keras_hub = _import_keras_hub()
    if pyramid or not isinstance(backbone, keras_hub.models.ViTBackbone):
        return pyramid
    x = backbone.get_layer("vit_patching_and_embedding")(_backbone_input(backbone))
    pyramid["stem"] = x
    for i, block in enumerate(backbone.get_layer("vit_encoder").encoder_layers):
        x = block(x)
        pyramid[f"stage{i + 1}"] = x
    backbone.pyramid_outputs = pyramid
    return pyramid
