"""InvPT (Ye and Xu, ECCV 2022): an inverted pyramid of joint attention over every task's tokens."""

from __future__ import annotations

import types
from typing import Sequence

import keras
from keras import layers, ops

from keras_mtcl.decoders import register_decoder
from keras_mtcl.decoders.base import Decoder
from keras_mtcl.decoders.blocks import build_by_tracing
from keras_mtcl.layers import ConvBNReLU, resize_to

# InvPT's decoder widths (its public NYUD / PASCAL configs): embed_dim 512, plus 64 channels for the
# predictions, halved at each of the 3 stages; stochastic depth 0.15.
INVPT_OPTIONS = types.MappingProxyType({"channels": 512, "stage_channels": (576, 288, 144), "drop_path_rate": 0.15})


_ATTENTION_OPTIONS = ("num_tasks", "channels", "num_heads", "query_stride", "kv_pool", "fuse_message")
_DECODER_OPTIONS = ("channels", "stage_channels", "num_heads", "mlp_ratio", "query_stride", "kv_pool", "drop_path_rate")


def _options(layer, names) -> dict:
    """{name: getattr(layer, name)} for the constructor arguments `names`, each stored under its own name."""
    return {name: getattr(layer, name) for name in names}


def _batch_norm(name, dtype):
    return layers.BatchNormalization(momentum=0.9, epsilon=1e-5, name=name, dtype=dtype)


@keras.saving.register_keras_serializable(package="keras_mtcl")
class TaskTokenAttention(layers.Layer):
    """Self-attention over the tokens of every task at once, with strided queries and pooled keys and values.

    Each task's map gives queries through its own 3x3 depthwise convolution
    with stride `query_stride` and batch norm, and keys and values through
    average pooling by `kv_pool` (InvPT's "dw_bn" and "avg" projections);
    queries, keys and values then share linear projections, and every query
    attends to the keys of all tasks. The output, at the query grid, is
    projected and resized (bilinear) back to each map's size. With
    `fuse_message`, the previous stage's attention scores (the message) are
    resized to this stage's query grid and fused with this stage's scores
    by a learned mix of the 2 x heads score maps (InvPT's cross-scale
    attention message passing); keys are then resized to the previous
    stage's key grid (`key_size`), so the scores line up.

    Args:
        num_tasks: T, the number of maps.
        channels: C, the channels of every map.
        num_heads: attention heads (C must be a multiple).
        query_stride: stride of the query convolutions.
        kv_pool: pooling window and stride of keys and values.
        fuse_message: whether a previous stage's scores are fused.

    Input: list of T maps (B, h, w, C); optional `message` (B, T, qh', qw', heads, K)
        and `key_size` (kh, kw).
    Output: (list of T maps (B, h, w, C), scores (B, T, ceil(h / query_stride),
        ceil(w / query_stride), heads, K), key_size), with K = T * kh * kw.
    """

    def __init__(
        self,
        num_tasks: int,
        channels: int,
        num_heads: int = 2,
        query_stride: int = 2,
        kv_pool: int = 2,
        fuse_message: bool = False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.num_tasks, self.channels, self.num_heads = int(num_tasks), int(channels), int(num_heads)
        self.query_stride, self.kv_pool, self.fuse_message = int(query_stride), int(kv_pool), bool(fuse_message)
        if self.channels % self.num_heads:
            raise ValueError(f"`channels` must be a multiple of `num_heads` ({self.num_heads}). Received: channels={channels}")
        dtype = self.dtype_policy
        self.query_convs = [
            layers.DepthwiseConv2D(3, strides=self.query_stride, padding="same", use_bias=False, name=f"query_conv_{i}", dtype=dtype)
            for i in range(self.num_tasks)
        ]
        self.query_norms = [_batch_norm(f"query_norm_{i}", dtype) for i in range(self.num_tasks)]
        self.pool = layers.AveragePooling2D(self.kv_pool, strides=self.kv_pool, padding="same", name="pool", dtype=dtype)
        self.query, self.key, self.value, self.projection = (
            layers.Dense(self.channels, name=n, dtype=dtype) for n in ("query", "key", "value", "projection")
        )

    def build(self, input_shapes):
        shape = tuple(input_shapes[0])
        for conv, norm in zip(self.query_convs, self.query_norms):
            conv.build(shape)
            norm.build(conv.compute_output_shape(shape))
        for dense in (self.query, self.key, self.value, self.projection):
            dense.build((None, self.channels))
        if self.fuse_message:
            self.fuse_kernel = self.add_weight(
                shape=(2 * self.num_heads, self.num_heads), initializer="glorot_uniform", name="fuse_kernel"
            )
            self.fuse_bias = self.add_weight(shape=(self.num_heads,), initializer="zeros", name="fuse_bias")

    def call(self, maps, message=None, key_size=None, training=None):
        heads, head_dim = self.num_heads, self.channels // self.num_heads
        batch = ops.shape(maps[0])[0]
        queries = [norm(conv(x), training=training) for x, conv, norm in zip(maps, self.query_convs, self.query_norms)]
        grid = ops.shape(queries[0])[1:3]
        q = ops.reshape(self.query(ops.stack(queries, axis=1)), (batch, self.num_tasks, *grid, heads, head_dim))
        pooled = [self.pool(x) for x in maps]
        if key_size is None:
            key_size = tuple(ops.shape(pooled[0])[1:3])
        else:
            pooled = [resize_to(p, key_size) for p in pooled]
        tokens = ops.concatenate([ops.reshape(p, (batch, -1, self.channels)) for p in pooled], axis=1)
        k = ops.reshape(self.key(tokens), (batch, -1, heads, head_dim))
        v = ops.reshape(self.value(tokens), (batch, -1, heads, head_dim))
        scores = ops.einsum("btyxhd,bkhd->btyxhk", q, k) * (head_dim**-0.5)
        if self.fuse_message:
            previous = _resize_scores(message, grid)
            mixed = ops.einsum("btyxgk,gh->btyxhk", ops.concatenate([scores, previous], axis=4), self.fuse_kernel)
            scores = mixed + self.fuse_bias[:, None]
        # Softmax over keys on a 2-D view: TensorFlow's oneDNN softmax refuses inputs of more than 5 dimensions.
        weights = ops.reshape(ops.softmax(ops.reshape(scores, (-1, ops.shape(scores)[-1])), axis=-1), ops.shape(scores))
        attended = ops.einsum("btyxhk,bkhd->btyxhd", weights, v)
        attended = self.projection(ops.reshape(attended, (batch, self.num_tasks, *grid, self.channels)))
        outputs = [resize_to(attended[:, t], ops.shape(x)[1:3]) for t, x in enumerate(maps)]
        return outputs, scores, key_size

    def get_config(self):
        return {**super().get_config(), **_options(self, _ATTENTION_OPTIONS)}


def _resize_scores(scores, grid):
    """Scores (B, T, qh', qw', heads, K) resized (bilinear) along the query grid to `grid` (qh, qw)."""
    shape = ops.shape(scores)
    flat = ops.reshape(scores, (-1, shape[2], shape[3], shape[4] * shape[5]))
    return ops.reshape(resize_to(flat, grid), (shape[0], shape[1], *grid, shape[4], shape[5]))


@keras.saving.register_keras_serializable(package="keras_mtcl")
class InvPTBlock(layers.Layer):
    """InvPT's transformer block on every task's map: x + attention(LN(x)), then x + MLP(LN(x)).

    The layer norms and the GELU MLP are shared by the tasks (InvPT runs them
    on the tasks' tokens concatenated along the sequence); the attention is
    `TaskTokenAttention`. Stochastic depth (`drop_path_rate`) drops each
    residual branch per example in training.

    Args:
        num_tasks, channels, num_heads, query_stride, kv_pool, fuse_message:
            see `TaskTokenAttention`.
        mlp_ratio: MLP hidden width over `channels`.
        drop_path_rate: probability of dropping a residual branch.

    Input: list of T maps (B, h, w, C) [, message, key_size]. Output: (list of T maps
    (B, h, w, C), scores, key_size), as `TaskTokenAttention`.
    """

    def __init__(
        self,
        num_tasks: int,
        channels: int,
        num_heads: int = 2,
        query_stride: int = 2,
        kv_pool: int = 2,
        fuse_message: bool = False,
        mlp_ratio: float = 4.0,
        drop_path_rate: float = 0.0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.mlp_ratio, self.drop_path_rate = float(mlp_ratio), float(drop_path_rate)
        dtype = self.dtype_policy
        self.attention = TaskTokenAttention(
            num_tasks, channels, num_heads, query_stride, kv_pool, fuse_message, name="attention", dtype=dtype
        )
        for name in _ATTENTION_OPTIONS:
            setattr(self, name, getattr(self.attention, name))
        self.norm1 = layers.LayerNormalization(epsilon=1e-5, name="norm1", dtype=dtype)
        self.norm2 = layers.LayerNormalization(epsilon=1e-5, name="norm2", dtype=dtype)
        self.mlp_in = layers.Dense(int(round(channels * self.mlp_ratio)), activation="gelu", name="mlp_in", dtype=dtype)
        self.mlp_out = layers.Dense(int(channels), name="mlp_out", dtype=dtype)
        self.drop_path = layers.Dropout(self.drop_path_rate, noise_shape=(None, 1, 1, 1), name="drop_path", dtype=dtype)

    def build(self, input_shapes):
        shape = tuple(input_shapes[0])
        self.attention.build(input_shapes)
        for layer in (self.norm1, self.norm2, self.mlp_in):
            layer.build(shape)
        self.mlp_out.build(shape[:-1] + (self.mlp_in.units,))

    def call(self, maps, message=None, key_size=None, training=None):
        normed = [self.norm1(x) for x in maps]
        attended, scores, key_size = self.attention(normed, message=message, key_size=key_size, training=training)
        maps = [x + self.drop_path(a, training=training) for x, a in zip(maps, attended)]
        maps = [x + self.drop_path(self.mlp_out(self.mlp_in(self.norm2(x))), training=training) for x in maps]
        return maps, scores, key_size

    def get_config(self):
        return {**super().get_config(), **_options(self, _ATTENTION_OPTIONS + ("mlp_ratio", "drop_path_rate"))}


@register_decoder("invpt")
@keras.saving.register_keras_serializable(package="keras_mtcl")
class InvPTDecoder(Decoder):
    """InvPT: per-task initial predictions, then stages of joint attention over every task's tokens, coarse to fine.

    From the coarsest pyramid map (stride 32: InvPT resizes its ViT's last
    features to 1/32), per task two conv3x3-BN-ReLU to `channels` and a 1x1
    conv give the initial prediction (deeply supervised, `"auxiliary"` group
    `"initial"`); features and prediction are concatenated and mixed by a
    1x1 conv to `stage_channels[0]`. Stage i (one per entry of
    `stage_channels`, one pyramid map each from the coarsest) works at the
    size of map `L - 1 - i`: from stage 1 on, each task's map is upsampled
    (bilinear) to that size and refined by two dilated 3x3 conv-BN-ReLU to
    `stage_channels[i]`, and the pyramid map there, through a 3x3 conv
    shared by the tasks, is added (InvPT's up-embedding and backbone skip).
    An `InvPTBlock` then lets every task's tokens attend to all tasks'
    (queries strided by 2, keys and values average-pooled by
    `kv_pool * 2**i`, so every stage has the same keys and passes its
    attention scores on to the next). After each stage the tasks' maps are
    layer-normalised together (over their concatenated channels), brought
    to `stage_channels[0]` by a 1x1 conv per task (stages after the
    first), upsampled to the finest map and summed over the stages. Pyramid
    maps finer than the last stage (the stride-4 map with 3 stages), which
    InvPT's ViT does not have, are added to every task's sum through a 3x3
    conv. A conv3x3-BN-ReLU per task gives the task feature F_t, and a 1x1
    conv the prediction. With fewer pyramid maps than stages, the stages
    past the finest map are left out.

    Args:
        tasks: list of `TaskSpec` (or their configs).
        channels: channels of the initial task features (InvPT 512).
        stage_channels: token channels of each stage, coarse to fine; the
            first is also the channels of F_t (InvPT (576, 288, 144): 512 + 64
            for the predictions, halved per stage; `INVPT_OPTIONS`).
        num_heads: attention heads of every stage (InvPT 2).
        mlp_ratio: MLP hidden width over a stage's channels (InvPT 4).
        query_stride: stride of the query convolutions (InvPT 2).
        kv_pool: key and value pooling of the first stage, doubled at each
            later stage (InvPT 2, 4, 8).
        drop_path_rate: stochastic depth of the stages' residual branches
            (InvPT 0.15).

    Input: list of (B, H_i, W_i, C_i) maps, finest first (any number >= 1).
    Output: `"predictions"` and `"features"` ({task: (B, H_0, W_0, stage_channels[0])})
    at the finest map's size; `"auxiliary"`: {"initial": {task: prediction at the
    coarsest map's size}}.

    Example:
    >>> from keras_mtcl import backbones, tasks
    >>> from keras_mtcl.model import MultiTaskModel
    >>> model = MultiTaskModel(backbones.get_backbone("vit_tiny", hidden_dim=16, num_layers=4, num_heads=2),
    ...                        tasks.task_set("nyud", num_classes={"semseg": 5}), decoder="invpt")
    >>> {name: s for name, s in sorted(model.task_feature_shapes((1, 32, 48)).items())}
    {'depth': (1, 8, 12, 48), 'edge': (1, 8, 12, 48), 'normals': (1, 8, 12, 48), 'semseg': (1, 8, 12, 48)}

    Reference:
        Ye and Xu, "Inverted Pyramid Multi-task Transformer for Dense Scene
        Understanding", ECCV 2022.
    """

    def __init__(
        self,
        tasks,
        channels: int = 32,
        stage_channels: Sequence[int] = (48, 24, 12),
        num_heads: int = 2,
        mlp_ratio: float = 4.0,
        query_stride: int = 2,
        kv_pool: int = 2,
        drop_path_rate: float = 0.0,
        **kwargs,
    ):
        super().__init__(tasks, **kwargs)
        stage_channels = tuple(int(c) for c in stage_channels)
        if int(channels) < 1:
            raise ValueError(f"`channels` must be >= 1. Received: channels={channels}")
        if int(num_heads) < 1:
            raise ValueError(f"`num_heads` must be >= 1. Received: num_heads={num_heads}")
        if not stage_channels or any(c < 1 or c % int(num_heads) for c in stage_channels):
            raise ValueError(
                f"`stage_channels` must be one or more positive multiples of `num_heads` ({num_heads}). "
                f"Received: stage_channels={stage_channels}"
            )
        for arg, value in (("query_stride", query_stride), ("kv_pool", kv_pool)):
            if int(value) < 1:
                raise ValueError(f"`{arg}` must be >= 1. Received: {arg}={value}")
        if float(mlp_ratio) <= 0:
            raise ValueError(f"`mlp_ratio` must be > 0. Received: mlp_ratio={mlp_ratio}")
        if not 0.0 <= float(drop_path_rate) < 1.0:
            raise ValueError(f"`drop_path_rate` must be in [0, 1). Received: drop_path_rate={drop_path_rate}")
        self.channels = int(channels)
        self.stage_channels = stage_channels
        self.num_heads = int(num_heads)
        self.mlp_ratio = float(mlp_ratio)
        self.query_stride = int(query_stride)
        self.kv_pool = int(kv_pool)
        self.drop_path_rate = float(drop_path_rate)

    def _num_stages(self, num_levels: int) -> int:
        return min(len(self.stage_channels), num_levels)

    def build(self, feature_shapes):
        specs, dtype = self.task_specs, self.dtype_policy
        stages = self._num_stages(len(feature_shapes))
        coarsest = int(feature_shapes[-1][-1])
        self.preliminary = [
            keras.Sequential(
                [ConvBNReLU(coarsest, 3, name="conv1", dtype=dtype), ConvBNReLU(self.channels, 3, name="conv2", dtype=dtype)],
                name=f"{t.name}_preliminary",
            )
            for t in specs
        ]
        self.initial_heads = [layers.Conv2D(t.channels, 1, name=f"{t.name}_initial", dtype=dtype) for t in specs]
        self.mixers = [layers.Conv2D(self.stage_channels[0], 1, name=f"{t.name}_mix", dtype=dtype) for t in specs]
        self.up_embeddings, self.skips, self.blocks, self.stage_norms, self.reducers = [], [], [], [], []
        for i in range(stages):
            width = self.stage_channels[i]
            if i > 0:
                self.up_embeddings.append([_up_embedding(width, f"stage{i}_{t.name}_up", dtype) for t in specs])
                self.skips.append(layers.Conv2D(width, 3, padding="same", name=f"stage{i}_skip", dtype=dtype))
                self.reducers.append(
                    [layers.Conv2D(self.stage_channels[0], 1, name=f"stage{i}_{t.name}_reduce", dtype=dtype) for t in specs]
                )
            self.blocks.append(
                InvPTBlock(
                    len(specs),
                    width,
                    self.num_heads,
                    self.query_stride,
                    self.kv_pool * 2**i,
                    fuse_message=i > 0,
                    mlp_ratio=self.mlp_ratio,
                    drop_path_rate=self.drop_path_rate,
                    name=f"stage{i}_block",
                    dtype=dtype,
                )
            )
            self.stage_norms.append(layers.LayerNormalization(epsilon=1e-5, name=f"stage{i}_norm", dtype=dtype))
        self.fine_skips = [
            layers.Conv2D(self.stage_channels[0], 3, padding="same", name=f"level{j}_skip", dtype=dtype)
            for j in range(len(feature_shapes) - stages)
        ]
        self.finals = [ConvBNReLU(self.stage_channels[0], 3, name=f"{t.name}_final", dtype=dtype) for t in specs]
        self.predictors = [layers.Conv2D(t.channels, 1, name=f"{t.name}_out", dtype=dtype) for t in specs]
        # Weights do not depend on map sizes: trace on small ones (unknown sizes would be 83 on torch, where the
        # attention scores of a trace at that size take gigabytes).
        # The coarsest is 4 x 4, so that even one task has several keys to attend to.
        sizes = [4 * 2 ** (len(feature_shapes) - 1 - j) for j in range(len(feature_shapes))]
        small = [(1, h or size, w or size, c) for size, (_, h, w, c) in zip(sizes, feature_shapes)]
        build_by_tracing(self, small, auxiliary=True)

    def auxiliary_groups(self, feature_shapes) -> tuple[str, ...]:
        return ("initial",)

    def task_feature_shapes(self, feature_shapes) -> dict[str, tuple]:
        shape = tuple(feature_shapes[0][:-1]) + (self.stage_channels[0],)
        return {t.name: shape for t in self.task_specs}

    def decode(self, features, training=None, auxiliary=False):
        specs, levels = self.task_specs, len(features)
        coarsest = features[-1]
        preliminary = [block(coarsest, training=training) for block in self.preliminary]
        initial = [head(x) for head, x in zip(self.initial_heads, preliminary)]
        maps = [mix(ops.concatenate([x, y], axis=-1)) for mix, x, y in zip(self.mixers, preliminary, initial)]
        size = ops.shape(features[0])[1:3]
        totals = [0.0] * len(specs)
        scores = key_size = None
        for i, (block, norm) in enumerate(zip(self.blocks, self.stage_norms)):
            if i > 0:
                level = features[levels - 1 - i]
                skip = self.skips[i - 1](level)
                level_size = ops.shape(level)[1:3]
                maps = [up(resize_to(x, level_size), training=training) + skip for up, x in zip(self.up_embeddings[i - 1], maps)]
            maps, scores, key_size = block(maps, message=scores, key_size=key_size, training=training)
            normed = ops.split(norm(ops.concatenate(maps, axis=-1)), len(specs), axis=-1)
            for t, x in enumerate(normed):
                x = self.reducers[i - 1][t](x) if i > 0 else x
                totals[t] = totals[t] + resize_to(x, size)
        for j, skip in enumerate(self.fine_skips):
            fine = resize_to(skip(features[j]), size)
            totals = [total + fine for total in totals]
        predictions, task_features = {}, {}
        for task, final, predict, total in zip(specs, self.finals, self.predictors, totals):
            task_features[task.name] = final(total, training=training)
            predictions[task.name] = predict(task_features[task.name])
        auxiliary_outputs = {"initial": {t.name: y for t, y in zip(specs, initial)}} if auxiliary else {}
        return {"predictions": predictions, "features": task_features, "auxiliary": auxiliary_outputs}

    def get_config(self):
        return {**super().get_config(), **_options(self, _DECODER_OPTIONS)}


def _up_embedding(channels: int, name: str, dtype) -> keras.Sequential:
    """Two 3x3 convolutions with dilation 2, each with BN and ReLU (InvPT's UpEmbed, after its x2 upsampling)."""
    parts = []
    for k in (1, 2):
        parts += [
            layers.Conv2D(channels, 3, padding="same", dilation_rate=2, use_bias=False, name=f"conv{k}", dtype=dtype),
            _batch_norm(f"bn{k}", dtype),
            layers.ReLU(name=f"relu{k}", dtype=dtype),
        ]
    return keras.Sequential(parts, name=name)


__all__ = ["INVPT_OPTIONS", "InvPTBlock", "InvPTDecoder", "TaskTokenAttention"]
