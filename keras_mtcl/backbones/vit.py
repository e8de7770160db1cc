"""A plain vision transformer (ViT) exposed as a feature pyramid, as InvPT and DPT read ViTs.

The image is cut into `patch_size` patches (a strided convolution; sides that
are not multiples of the patch are zero-padded, as a padded convolution
does), a class token is prepended and learned position embeddings are
added, resized bilinearly from their `position_grid` to the image's patch
grid, so any input size works. Pre-norm transformer blocks (multi-head
self-attention and a GELU MLP, each with a residual) follow. The tokens of
one block per output stride (evenly spaced, ending at the last block:
blocks 3, 6, 9, 12 of 12 and 6, 12, 18, 24 of 24, InvPT's choice for ViT-B
and ViT-L) are laid out on their patch grid and resized bilinearly to
strides 4, 8, 16, 32: a `FeaturePyramid` like any other backbone's.

Widths are data (`VIT_VARIANTS`, timm's ViT-Ti/S/B/L at patch 16);
`vit_tiny` and `vit_small` are registered, and every variant is built by
`vision_transformer(**VIT_VARIANTS[name])`. Weights are random: no download.

Reference:
    Dosovitskiy et al., "An Image is Worth 16x16 Words", ICLR 2021;
    Ye and Xu, "Inverted Pyramid Multi-task Transformer for Dense Scene
    Understanding" (InvPT), ECCV 2022.
"""

from __future__ import annotations

import math
import types
from typing import Sequence

import keras
from keras import layers, ops

from keras_mtcl.backbones import register_backbone
from keras_mtcl.layers import resize_to

# timm's ViT widths (hidden_dim, num_layers, num_heads) at patch 16.
VIT_VARIANTS = types.MappingProxyType(
    {
        "tiny": types.MappingProxyType({"hidden_dim": 192, "num_layers": 12, "num_heads": 3}),
        "small": types.MappingProxyType({"hidden_dim": 384, "num_layers": 12, "num_heads": 6}),
        "base": types.MappingProxyType({"hidden_dim": 768, "num_layers": 12, "num_heads": 12}),
        "large": types.MappingProxyType({"hidden_dim": 1024, "num_layers": 24, "num_heads": 16}),
    }
)


def evenly_spaced_blocks(num_blocks: int, count: int) -> list[int]:
    """Indices (0-based) of `count` blocks out of `num_blocks`, evenly spaced and ending at the last.

    Example:
    >>> evenly_spaced_blocks(12, 4), evenly_spaced_blocks(24, 4), evenly_spaced_blocks(4, 4)
    ([2, 5, 8, 11], [5, 11, 17, 23], [0, 1, 2, 3])
    """
    return [math.ceil(num_blocks * (i + 1) / count) - 1 for i in range(count)]


def _ceil_div(size, divisor: int):
    """ceil(size / divisor) for an int or a symbolic size (None stays None)."""
    return None if size is None else (size + divisor - 1) // divisor


@keras.saving.register_keras_serializable(package="keras_mtcl")
class PatchEmbedding(layers.Layer):
    """Patch tokens with a class token and learned position embeddings resized to the patch grid.

    Args:
        hidden_dim: token width D.
        patch_size: side of the square patches (the convolution's kernel and stride).
        position_grid: (h, w) of the learned position embeddings, resized
            bilinearly to the input's patch grid when it differs.

    Input shape: (B, H, W, C). Output shape: (B, 1 + ceil(H / p) * ceil(W / p), D),
    the class token first, then the patches row by row.
    """

    def __init__(self, hidden_dim: int, patch_size: int, position_grid: Sequence[int] = (14, 14), **kwargs):
        super().__init__(**kwargs)
        self.hidden_dim = int(hidden_dim)
        self.patch_size = int(patch_size)
        self.position_grid = tuple(int(s) for s in position_grid)
        self.projection = layers.Conv2D(
            self.hidden_dim, self.patch_size, strides=self.patch_size, padding="same", name="projection", dtype=self.dtype_policy
        )

    def build(self, input_shape):
        self.projection.build(input_shape)
        init = keras.initializers.TruncatedNormal(stddev=0.02)  # timm's ViT initialisation
        self.class_token = self.add_weight(shape=(1, 1, self.hidden_dim), initializer=init, name="class_token")
        self.class_position = self.add_weight(shape=(1, 1, self.hidden_dim), initializer=init, name="class_position")
        self.patch_positions = self.add_weight(
            shape=(1, *self.position_grid, self.hidden_dim), initializer=init, name="patch_positions"
        )

    def call(self, images):
        patches = self.projection(images)
        grid = ops.shape(patches)[1:3]
        positions = resize_to(ops.convert_to_tensor(self.patch_positions), grid)
        batch = ops.shape(patches)[0]
        tokens = ops.reshape(patches + ops.cast(positions, patches.dtype), (batch, -1, self.hidden_dim))
        prefix = ops.cast(self.class_token + self.class_position, tokens.dtype)
        return ops.concatenate([ops.tile(prefix, (batch, 1, 1)), tokens], axis=1)

    def compute_output_shape(self, input_shape):
        height, width = _ceil_div(input_shape[1], self.patch_size), _ceil_div(input_shape[2], self.patch_size)
        tokens = None if height is None or width is None else 1 + height * width
        return (input_shape[0], tokens, self.hidden_dim)

    def get_config(self):
        config = super().get_config()
        config.update(hidden_dim=self.hidden_dim, patch_size=self.patch_size, position_grid=self.position_grid)
        return config


@keras.saving.register_keras_serializable(package="keras_mtcl")
class TransformerBlock(layers.Layer):
    """Pre-norm transformer block: x + MHSA(LN(x)), then x + MLP(LN(x)) with a GELU MLP.

    Args:
        hidden_dim: token width D.
        num_heads: attention heads (D must be a multiple).
        mlp_dim: hidden width of the MLP.
        layer_norm_epsilon: epsilon of both layer norms (1e-6 in timm's ViT).

    Input shape: (B, N, D). Output shape: (B, N, D).
    """

    def __init__(self, hidden_dim: int, num_heads: int, mlp_dim: int, layer_norm_epsilon: float = 1e-6, **kwargs):
        super().__init__(**kwargs)
        self.hidden_dim, self.num_heads, self.mlp_dim = int(hidden_dim), int(num_heads), int(mlp_dim)
        self.layer_norm_epsilon = float(layer_norm_epsilon)
        dtype = self.dtype_policy
        self.norm1 = layers.LayerNormalization(epsilon=self.layer_norm_epsilon, name="norm1", dtype=dtype)
        self.attention = layers.MultiHeadAttention(
            self.num_heads, self.hidden_dim // self.num_heads, name="attention", dtype=dtype
        )
        self.norm2 = layers.LayerNormalization(epsilon=self.layer_norm_epsilon, name="norm2", dtype=dtype)
        self.mlp_in = layers.Dense(self.mlp_dim, activation="gelu", name="mlp_in", dtype=dtype)
        self.mlp_out = layers.Dense(self.hidden_dim, name="mlp_out", dtype=dtype)

    def build(self, input_shape):
        for norm in (self.norm1, self.norm2):
            norm.build(input_shape)
        self.attention.build(input_shape, input_shape)
        self.mlp_in.build(input_shape)
        self.mlp_out.build(tuple(input_shape[:-1]) + (self.mlp_dim,))

    def call(self, tokens, training=None):
        x = self.norm1(tokens)
        tokens = tokens + self.attention(x, x, training=training)
        return tokens + self.mlp_out(self.mlp_in(self.norm2(tokens)))

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update(
            hidden_dim=self.hidden_dim,
            num_heads=self.num_heads,
            mlp_dim=self.mlp_dim,
            layer_norm_epsilon=self.layer_norm_epsilon,
        )
        return config


@keras.saving.register_keras_serializable(package="keras_mtcl")
class PatchTokensToMap(layers.Layer):
    """Drops the prefix tokens, lays the patch tokens on the image's patch grid, resizes it to `stride`.

    The grid is read from the image, so any input size works (with static
    sizes when they are known).

    Args:
        num_prefix_tokens: class (and register) tokens before the patches.
        patch_size: side of the patches.
        stride: output stride.

    Input: [(B, num_prefix_tokens + ceil(H / p) * ceil(W / p), D) tokens, (B, H, W, C) images].
    Output shape: (B, ceil(H / stride), ceil(W / stride), D).
    """

    def __init__(self, num_prefix_tokens: int, patch_size: int, stride: int, **kwargs):
        super().__init__(**kwargs)
        self.num_prefix_tokens, self.patch_size, self.stride = int(num_prefix_tokens), int(patch_size), int(stride)

    def call(self, inputs):
        tokens, images = inputs
        height, width = ops.shape(images)[1], ops.shape(images)[2]
        grid = (_ceil_div(height, self.patch_size), _ceil_div(width, self.patch_size))
        maps = ops.reshape(tokens[:, self.num_prefix_tokens :, :], (-1, *grid, tokens.shape[-1]))
        return resize_to(maps, (_ceil_div(height, self.stride), _ceil_div(width, self.stride)))

    def compute_output_shape(self, input_shapes):
        tokens, images = input_shapes
        return (tokens[0], _ceil_div(images[1], self.stride), _ceil_div(images[2], self.stride), tokens[-1])

    def get_config(self):
        config = super().get_config()
        config.update(num_prefix_tokens=self.num_prefix_tokens, patch_size=self.patch_size, stride=self.stride)
        return config


def vision_transformer(
    hidden_dim: int,
    num_layers: int,
    num_heads: int,
    patch_size: int = 16,
    mlp_ratio: float = 4.0,
    position_grid: Sequence[int] = (14, 14),
    strides: Sequence[int] = (4, 8, 16, 32),
    feature_blocks: Sequence[int] | None = None,
    layer_norm_epsilon: float = 1e-6,
    input_channels: int = 3,
    name: str = "vit",
) -> keras.Model:
    """A ViT returning one map per stride from intermediate blocks, finest first.

    Args:
        hidden_dim: token width D (also the channels of every map).
        num_layers: transformer blocks.
        num_heads: attention heads (`hidden_dim` must be a multiple).
        patch_size: side of the square patches.
        mlp_ratio: MLP hidden width over `hidden_dim`.
        position_grid: (h, w) of the learned position embeddings (14 x 14 is
            a 224-pixel image at patch 16); resized to every input's grid.
        strides: output strides, increasing.
        feature_blocks: the block (0-based) read for each stride; default
            evenly spaced and ending at the last block (`evenly_spaced_blocks`).
            Blocks after the last one read are not built.
        layer_norm_epsilon: epsilon of the layer norms.
        input_channels: channels of the input image.
        name: model name.

    Input shape: (B, H, W, input_channels), any H, W.
    Output: list of maps (B, ceil(H / s), ceil(W / s), hidden_dim) for s in `strides`.

    Raises:
        ValueError: an argument out of range, in the Keras form.

    Example:
    >>> vit = vision_transformer(hidden_dim=16, num_layers=4, num_heads=2, patch_size=8)
    >>> [tuple(s) for s in vit.compute_output_shape((1, 32, 48, 3))]
    [(1, 8, 12, 16), (1, 4, 6, 16), (1, 2, 3, 16), (1, 1, 2, 16)]
    """
    strides = tuple(int(s) for s in strides)
    if not strides or min(strides) < 1 or list(strides) != sorted(set(strides)):
        raise ValueError(f"`strides` must be increasing positive integers. Received: strides={strides}")
    for arg, value in (("hidden_dim", hidden_dim), ("num_layers", num_layers), ("num_heads", num_heads), ("patch_size", patch_size)):
        if int(value) < 1:
            raise ValueError(f"`{arg}` must be >= 1. Received: {arg}={value}")
    if int(hidden_dim) % int(num_heads):
        raise ValueError(f"`hidden_dim` must be a multiple of `num_heads` ({num_heads}). Received: hidden_dim={hidden_dim}")
    if float(mlp_ratio) <= 0:
        raise ValueError(f"`mlp_ratio` must be > 0. Received: mlp_ratio={mlp_ratio}")
    blocks = evenly_spaced_blocks(int(num_layers), len(strides)) if feature_blocks is None else [int(b) for b in feature_blocks]
    if len(blocks) != len(strides) or min(blocks) < 0 or max(blocks) >= int(num_layers):
        raise ValueError(
            f"`feature_blocks` must give one block in [0, {int(num_layers) - 1}] per stride {strides}. "
            f"Received: feature_blocks={feature_blocks}"
        )
    images = keras.Input((None, None, int(input_channels)), name="images")
    tokens = PatchEmbedding(hidden_dim, patch_size, position_grid, name="patch_embedding")(images)
    outputs = {}
    mlp_dim = int(round(int(hidden_dim) * float(mlp_ratio)))
    for i in range(max(blocks) + 1):
        tokens = TransformerBlock(hidden_dim, num_heads, mlp_dim, layer_norm_epsilon, name=f"block{i + 1}")(tokens)
        outputs[i] = tokens
    maps = [
        PatchTokensToMap(1, patch_size, stride, name=f"block{block + 1}_to_stride{stride}")([outputs[block], images])
        for block, stride in zip(blocks, strides)
    ]
    return keras.Model(images, maps, name=name)


@register_backbone("vit_tiny")
def vit_tiny(name: str = "vit_tiny", **options) -> keras.Model:
    """ViT-Ti/16 (D 192, 12 blocks, 3 heads, 5.5 M parameters) as a pyramid; `options` override any
    argument of `vision_transformer`.

    Example:
    >>> vit = vit_tiny(hidden_dim=16, num_layers=2, num_heads=2)
    >>> [tuple(s) for s in vit.compute_output_shape((1, 32, 48, 3))]
    [(1, 8, 12, 16), (1, 4, 6, 16), (1, 2, 3, 16), (1, 1, 2, 16)]
    """
    return vision_transformer(**{**VIT_VARIANTS["tiny"], **options}, name=name)


@register_backbone("vit_small")
def vit_small(name: str = "vit_small", **options) -> keras.Model:
    """ViT-S/16 (D 384, 12 blocks, 6 heads, 21.7 M parameters) as a pyramid; `options` override any
    argument of `vision_transformer`."""
    return vision_transformer(**{**VIT_VARIANTS["small"], **options}, name=name)


__all__ = [
    "PatchEmbedding",
    "PatchTokensToMap",
    "TransformerBlock",
    "VIT_VARIANTS",
    "evenly_spaced_blocks",
    "vision_transformer",
    "vit_small",
    "vit_tiny",
]
