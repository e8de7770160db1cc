"""Backend-specific workarounds, kept in one place.

Each function says which Keras limitation it works around; remove it when
the limitation is gone.
"""

from __future__ import annotations

import keras
from keras import ops


def resize_images(x, size, interpolation: str = "bilinear"):
    """`keras.ops.image.resize` that also takes a dynamic `size` in TensorFlow graphs.

    Keras 3.15 validates `size[0] <= 0` in Python, which fails when the
    size is a symbolic tf.Tensor (exported serving functions take images of
    any size). In that one case the equivalent `tf.image.resize` is called
    directly (same half-pixel bilinear sampling, no antialiasing).
    """
    if all(isinstance(d, int) for d in size) or keras.backend.backend() != "tensorflow":
        return ops.image.resize(x, tuple(size), interpolation=interpolation, antialias=False)
    import tensorflow as tf

    return tf.image.resize(x, tf.stack(list(size)), method=interpolation, antialias=False)
