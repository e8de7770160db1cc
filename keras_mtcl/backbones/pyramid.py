"""The backbone-to-decoder contract: a feature pyramid whose levels carry stride and channels as data.

A backbone is a Keras model mapping (B, H, W, C) images to a list of feature
maps, finest first: `[(B, H/s_0, W/s_0, c_0), (B, H/s_1, W/s_1, c_1), ...]`
with strides s_0 < s_1 < ... (usually 4, 8, 16, 32). `FeaturePyramid`
describes that list (timm's `feature_info`, keras-hub's `pyramid_outputs`
keys); `FeaturePyramid.of(backbone)` measures it, and decoders check the
pyramid they receive against it instead of trusting a docstring.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Sequence

import keras

# Input size at which strides are measured when a backbone takes any size (a multiple of 32 and 14).
PROBE_SIZE = 448


@dataclasses.dataclass(frozen=True)
class PyramidLevel:
    """One map of a feature pyramid.

    Attributes:
        key: level name, "P<log2 stride>" for maps (keras-hub's convention).
        stride: input pixels per feature pixel.
        channels: channels of the map.
        source: where the map comes from in its network (a layer name or a
            keras-hub `pyramid_outputs` key); informational.
        tokens: the source is a token sequence (B, N, D) laid out on a grid
            (vision transformers) rather than a map.
    """

    key: str
    stride: int
    channels: int
    source: str = ""
    tokens: bool = False

    @classmethod
    def at(cls, stride: int, channels: int, source: str = "", tokens: bool = False) -> "PyramidLevel":
        """The level of a map at `stride`, named "P<log2 stride>"."""
        return cls(f"P{int(round(math.log2(stride)))}", int(stride), int(channels), source, tokens)


@dataclasses.dataclass(frozen=True)
class FeaturePyramid:
    """The levels of a backbone's output list, finest first.

    Example:
    >>> from keras_mtcl import backbones
    >>> pyramid = FeaturePyramid.of(backbones.get_backbone("tiny_cnn", widths=(8, 8, 16, 16)))
    >>> pyramid.strides, pyramid.channels
    ((4, 8, 16, 32), (8, 8, 16, 16))
    """

    levels: tuple[PyramidLevel, ...]

    def __post_init__(self):
        levels = tuple(self.levels)
        object.__setattr__(self, "levels", levels)
        if not levels:
            raise ValueError("A feature pyramid needs at least one level. Received: levels=()")
        strides = [level.stride for level in levels]
        if any(s < 1 for s in strides) or any(b <= a for a, b in zip(strides, strides[1:])):
            raise ValueError(
                f"Pyramid levels must be ordered finest first, with strictly increasing strides >= 1. Received: strides={strides}"
            )
        if any(level.channels < 1 for level in levels):
            raise ValueError(f"Every pyramid level needs channels >= 1. Received: channels={[l.channels for l in levels]}")

    @property
    def strides(self) -> tuple[int, ...]:
        return tuple(level.stride for level in self.levels)

    @property
    def channels(self) -> tuple[int, ...]:
        return tuple(level.channels for level in self.levels)

    def __len__(self) -> int:
        return len(self.levels)

    def shapes(self, batch: int | None, height: int | None, width: int | None) -> list[tuple]:
        """The (B, h, w, c) shapes of the maps for (height, width) inputs (None stays None)."""

        def size(extent, stride):
            return None if extent is None else -(-int(extent) // stride)

        return [(batch, size(height, l.stride), size(width, l.stride), l.channels) for l in self.levels]

    @classmethod
    def from_shapes(cls, input_shape: Sequence, shapes: Sequence[Sequence]) -> "FeaturePyramid":
        """Measures a pyramid from an input shape (B, H, W, C) and the maps' shapes (B, h, w, c)."""
        height, width = input_shape[1], input_shape[2]
        if not isinstance(shapes, (list, tuple)) or not shapes or not all(isinstance(s, (list, tuple)) for s in shapes):
            raise ValueError(
                "A backbone must return a list of feature maps (B, h, w, c), finest first. "
                f"Received output shapes: {shapes}"
            )
        levels = []
        for i, shape in enumerate(shapes):
            if len(shape) != 4 or shape[-1] is None:
                raise ValueError(
                    f"Backbone output {i} must be a (B, h, w, c) map with known channels. Received: shape={tuple(shape)}"
                )
            stride = round(height / shape[1]) if shape[1] else 0
            if shape[2] and round(width / shape[2]) != stride:
                raise ValueError(
                    f"Backbone output {i} has different strides along height and width ({height}/{shape[1]} vs "
                    f"{width}/{shape[2]}). Received: shape={tuple(shape)} for input {tuple(input_shape)}"
                )
            levels.append(PyramidLevel.at(stride, shape[-1]))
        return cls(tuple(levels))

    @classmethod
    def of(cls, backbone: keras.Model, input_channels: int | None = None) -> "FeaturePyramid":
        """Measures `backbone`'s pyramid from its output shapes (at `PROBE_SIZE` when it takes any size)."""
        if not isinstance(backbone, keras.Model):
            raise ValueError(f"`backbone` must be a keras.Model. Received: backbone={backbone!r}")
        declared = getattr(backbone, "input_shape", None)
        height = width = PROBE_SIZE
        if isinstance(declared, tuple) and len(declared) == 4:
            height, width = declared[1] or PROBE_SIZE, declared[2] or PROBE_SIZE
            input_channels = input_channels or declared[3]
        input_shape = (1, height, width, input_channels or 3)
        shapes = backbone.compute_output_shape(input_shape)
        if isinstance(shapes, tuple) and shapes and not isinstance(shapes[0], (list, tuple)):
            shapes = [shapes]
        return cls.from_shapes(input_shape, [tuple(s) for s in shapes])


__all__ = ["FeaturePyramid", "PROBE_SIZE", "PyramidLevel"]
