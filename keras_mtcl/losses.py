"""Masked dense-prediction losses, in `keras.ops` (every backend).

They follow the reference codebases (ATRC / MTI-Net lineage):

- `cross_entropy` (semseg, human_parts): softmax cross-entropy, mean over
  valid pixels.
- `depth_l1`: mean absolute error in metres over valid pixels.
- `normals_l1`: L1 between the L2-normalised prediction and the label, summed
  over the 3 channels and divided by the number of valid pixels.
- `weighted_bce` (edge): binary cross-entropy where positives weigh `w`
  (0.95) and negatives `1 - w`, i.e. `pos_weight = w / (1 - w)` times
  `(1 - w)`; mean over valid pixels.
- `balanced_bce` (saliency): the same with `w` = fraction of negatives among
  the valid pixels of the batch.

Valid pixels are those of the label kind's rule (`keras_mtcl.kinds`,
`LabelKind.valid_mask`), the rule the metrics, the regularizer and the
augmentation use too: classes 0 <= y < C, binary 0 <= y <= 1, depth y > 0
and finite, normals finite and not the zero vector; never the ignore value.

Every loss returns a float32 scalar and is 0 (finite) when no pixel is valid,
where PyTorch's reference implementations would give NaN. Out-of-range
labels are rejected by the data loaders; here they count as invalid, and
the prediction at an invalid pixel has no effect on the loss.

Shapes: labels (B, H, W, 1) or (B, H, W) (normals (B, H, W, 3)); predictions
(B, H, W, C) at the label's resolution.
"""

from __future__ import annotations

from typing import Callable

from keras import ops

from keras_mtcl import kinds
from keras_mtcl.tasks import IGNORE_INDEX, TaskSpec


def label_map(labels):
    """(B, H, W) or (B, H, W, c) labels -> (B, H, W, c) float32."""
    labels = ops.cast(labels, "float32")
    if len(labels.shape) == 3:
        labels = ops.expand_dims(labels, -1)
    return labels


def _labels_and_mask(kind, labels, channels: int, ignore_value):
    """((B, H, W, c) float32 labels, (B, H, W) bool validity by `kind`'s rule, as float32 too)."""
    labels = label_map(labels)
    valid = kind.valid_mask(labels, channels, ignore_value)
    return labels, valid, ops.cast(valid, "float32")


def _safe_mean(total, count):
    return total / ops.maximum(count, 1.0)


def cross_entropy(labels, logits, ignore_value: int = IGNORE_INDEX):
    """Softmax cross-entropy over pixels whose label is a class id.

    Args:
        labels: (B, H, W[, 1]) class ids; `ignore_value` and anything outside
            0..C-1 are ignored.
        logits: (B, H, W, C).
    """
    logits = ops.cast(logits, "float32")
    labels, valid, mask = _labels_and_mask(kinds.CLASSES, labels, logits.shape[-1], ignore_value)
    index = ops.cast(ops.where(valid, labels[..., 0], 0.0), "int32")
    log_probs = ops.log_softmax(logits, axis=-1)
    nll = -ops.take_along_axis(log_probs, ops.expand_dims(index, -1), axis=-1)[..., 0]
    return _safe_mean(ops.sum(ops.where(valid, nll, 0.0)), ops.sum(mask))


def depth_l1(labels, prediction, ignore_value: int = IGNORE_INDEX):
    """Mean |prediction - label| over pixels with a depth (label > 0, finite, != ignore).

    Args:
        labels: (B, H, W[, 1]) depth in metres, 0 = no measurement.
        prediction: (B, H, W, 1).
    """
    labels, valid, mask = _labels_and_mask(kinds.DEPTH, labels, 1, ignore_value)
    prediction = ops.cast(prediction, "float32")[..., 0]
    # Invalid labels (NaN included) are replaced before the difference: no NaN reaches the gradient.
    error = ops.where(valid, ops.abs(prediction - ops.where(valid, labels[..., 0], 0.0)), 0.0)
    return _safe_mean(ops.sum(error), ops.sum(mask))


def l2_normalize(vectors, axis: int = -1, epsilon: float = 1e-12):
    """x / max(||x||, epsilon) along `axis` (PyTorch's F.normalize), with a finite gradient at x = 0."""
    # x * rsqrt(max(||x||^2, epsilon^2)): the derivative of sqrt at 0 is infinite, and inf * 0 made the gradient
    # of a zero vector (a head whose ReLU inputs are all dead) NaN.
    return vectors * ops.rsqrt(ops.maximum(ops.sum(ops.square(vectors), axis=axis, keepdims=True), epsilon**2))


def normals_l1(labels, prediction, ignore_value: int = IGNORE_INDEX):
    """L1 between normalised prediction and label, summed over channels, per valid pixel.

    Args:
        labels: (B, H, W, 3) unit normals; zero vectors, non-finite values and
            `ignore_value` are invalid.
        prediction: (B, H, W, 3), normalised here.
    """
    labels, valid, mask = _labels_and_mask(kinds.NORMALS, labels, 3, ignore_value)
    prediction = l2_normalize(ops.cast(prediction, "float32"))
    safe_labels = ops.where(ops.expand_dims(valid, -1), labels, 0.0)
    error = ops.sum(ops.abs(prediction - safe_labels), axis=-1)
    error = ops.where(valid, error, 0.0)
    return _safe_mean(ops.sum(error), ops.sum(mask))


def _binary_terms(labels, logits, ignore_value):
    logits = ops.cast(logits, "float32")[..., 0]
    labels, valid, mask = _labels_and_mask(kinds.BINARY, labels, 1, ignore_value)
    target = ops.where(valid, ops.cast(labels[..., 0] > 0.5, "float32"), 0.0)
    # -log(sigmoid(x)) = softplus(-x); -log(1 - sigmoid(x)) = softplus(x).
    positive_nll = ops.where(valid, ops.softplus(-logits) * target, 0.0)
    negative_nll = ops.where(valid, ops.softplus(logits) * (1.0 - target), 0.0)
    return target, mask, positive_nll, negative_nll


def weighted_bce(labels, logits, pos_weight: float = 0.95, ignore_value: int = IGNORE_INDEX):
    """Binary cross-entropy with positives weighted `pos_weight`, negatives `1 - pos_weight`.

    Args:
        labels: (B, H, W[, 1]) in {0, 1}; `ignore_value` and anything else are ignored.
        logits: (B, H, W, 1).
        pos_weight: weight w of positive pixels (0.95 for edges).
    """
    _, valid, positive_nll, negative_nll = _binary_terms(labels, logits, ignore_value)
    total = pos_weight * ops.sum(positive_nll) + (1.0 - pos_weight) * ops.sum(negative_nll)
    return _safe_mean(total, ops.sum(valid))


def balanced_bce(labels, logits, ignore_value: int = IGNORE_INDEX):
    """Binary cross-entropy balanced by the batch's fraction of negative pixels.

    Positives weigh w = n_negative / n_valid, negatives 1 - w.

    Args:
        labels: (B, H, W[, 1]) in {0, 1}; `ignore_value` and anything else are ignored.
        logits: (B, H, W, 1).
    """
    target, valid, positive_nll, negative_nll = _binary_terms(labels, logits, ignore_value)
    count = ops.sum(valid)
    weight = _safe_mean(ops.sum((1.0 - target) * valid), count)
    weight = ops.stop_gradient(weight)
    total = weight * ops.sum(positive_nll) + (1.0 - weight) * ops.sum(negative_nll)
    return _safe_mean(total, count)


LOSSES: dict[str, Callable] = {
    "cross_entropy": cross_entropy,
    "depth_l1": depth_l1,
    "normals_l1": normals_l1,
    "weighted_bce": weighted_bce,
    "balanced_bce": balanced_bce,
}


def task_loss(task: TaskSpec, labels, prediction):
    """The loss of `task` (its `loss`, `loss_options` and `ignore_value`), unweighted."""
    if task.loss not in LOSSES:
        raise ValueError(
            f"Unknown loss for task {task.name!r}. Expected one of {sorted(LOSSES)}. Received: loss={task.loss!r}"
        )
    return LOSSES[task.loss](labels, prediction, ignore_value=task.ignore_value, **task.loss_options)


__all__ = [
    "LOSSES",
    "balanced_bce",
    "cross_entropy",
    "depth_l1",
    "l2_normalize",
    "label_map",
    "normals_l1",
    "task_loss",
    "weighted_bce",
]

