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


def take_pixels_torch(values, index):
    """Per-image gather values[b, index[b, n]] on PyTorch, read in the layout the map is stored in.

    Keras's PyTorch backend runs convolutions channels-first and returns
    channels-last views of their outputs. Flattening such a (B, h, w, C) view
    to (B h w, C) copies the whole map, and the gradient of the gather is
    then a dense channels-last map that PyTorch adds to the map's
    channels-first gradient with a strided pass: three passes over every
    feature map per step for a few hundred gathered vectors. Indexing a
    (B, C, h w) view of channels-first storage copies nothing, and the
    gather's gradient is created in the storage's own layout.

    Args:
        values: (B, h, w, C) or (B, P, C) torch tensor (or array).
        index: (B, N) int pixel indices into the flattened h * w map.

    Returns:
        (B, N, C), in the dtype of `values`.
    """
    import torch

    values = ops.convert_to_tensor(values)
    batch, channels = values.shape[0], values.shape[-1]
    rows = values.reshape(batch, -1, channels)  # a view for both layouts: h and w stay adjacent in memory
    index = ops.convert_to_tensor(index).to(device=rows.device, dtype=torch.long)
    images = torch.arange(batch, device=rows.device).unsqueeze(1)
    if rows.stride(-1) == 1:
        return rows[images, index]
    # Channels-first storage: index the (B, C, P) view; advanced indices around a slice put (B, N) first.
    return rows.transpose(1, 2)[images, :, index]
