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


def scale_loss_for_distribution(loss):
    """Divides the loss by the number of tf.distribute replicas (1 outside a strategy).

    Keras's TensorFlow trainer sums gradients over replicas and unscales the
    reported loss, expecting `compute_loss` to return the per-replica loss
    divided by the replica count, as its built-in compiled loss does; an
    overridden `compute_loss` must do the same. Other backends run one SPMD
    program and need nothing.
    """
    if keras.backend.backend() != "tensorflow":
        return loss
    import tensorflow as tf

    replicas = tf.distribute.get_strategy().num_replicas_in_sync
    return loss if replicas == 1 else loss * (1.0 / replicas)
