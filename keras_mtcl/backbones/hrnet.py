"""HRNetV2 backbones (W18-small-v2, W18, W48), layer for layer like timm's, with a timm weight loader.

HRNet keeps a high-resolution branch through the whole network and adds a
lower-resolution branch at each stage; every module exchanges information
between all branches (upsampled 1x1 convs from coarser branches, strided 3x3
convs from finer ones, summed, then ReLU). The backbone returns the four
branch outputs of the last module, the features MTI-Net and ATRC decode:

    [(B, H/4, W/4, C), (B, H/8, W/8, 2C), (B, H/16, W/16, 4C), (B, H/32, W/32, 8C)]

with C = 18 for W18 and 48 for W48. They equal timm's
`timm.create_model(name, features_only=True, feature_location="", out_indices=(1, 2, 3, 4))`
(no "incre" head) after `load_timm_state_dict`.

Layers are named after timm's module paths with "-" for "." (PyTorch
parameter names cannot contain dots), e.g. `stage2-0-fuse_layers-0-1-0`
holds timm's `stage2.0.fuse_layers.0.1.0.weight`.

Geometry: stride-2 convolutions pad one pixel on each side (PyTorch's
`padding=1`, not Keras's "same", which pads only after on even sizes).
Coarse branches are upsampled by repeating pixels and cropped to the finer
branch's size, so any input size works; for sizes that are multiples of 32
this is exactly timm's nearest `nn.Upsample` (timm fails on other sizes).

Reference: Wang et al., "Deep High-Resolution Representation Learning for
Visual Recognition", TPAMI 2020; timm `timm/models/hrnet.py`.
"""

from __future__ import annotations

import os
import pathlib
from typing import Mapping, Sequence

import keras
import numpy as np
from keras import layers, ops

from keras_mtcl.backbones import register_backbone
from keras_mtcl.backbones.weights import WeightsNotFoundError, resolve_state_dict

# timm's HRNet constants, shared by all variants.
_STEM_WIDTH = 64
_STAGE1_WIDTH = 64  # bottleneck width of layer1; its output has 4x as many channels
_BOTTLENECK_EXPANSION = 4
_BN_EPSILON = 1e-5
_BN_MOMENTUM = 0.9  # PyTorch momentum 0.1

# Parameters of a timm HRNet classification checkpoint that the raw-branch backbone does not use.
_TIMM_HEAD_PREFIXES = ("incre_modules.", "downsamp_modules.", "final_layer.", "classifier.")


class HRNetWeightsError(ValueError):
    """A weights file or state dict does not fit the HRNet built (missing, unexpected or misshapen tensors)."""


@keras.saving.register_keras_serializable(package="keras_mtcl")
class NearestUpsampleTo(layers.Layer):
    """Repeats each pixel `factor` times along H and W, then crops to a reference map's size.

    Args:
        factor: integer upsampling factor.

    Input: `[x, reference]` with x (B, h, w, C) and reference (B, H, W, C'),
        where h * factor >= H and w * factor >= W.
    Output shape: (B, H, W, C).
    """

    def __init__(self, factor: int, **kwargs):
        super().__init__(**kwargs)
        if int(factor) < 1:
            raise ValueError(f"`factor` must be an integer >= 1. Received: factor={factor}")
        self.factor = int(factor)

    def call(self, inputs):
        x, reference = inputs
        x = ops.repeat(ops.repeat(x, self.factor, axis=1), self.factor, axis=2)
        height, width = ops.shape(reference)[1], ops.shape(reference)[2]
        return x[:, :height, :width, :]

    def compute_output_shape(self, input_shape):
        x_shape, reference_shape = input_shape
        return (x_shape[0], reference_shape[1], reference_shape[2], x_shape[3])

    def get_config(self):
        config = super().get_config()
        config.update(factor=self.factor)
        return config


@keras.saving.register_keras_serializable(package="keras_mtcl")
class KaimingNormalFanOut(keras.initializers.Initializer):
    """timm's HRNet kernel init: normal with std sqrt(2 / (kh * kw * C_out)) ("fan_out", ReLU gain).

    Values are drawn with numpy (then converted): on JAX, Keras's random
    initialisers compile one sampler per kernel shape, about 0.3 s each,
    which made building W18-small-v2 take over 10 s. With `seed=None` the
    draws come from numpy's global generator, which
    `keras.utils.set_random_seed` seeds.

    Args:
        seed: int seed of a private generator, or None.
    """

    def __init__(self, seed: int | None = None):
        self.seed = seed

    def __call__(self, shape, dtype=None):
        *kernel, c_out = shape
        std = np.sqrt(2.0 / (float(np.prod(kernel[:-1])) * c_out))
        rng = np.random if self.seed is None else np.random.default_rng(self.seed)
        values = rng.standard_normal(tuple(shape)) * std
        return ops.cast(ops.convert_to_tensor(values.astype("float32")), dtype or "float32")

    def get_config(self):
        return {"seed": self.seed}


def _keras_name(path: str) -> str:
    return path.replace(".", "-")


def _conv_bn(x, filters: int, kernel_size: int, strides: int, conv_path: str, bn_path: str, relu_name: str | None):
    """Conv (no bias) + batch norm (+ ReLU), padded like PyTorch's `padding=kernel_size // 2`."""
    if strides > 1 and kernel_size > 1:
        x = layers.ZeroPadding2D(kernel_size // 2, name=_keras_name(conv_path) + "-pad")(x)
        padding = "valid"
    else:
        padding = "same"
    x = layers.Conv2D(
        filters,
        kernel_size,
        strides=strides,
        padding=padding,
        use_bias=False,
        kernel_initializer=KaimingNormalFanOut(),
        name=_keras_name(conv_path),
    )(x)
    x = layers.BatchNormalization(momentum=_BN_MOMENTUM, epsilon=_BN_EPSILON, name=_keras_name(bn_path))(x)
    if relu_name is not None:
        x = layers.ReLU(name=_keras_name(relu_name))(x)
    return x


def _residual_block(x, planes: int, bottleneck: bool, path: str):
    """timm's ResNet BasicBlock (two 3x3) or Bottleneck (1x1, 3x3, 1x1 with 4x expansion), stride 1."""
    out_channels = planes * _BOTTLENECK_EXPANSION if bottleneck else planes
    shortcut = x
    if x.shape[-1] != out_channels:
        shortcut = _conv_bn(x, out_channels, 1, 1, f"{path}.downsample.0", f"{path}.downsample.1", None)
    if bottleneck:
        y = _conv_bn(x, planes, 1, 1, f"{path}.conv1", f"{path}.bn1", f"{path}.act1")
        y = _conv_bn(y, planes, 3, 1, f"{path}.conv2", f"{path}.bn2", f"{path}.act2")
        y = _conv_bn(y, out_channels, 1, 1, f"{path}.conv3", f"{path}.bn3", None)
        last_act = f"{path}.act3"
    else:
        y = _conv_bn(x, planes, 3, 1, f"{path}.conv1", f"{path}.bn1", f"{path}.act1")
        y = _conv_bn(y, planes, 3, 1, f"{path}.conv2", f"{path}.bn2", None)
        last_act = f"{path}.act2"
    y = layers.Add(name=_keras_name(f"{path}.add"))([y, shortcut])
    return layers.ReLU(name=_keras_name(last_act))(y)


def _transition(branches: list, widths: Sequence[int], path: str) -> list:
    """Adapts stage outputs to the next stage: keeps existing branches, adds one strided branch from the coarsest."""
    out = []
    for i, width in enumerate(widths):
        if i < len(branches):
            x = branches[i]
            if x.shape[-1] != width:
                x = _conv_bn(x, width, 3, 1, f"{path}.{i}.0", f"{path}.{i}.1", f"{path}.{i}.2")
            out.append(x)
        else:
            x = branches[-1]
            steps = i + 1 - len(branches)
            for k in range(steps):
                filters = width if k == steps - 1 else x.shape[-1]
                x = _conv_bn(x, filters, 3, 2, f"{path}.{i}.{k}.0", f"{path}.{i}.{k}.1", f"{path}.{i}.{k}.2")
            out.append(x)
    return out


def _hr_module(branches: list, widths: Sequence[int], blocks: int, path: str) -> list:
    """One HighResolutionModule: `blocks` BasicBlocks per branch, then the all-to-all fuse."""
    branches = list(branches)
    for i, width in enumerate(widths):
        for b in range(blocks):
            branches[i] = _residual_block(branches[i], width, False, f"{path}.branches.{i}.{b}")
    fused = []
    for i, width in enumerate(widths):
        terms = []
        for j, x in enumerate(branches):
            fuse = f"{path}.fuse_layers.{i}.{j}"
            if j > i:  # coarser: 1x1 conv to this width, then nearest upsampling
                x = _conv_bn(x, width, 1, 1, f"{fuse}.0", f"{fuse}.1", None)
                x = NearestUpsampleTo(2 ** (j - i), name=_keras_name(f"{fuse}.2"))([x, branches[i]])
            elif j < i:  # finer: i - j strided 3x3 convs, ReLU between them
                for k in range(i - j):
                    last = k == i - j - 1
                    filters = width if last else x.shape[-1]
                    x = _conv_bn(x, filters, 3, 2, f"{fuse}.{k}.0", f"{fuse}.{k}.1", None if last else f"{fuse}.{k}.2")
            terms.append(x)
        y = layers.Add(name=_keras_name(f"{path}.fuse_add.{i}"))(terms)
        fused.append(layers.ReLU(name=_keras_name(f"{path}.fuse_act.{i}"))(y))
    return fused


def hrnet(
    width: int = 18,
    stage1_blocks: int = 4,
    stage_modules: Sequence[int] = (1, 4, 3),
    blocks_per_branch: int = 4,
    input_channels: int = 3,
    weights: str | os.PathLike | Mapping | None = None,
    name: str = "hrnet",
) -> keras.Model:
    """Builds an HRNetV2 backbone returning its four branch outputs (strides 4, 8, 16, 32).

    The stem (two stride-2 3x3 conv-BN-ReLU, 64 channels) is followed by
    `stage1_blocks` bottlenecks (256 channels), then stages 2, 3, 4 with 2, 3
    and 4 branches of widths width * (1, 2, 4, 8), each stage made of
    `stage_modules[s]` HighResolutionModules of `blocks_per_branch` basic
    blocks per branch. timm's variants: `hrnet_w18_small_v2` is
    (width 18, 2, (1, 3, 2), 2), `hrnet_w18` is (18, 4, (1, 4, 3), 4) and
    `hrnet_w48` is (48, 4, (1, 4, 3), 4).

    Args:
        width: channels of the highest-resolution branch.
        stage1_blocks: bottleneck blocks of stage 1.
        stage_modules: HighResolutionModules in stages 2, 3 and 4.
        blocks_per_branch: basic blocks per branch in each module.
        input_channels: channels of the input image.
        weights: None (random init); a state dict with timm's parameter
            names, as a mapping or a `.npz` / `.pth` / `.pt` file (a full
            timm classification checkpoint works: its head is ignored); or
            a Keras `.weights.h5` file of this same architecture. See
            `load_weights`; `mtcl-convert-hrnet` converts other
            formats (.safetensors). No HRNet weights install offline.
        name: model name.

    Input shape: (B, H, W, input_channels), normalised images (timm's
        checkpoints expect ImageNet mean/std).
    Output: list of four maps (B, ceil(H/4), ceil(W/4), width), (B, ceil(H/8), ceil(W/8), 2 * width),
        (B, ceil(H/16), ceil(W/16), 4 * width), (B, ceil(H/32), ceil(W/32), 8 * width).

    Raises:
        WeightsNotFoundError: `weights` names a file that does not exist, or a tag.
        HRNetWeightsError: the weights do not fit this architecture.

    Example:
    >>> model = hrnet(width=4, stage1_blocks=1, stage_modules=(1, 1, 1), blocks_per_branch=1)
    >>> [tuple(s) for s in model.compute_output_shape((1, 64, 96, 3))]
    [(1, 16, 24, 4), (1, 8, 12, 8), (1, 4, 6, 16), (1, 2, 3, 32)]
    """
    stage_modules = tuple(int(m) for m in stage_modules)
    if int(width) < 1:
        raise ValueError(f"`width` must be a positive integer. Received: width={width}")
    if int(stage1_blocks) < 1:
        raise ValueError(f"`stage1_blocks` must be a positive integer. Received: stage1_blocks={stage1_blocks}")
    if len(stage_modules) != 3 or min(stage_modules) < 1:
        raise ValueError(
            f"`stage_modules` must be three positive integers (stages 2, 3, 4). Received: stage_modules={stage_modules}"
        )
    if int(blocks_per_branch) < 1:
        raise ValueError(
            f"`blocks_per_branch` must be a positive integer. Received: blocks_per_branch={blocks_per_branch}"
        )
    if int(input_channels) < 1:
        raise ValueError(f"`input_channels` must be a positive integer. Received: input_channels={input_channels}")

    if weights is not None:
        _check_weights(weights)  # before building: a big model takes a while to initialise

    inputs = keras.Input((None, None, int(input_channels)), name="images")
    x = _conv_bn(inputs, _STEM_WIDTH, 3, 2, "conv1", "bn1", "act1")
    x = _conv_bn(x, _STEM_WIDTH, 3, 2, "conv2", "bn2", "act2")
    for b in range(int(stage1_blocks)):
        x = _residual_block(x, _STAGE1_WIDTH, True, f"layer1.{b}")
    branches = [x]
    for s, modules in enumerate(stage_modules):
        widths = [int(width) * 2**i for i in range(s + 2)]
        branches = _transition(branches, widths, f"transition{s + 1}")
        for m in range(modules):
            branches = _hr_module(branches, widths, int(blocks_per_branch), f"stage{s + 2}.{m}")
    model = keras.Model(inputs, branches, name=name)
    if weights is not None:
        load_weights(model, weights)
    return model


def load_weights(model: keras.Model, weights) -> None:
    """Loads weights into an HRNet built by `hrnet`: a timm state dict, or a Keras `.weights.h5` file.

    Args:
        model: a model returned by `hrnet` or one of the registered variants.
        weights: a state dict with timm's parameter names (a mapping of names
            to arrays, or a `.npz` / `.pth` / `.pt` file, read by
            `keras_mtcl.backbones.weights.resolve_state_dict`), or the path of
            a `.weights.h5` file saved from the same variant.

    Raises:
        WeightsNotFoundError: no file at `weights`, or a preset tag such as
            "imagenet" (no HRNet weights install offline; the message says
            where to get them).
        WeightsFormatError: the file cannot be read as a state dict.
        HRNetWeightsError: the weights do not fit this architecture.
    """
    _check_weights(weights)
    if isinstance(weights, (str, os.PathLike)) and str(weights).endswith(".weights.h5"):
        try:
            model.load_weights(weights)
        except ValueError as error:
            raise HRNetWeightsError(f"{weights} does not hold weights of {model.name!r}: {error}") from error
        return
    load_timm_state_dict(model, resolve_state_dict(weights, model.name))


def _check_weights(weights) -> None:
    """Fails fast, before a large model is built, on a missing file or a tag without weights."""
    if not isinstance(weights, (str, os.PathLike)):
        return  # a mapping, or a wrong type that resolve_state_dict reports
    path = pathlib.Path(weights)
    looks_like_path = path.suffix or os.sep in str(weights)
    if not looks_like_path and not path.is_file():
        raise WeightsNotFoundError(
            "No HRNet weights install offline. Download a timm checkpoint (e.g. `timm/hrnet_w18.ms_aug_in1k` "
            "from the Hugging Face Hub, MIT licence), convert it with mtcl-convert-hrnet and pass the "
            f"file's path. Received: weights={str(weights)!r}"
        )
    if not path.is_file():
        raise WeightsNotFoundError(
            "`weights` must be None, a state dict, or the path of an existing HRNet weights file (.npz, .pth, "
            f".pt or .weights.h5; mtcl-convert-hrnet writes them). Received: weights={str(weights)!r}"
        )


def timm_backbone_tensors(state_dict: Mapping[str, np.ndarray], prefix: str = "") -> dict[str, np.ndarray]:
    """The tensors of a timm HRNet state dict that the backbone uses, keyed without `prefix`.

    Drops keys without `prefix`, `num_batches_tracked` counters and the
    classification head (`incre_modules`, `downsamp_modules`, `final_layer`,
    `classifier`).
    """
    out = {}
    for key, value in state_dict.items():
        if not key.startswith(prefix) or key.endswith("num_batches_tracked"):
            continue
        key = key[len(prefix) :]
        if not key.startswith(_TIMM_HEAD_PREFIXES):
            out[key] = value
    return out


def load_timm_state_dict(model: keras.Model, state_dict: Mapping[str, np.ndarray], prefix: str = "") -> None:
    """Copies a timm HRNet state dict into an HRNet built by `hrnet` (same variant).

    Conv kernels go from PyTorch's (C_out, C_in, kh, kw) to Keras's
    (kh, kw, C_in, C_out); batch-norm weight, bias, running mean and running
    variance become gamma, beta, moving mean and moving variance. The
    classification head of a full timm checkpoint (`incre_modules`,
    `downsamp_modules`, `final_layer`, `classifier`) and `num_batches_tracked`
    counters are ignored; every other tensor must be used.

    Args:
        model: a model returned by `hrnet` or one of the registered variants.
        state_dict: parameter name -> array (numpy, or anything `np.asarray` takes).
        prefix: only keys starting with it are read, with it removed
            (e.g. "backbone." for a checkpoint of a larger model).

    Raises:
        HRNetWeightsError: a tensor the model needs is missing, one is left
            over (another variant?), or a shape differs.
    """
    state = timm_backbone_tensors(state_dict, prefix)
    assignments, missing = [], []
    for layer in model.layers:
        torch_path = layer.name.replace("-", ".")
        if isinstance(layer, layers.Conv2D):
            keys = [f"{torch_path}.weight"]
        elif isinstance(layer, layers.BatchNormalization):
            keys = [f"{torch_path}.{k}" for k in ("weight", "bias", "running_mean", "running_var")]
        else:
            continue
        if any(k not in state for k in keys):
            missing += [k for k in keys if k not in state]
            continue
        values = [np.asarray(state[k], dtype="float32") for k in keys]
        expected = [tuple(v.shape) for v in layer.weights]
        if isinstance(layer, layers.Conv2D):
            kh, kw, c_in, c_out = expected[0]
            expected = [(c_out, c_in, kh, kw)]  # PyTorch layout
        for key, value, shape in zip(keys, values, expected):
            if tuple(value.shape) != shape:
                raise HRNetWeightsError(
                    f"State dict tensor {prefix}{key} has the wrong shape for {model.name!r}: expected {shape}. "
                    f"Received: shape={tuple(value.shape)}"
                )
        if isinstance(layer, layers.Conv2D):
            values = [values[0].transpose(2, 3, 1, 0)]
        assignments.append((layer, values))
        for key in keys:
            state.pop(key)
    if missing:
        raise HRNetWeightsError(
            f"The state dict lacks {len(missing)} tensors that {model.name!r} needs, e.g. "
            f"{[prefix + k for k in missing[:5]]}. Is it a timm HRNet of the same variant (with prefix={prefix!r})?"
        )
    if state:
        leftover = sorted(state)
        raise HRNetWeightsError(
            f"The state dict has {len(leftover)} tensors that {model.name!r} does not use, e.g. "
            f"{[prefix + k for k in leftover[:5]]}. Is it a timm HRNet of the same variant?"
        )
    for layer, values in assignments:
        layer.set_weights(values)


@register_backbone("hrnet_w18_small_v2")
def hrnet_w18_small_v2(
    input_channels: int = 3, weights: str | os.PathLike | Mapping | None = None, name: str = "hrnet_w18_small_v2"
) -> keras.Model:
    """HRNetV2-W18-small-v2 (timm `hrnet_w18_small_v2`, 3.9 M parameters without the classifier head).

    Output: four maps with 18, 36, 72, 144 channels at strides 4, 8, 16, 32. See `hrnet` for the arguments.
    """
    return hrnet(18, 2, (1, 3, 2), 2, input_channels=input_channels, weights=weights, name=name)


@register_backbone("hrnet_w18")
def hrnet_w18(
    input_channels: int = 3, weights: str | os.PathLike | Mapping | None = None, name: str = "hrnet_w18"
) -> keras.Model:
    """HRNetV2-W18 (timm `hrnet_w18`, 9.6 M parameters without the classifier head).

    Output: four maps with 18, 36, 72, 144 channels at strides 4, 8, 16, 32. See `hrnet` for the arguments.
    """
    return hrnet(18, 4, (1, 4, 3), 4, input_channels=input_channels, weights=weights, name=name)


@register_backbone("hrnet_w48")
def hrnet_w48(
    input_channels: int = 3, weights: str | os.PathLike | Mapping | None = None, name: str = "hrnet_w48"
) -> keras.Model:
    """HRNetV2-W48 (timm `hrnet_w48`, 65.4 M parameters without the classifier head).

    Output: four maps with 48, 96, 192, 384 channels at strides 4, 8, 16, 32. See `hrnet` for the arguments.
    """
    return hrnet(48, 4, (1, 4, 3), 4, input_channels=input_channels, weights=weights, name=name)
