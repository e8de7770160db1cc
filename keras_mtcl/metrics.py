"""Streaming dense-prediction metrics that score like the reference codebases.

Every metric is a `keras.metrics.Metric` written in `keras.ops`, so it runs
inside `model.evaluate` on the TensorFlow, JAX and PyTorch backends (jit
compiled: static shapes, no Python branching on tensor values). Each one
accumulates sums over every valid pixel of the whole split and divides once
in `result()`: pixel-wise over the split, never a mean of per-image values
(the protocol of the MTI-Net / ATRC / InvPT evaluation code).

`update_state(y_true, y_pred)` takes a label in the package's conventions
(`keras_mtcl.tasks`) and the model's raw prediction for the task at the
label's spatial size:

| metric          | kind    | y_true                    | y_pred              | result         |
|-----------------|---------|---------------------------|---------------------|----------------|
| `MeanIoU`       | classes | class ids 0..C-1          | (B, H, W, C) logits | %              |
| `PixelAccuracy` | classes | class ids 0..C-1          | (B, H, W, C) logits | %              |
| `DepthMetric`   | depth   | metres, 0 = no depth      | (B, H, W, 1) metres | m / ratio / %  |
| `NormalsMetric` | normals | (B, H, W, 3) unit vectors | (B, H, W, 3)        | degrees / %    |
| `SaliencyMaxF`  | binary  | {0, 1}                    | (B, H, W, 1) logits | %              |
| `BinaryMeanIoU` | binary  | {0, 1}                    | (B, H, W, 1) logits | %              |
| `EdgeLossProxy` | binary  | {0, 1}                    | (B, H, W, 1) logits | loss per pixel |

Labels are (B, H, W, 1) or (B, H, W) unless noted. Valid pixels are those of
the label kind's rule (`keras_mtcl.kinds`, `LabelKind.valid_mask`), the rule
of the losses and the regularizer too: the ignore value (255,
`IGNORE_INDEX`) and any other value outside the kind's valid set are
skipped. Results in % are x100.

`task_metrics(task)` builds a task's metrics through `METRIC_BUILDERS`, a
registry keyed by label kind: {kind: {metric name: builder}}.

Protocol, per metric:

- mIoU: a confusion matrix over valid pixels (prediction = argmax of the
  logits). IoU_c = TP_c / max(TP_c + FP_c + FN_c, eps), averaged over ALL
  classes: a class absent from both labels and predictions counts 0. Ignored
  pixels never count as false positives. `per_class_iou()` gives IoU_c.
- depth: predictions clamped at 1e-9 m (the reference clamp, ~0, that keeps
  the log finite). RMSE = sqrt(sum (gt - pred)^2 / N_valid) in metres;
  log-RMSE the same on natural logs; abs-rel = mean |gt - pred| / gt;
  delta1 = % of pixels with max(gt/pred, pred/gt) < 1.25.
- normals: both vectors normalised; angle = atan2(|p x g|, p . g) in degrees
  (equal to the reference arccos, without its loss of precision near 0); a
  zero prediction vector is 90 degrees from every label, as in the reference
  (x / (|x| + eps) is the zero vector there). Mean, RMSE, % strictly under
  11.25 / 22.5 / 30 degrees, all exact; the median comes from a histogram of
  `MEDIAN_BIN_DEGREES` = 0.01 degree bins over [0, 180] (the middle rank's bin
  centre, averaged over the two middle ranks when N is even): it is within
  0.005 degrees of the exact median.
- saliency maxF: probabilities p = sigmoid(logit); for each threshold t in
  0.05, 0.10, ..., 0.95 a pixel is positive when p >= t; TP, predicted and
  actual positives accumulate over the split; F_beta with beta^2 = 0.3;
  an undefined F (no predicted or no actual positives) counts 0; the result
  is the maximum over thresholds. `double_sigmoid=True` reproduces InvPT's
  code, which applies the sigmoid twice (a known quirk; off by default).
  `BinaryMeanIoU` is the two-class (background, foreground) mIoU at p >= 0.5.
- edge: the boundary benchmark (odsF) needs thinning and matching and is done
  in Python by `keras_mtcl.edge_eval`; the streaming `EdgeLossProxy` is the
  weighted binary cross-entropy that the reference code logs during
  training (positives w = 0.95, negatives 1 - w), per valid pixel. The
  reference meter applies it to sigmoid outputs (a second sigmoid);
  `double_sigmoid=True` reproduces that number.

Counts are int32 (exact up to 2^31 - 1 pixels per count: the whole PASCAL-
Context val split has ~1e9 pixels); sums of errors are float32.

`delta_m(results, baselines, tasks)` is the multi-task performance measure of
Maninis et al. (ASTMT, CVPR 2019), used by the same codebases; it reads each
task's main metric (`TaskSpec.main_metric`).
"""

from __future__ import annotations

import math
import types
from typing import Callable, Mapping, Sequence

import keras
from keras import ops

from keras_mtcl import kinds
from keras_mtcl.tasks import IGNORE_INDEX, TASK_BUILDERS, TaskSpec

# Saliency maxF: thresholds 0.05, 0.10, ..., 0.95 and beta^2 (precision weighted more).
SALIENCY_THRESHOLDS = tuple(round(0.05 * i, 2) for i in range(1, 20))
SALIENCY_BETA_SQUARED = 0.3
# Threshold of the binary mIoU.
BINARY_THRESHOLD = 0.5
# Edge proxy: weight of positive pixels in the weighted BCE (negatives 1 - w).
EDGE_POS_WEIGHT = 0.95
# Depth: the reference clamps predictions at this value (metres) before the logs.
DEPTH_MIN_PREDICTION = 1e-9
DEPTH_DELTA_THRESHOLD = 1.25
# Normals: "% of pixels within" thresholds (degrees) and the median's histogram resolution.
ANGLE_THRESHOLDS = (11.25, 22.5, 30.0)
MEDIAN_BIN_DEGREES = 0.01
_MEDIAN_BINS = int(round(180.0 / MEDIAN_BIN_DEGREES))
# Denominator floor of IoU = TP / max(TP + FP + FN, eps).
IOU_EPSILON = 1e-8

DEPTH_STATISTICS = ("rmse", "log_rmse", "abs_rel", "delta1")
NORMALS_STATISTICS = ("mean_angle", "median_angle", "rmse_angle") + tuple(
    f"within_{t:g}" for t in ANGLE_THRESHOLDS
)
# Metric names of `TaskSpec.metrics` that are computed outside the streaming
# metrics (boundary benchmark of `keras_mtcl.edge_eval`).
NON_STREAMING_METRICS = ("odsf", "oisf", "ap")

# Direction of every metric name: True when higher is better.
HIGHER_IS_BETTER = types.MappingProxyType(
    {
        "miou": True,
        "pixel_accuracy": True,
        "rmse": False,
        "log_rmse": False,
        "abs_rel": False,
        "delta1": True,
        "mean_angle": False,
        "median_angle": False,
        "rmse_angle": False,
        "within_11.25": True,
        "within_22.5": True,
        "within_30": True,
        "maxf": True,
        "odsf": True,
        "oisf": True,
        "ap": True,
        "weighted_bce": False,
    }
)
# Main metric of each standard task (`tasks.TASK_BUILDERS`), by task name.
# `delta_m` reads a task's own `main_metric`; this table only describes the standard tasks.
MAIN_METRICS = types.MappingProxyType({name: build().main_metric for name, build in TASK_BUILDERS.items()})


def _scalar_label(y_true):
    """(B, H, W) or (B, H, W, 1) -> (B, H, W) float32."""
    y_true = ops.cast(y_true, "float32")
    if len(y_true.shape) == 4:
        if y_true.shape[-1] != 1:
            raise ValueError(
                f"Expected a label with one channel, (B, H, W, 1) or (B, H, W). Received: y_true.shape={y_true.shape}"
            )
        y_true = y_true[..., 0]
    elif len(y_true.shape) != 3:
        raise ValueError(f"Expected a label of shape (B, H, W, 1) or (B, H, W). Received: y_true.shape={y_true.shape}")
    return y_true


def _valid(kind, labels, channels, ignore_value):
    """(B, H, W) bool: the kind's validity rule on (B, H, W) scalar or (B, H, W, c) float32 labels."""
    if len(labels.shape) == 3:
        labels = ops.expand_dims(labels, -1)
    return kind.valid_mask(labels, channels, ignore_value)


def _check_prediction(y_pred, label_shape, channels, metric):
    """Checks rank, channels and (static) spatial size of a (B, H, W, C) prediction."""
    if len(y_pred.shape) != 4:
        raise ValueError(f"{metric} expects y_pred of shape (B, H, W, C). Received: y_pred.shape={y_pred.shape}")
    if channels is not None and y_pred.shape[-1] is not None and y_pred.shape[-1] != channels:
        raise ValueError(
            f"{metric} expects y_pred with {channels} channel(s). Received: y_pred.shape={y_pred.shape}"
        )
    for axis, (a, b) in enumerate(zip(label_shape[1:3], y_pred.shape[1:3])):
        if isinstance(a, int) and isinstance(b, int) and a != b:
            raise ValueError(
                f"{metric} expects y_pred at the label's spatial size (resize predictions to the label first). "
                f"Received: y_true spatial size {tuple(label_shape[1:3])}, y_pred.shape={y_pred.shape}"
            )


def _count(values, segment_ids, num_segments):
    """Histogram: sums int32 `values` into `num_segments` bins (flattened; jit-safe)."""
    return ops.segment_sum(
        ops.reshape(ops.cast(values, "int32"), (-1,)),
        ops.reshape(ops.cast(segment_ids, "int32"), (-1,)),
        num_segments=num_segments,
    )


def _no_sample_weight(sample_weight, metric):
    if sample_weight is not None:
        raise ValueError(
            f"{metric} does not take sample weights; mark pixels to skip with the ignore value. "
            "Received: sample_weight is not None"
        )


def _probabilities(logits, double_sigmoid):
    probabilities = ops.sigmoid(ops.cast(logits, "float32"))
    return ops.sigmoid(probabilities) if double_sigmoid else probabilities


def _cross(a, b):
    """Cross product along the last axis of (..., 3) tensors."""
    a0, a1, a2 = a[..., 0], a[..., 1], a[..., 2]
    b0, b1, b2 = b[..., 0], b[..., 1], b[..., 2]
    return ops.stack([a1 * b2 - a2 * b1, a2 * b0 - a0 * b2, a0 * b1 - a1 * b0], axis=-1)


def _check_name_in(value, allowed, argument):
    if value not in allowed:
        raise ValueError(f"`{argument}` must be one of {allowed}. Received: {argument}={value!r}")


class _ConfusionMatrixMetric(keras.metrics.Metric):
    """Accumulates a (num_classes, num_classes) confusion matrix: rows labels, columns predictions."""

    # Whose validity rule the labels follow.
    label_kind = kinds.CLASSES

    def __init__(self, num_classes: int, ignore_index: int = IGNORE_INDEX, name=None, dtype=None):
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
            raise ValueError(f"`num_classes` must be an integer >= 2. Received: num_classes={num_classes!r}")
        super().__init__(name=name, dtype=dtype)
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.confusion_matrix = self.add_variable(
            shape=(num_classes, num_classes), initializer="zeros", dtype="int32", name="confusion_matrix"
        )

    def _predicted_classes(self, y_pred):
        """(B, H, W, C) logits -> (B, H, W) int32 class ids."""
        return ops.cast(ops.argmax(y_pred, axis=-1), "int32")

    def _expected_channels(self):
        return self.num_classes

    def update_state(self, y_true, y_pred, sample_weight=None):
        _no_sample_weight(sample_weight, type(self).__name__)
        labels = _scalar_label(y_true)
        _check_prediction(y_pred, y_true.shape, self._expected_channels(), type(self).__name__)
        predicted = self._predicted_classes(y_pred)
        # Invalid labels (255, ids outside 0..C-1) go to an extra, dropped bin.
        valid = _valid(self.label_kind, labels, self._expected_channels(), self.ignore_index)
        labels = ops.cast(ops.where(valid, labels, 0.0), "int32")
        cells = self.num_classes * self.num_classes
        ids = ops.where(valid, labels * self.num_classes + predicted, cells)
        counts = _count(ops.ones_like(ids), ids, cells + 1)[:cells]
        self.confusion_matrix.assign(
            self.confusion_matrix + ops.reshape(counts, (self.num_classes, self.num_classes))
        )

    def per_class_iou(self):
        """(C,) IoU of each class x100; a class absent from labels and predictions is 0."""
        matrix = ops.cast(self.confusion_matrix, "float32")
        true_positives = ops.diagonal(matrix)
        union = ops.sum(matrix, axis=0) + ops.sum(matrix, axis=1) - true_positives
        return 100.0 * true_positives / ops.maximum(union, IOU_EPSILON)

    def pixel_accuracy(self):
        """Correct valid pixels / valid pixels, x100 (0 before any valid pixel)."""
        matrix = ops.cast(self.confusion_matrix, "float32")
        return 100.0 * ops.sum(ops.diagonal(matrix)) / ops.maximum(ops.sum(matrix), 1.0)

    def reset_state(self):
        self.confusion_matrix.assign(ops.zeros(self.confusion_matrix.shape, "int32"))

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes, "ignore_index": self.ignore_index}


@keras.saving.register_keras_serializable(package="keras_mtcl")
class MeanIoU(_ConfusionMatrixMetric):
    """Mean intersection-over-union over all classes, x100, accumulated over the split.

    Args:
        num_classes: number of classes C.
        ignore_index: label of pixels to skip (any id outside 0..C-1 is skipped too).
        name: metric name, e.g. `"semseg_miou"`.
        dtype: dtype of the result.

    Input shape:
        y_true: (B, H, W, 1) or (B, H, W) class ids. y_pred: (B, H, W, C) logits.

    Example:
    >>> import numpy as np
    >>> m = MeanIoU(num_classes=2)
    >>> m.update_state(np.array([[[0, 1]]]), np.array([[[[1.0, 0.0], [1.0, 0.0]]]]))
    >>> round(float(m.result()), 2)  # class 0: 1/2, class 1: 0/1
    25.0
    """

    def result(self):
        return ops.mean(self.per_class_iou())


@keras.saving.register_keras_serializable(package="keras_mtcl")
class PixelAccuracy(_ConfusionMatrixMetric):
    """Share of valid pixels whose argmax class is the label, x100, over the split.

    Args and shapes as `MeanIoU`.
    """

    def result(self):
        return self.pixel_accuracy()


@keras.saving.register_keras_serializable(package="keras_mtcl")
class BinaryMeanIoU(_ConfusionMatrixMetric):
    """Two-class (background, foreground) mIoU of a binary map thresholded at `threshold`, x100.

    Args:
        threshold: a pixel is foreground when its probability is >= threshold.
        double_sigmoid: apply the sigmoid twice (InvPT's quirk).
        ignore_index: label of pixels to skip.
        name: metric name, e.g. `"saliency_miou"`.
        dtype: dtype of the result.

    Input shape:
        y_true: (B, H, W, 1) or (B, H, W) in {0, 1}. y_pred: (B, H, W, 1) logits.
    """

    label_kind = kinds.BINARY

    def __init__(
        self,
        threshold: float = BINARY_THRESHOLD,
        double_sigmoid: bool = False,
        ignore_index: int = IGNORE_INDEX,
        name=None,
        dtype=None,
    ):
        if not 0.0 < float(threshold) < 1.0:
            raise ValueError(f"`threshold` must be in (0, 1). Received: threshold={threshold!r}")
        super().__init__(num_classes=2, ignore_index=ignore_index, name=name, dtype=dtype)
        self.threshold = float(threshold)
        self.double_sigmoid = bool(double_sigmoid)

    def _expected_channels(self):
        return 1

    def _predicted_classes(self, y_pred):
        probabilities = _probabilities(y_pred[..., 0], self.double_sigmoid)
        return ops.cast(probabilities >= self.threshold, "int32")

    def result(self):
        return ops.mean(self.per_class_iou())

    def get_config(self):
        config = super().get_config()
        config.pop("num_classes")
        return {**config, "threshold": self.threshold, "double_sigmoid": self.double_sigmoid}


@keras.saving.register_keras_serializable(package="keras_mtcl")
class DepthMetric(keras.metrics.Metric):
    """Depth error over valid pixels (label > 0, finite, != ignore) of the split.

    Args:
        statistic: one of `DEPTH_STATISTICS`: `"rmse"` (metres), `"log_rmse"`
            (natural log), `"abs_rel"` (mean |gt - pred| / gt), `"delta1"`
            (% of pixels with max(gt/pred, pred/gt) < 1.25).
        ignore_value: label value that marks pixels to skip (besides 0 and non-finite values).
        name: metric name, e.g. `"depth_rmse"`.
        dtype: dtype of the result.

    Input shape:
        y_true: (B, H, W, 1) or (B, H, W) metres. y_pred: (B, H, W, 1) metres.
    """

    def __init__(self, statistic: str = "rmse", ignore_value: float = IGNORE_INDEX, name=None, dtype=None):
        _check_name_in(statistic, DEPTH_STATISTICS, "statistic")
        super().__init__(name=name, dtype=dtype)
        self.statistic = statistic
        self.ignore_value = ignore_value
        self.count = self.add_variable(shape=(), initializer="zeros", dtype="int32", name="count")
        self.delta_count = self.add_variable(shape=(), initializer="zeros", dtype="int32", name="delta_count")
        self.sum_squared = self.add_variable(shape=(), initializer="zeros", name="sum_squared")
        self.sum_log_squared = self.add_variable(shape=(), initializer="zeros", name="sum_log_squared")
        self.sum_abs_rel = self.add_variable(shape=(), initializer="zeros", name="sum_abs_rel")

    def update_state(self, y_true, y_pred, sample_weight=None):
        _no_sample_weight(sample_weight, "DepthMetric")
        labels = _scalar_label(y_true)
        _check_prediction(y_pred, y_true.shape, 1, "DepthMetric")
        prediction = ops.maximum(ops.cast(y_pred, "float32")[..., 0], DEPTH_MIN_PREDICTION)
        valid = _valid(kinds.DEPTH, labels, 1, self.ignore_value)
        safe_labels = ops.where(valid, labels, 1.0)
        mask = ops.cast(valid, "float32")
        log_error = ops.log(safe_labels) - ops.log(prediction)
        ratio = ops.maximum(safe_labels / prediction, prediction / safe_labels)
        self.count.assign(self.count + ops.sum(ops.cast(valid, "int32")))
        self.delta_count.assign(
            self.delta_count + ops.sum(ops.cast(ops.logical_and(valid, ratio < DEPTH_DELTA_THRESHOLD), "int32"))
        )
        self.sum_squared.assign(self.sum_squared + ops.sum(ops.square(safe_labels - prediction) * mask))
        self.sum_log_squared.assign(self.sum_log_squared + ops.sum(ops.square(log_error) * mask))
        self.sum_abs_rel.assign(self.sum_abs_rel + ops.sum(ops.abs(safe_labels - prediction) / safe_labels * mask))

    def result(self):
        count = ops.maximum(ops.cast(self.count, "float32"), 1.0)
        values = {
            "rmse": lambda: ops.sqrt(self.sum_squared / count),
            "log_rmse": lambda: ops.sqrt(self.sum_log_squared / count),
            "abs_rel": lambda: self.sum_abs_rel / count,
            "delta1": lambda: 100.0 * ops.cast(self.delta_count, "float32") / count,
        }
        # No valid pixel: NaN ("no valid pixels" in reports), never a perfect 0.
        value = ops.where(self.count > 0, values[self.statistic](), float("nan"))
        return ops.cast(value, self.dtype)

    def reset_state(self):
        for variable in self.variables:
            variable.assign(ops.zeros(variable.shape, variable.dtype))

    def get_config(self):
        return {**super().get_config(), "statistic": self.statistic, "ignore_value": self.ignore_value}


@keras.saving.register_keras_serializable(package="keras_mtcl")
class NormalsMetric(keras.metrics.Metric):
    """Angular error (degrees) between predicted and labelled normals over the split.

    Args:
        statistic: one of `NORMALS_STATISTICS`: `"mean_angle"`, `"median_angle"`
            (histogram of `MEDIAN_BIN_DEGREES` bins, within 0.005 degrees),
            `"rmse_angle"`, `"within_11.25"`, `"within_22.5"`, `"within_30"`
            (% of pixels strictly under the angle).
        ignore_value: label value that marks pixels to skip (besides the zero vector and
            non-finite values).
        name: metric name, e.g. `"normals_mean_angle"`.
        dtype: dtype of the result.

    Input shape:
        y_true: (B, H, W, 3) unit vectors. y_pred: (B, H, W, 3) vectors (normalised here).
    """

    def __init__(self, statistic: str = "mean_angle", ignore_value: float = IGNORE_INDEX, name=None, dtype=None):
        _check_name_in(statistic, NORMALS_STATISTICS, "statistic")
        super().__init__(name=name, dtype=dtype)
        self.statistic = statistic
        self.ignore_value = ignore_value
        self.count = self.add_variable(shape=(), initializer="zeros", dtype="int32", name="count")
        self.sum_angle = self.add_variable(shape=(), initializer="zeros", name="sum_angle")
        self.sum_squared_angle = self.add_variable(shape=(), initializer="zeros", name="sum_squared_angle")
        self.within = self.add_variable(
            shape=(len(ANGLE_THRESHOLDS),), initializer="zeros", dtype="int32", name="within"
        )
        # Only the median needs the histogram.
        self.histogram = (
            self.add_variable(shape=(_MEDIAN_BINS,), initializer="zeros", dtype="int32", name="histogram")
            if statistic == "median_angle"
            else None
        )

    def update_state(self, y_true, y_pred, sample_weight=None):
        _no_sample_weight(sample_weight, "NormalsMetric")
        if len(y_true.shape) != 4 or y_true.shape[-1] != 3:
            raise ValueError(f"NormalsMetric expects y_true of shape (B, H, W, 3). Received: y_true.shape={y_true.shape}")
        _check_prediction(y_pred, y_true.shape, 3, "NormalsMetric")
        labels = ops.cast(y_true, "float32")
        prediction = ops.cast(y_pred, "float32")
        valid = _valid(kinds.NORMALS, labels, 3, self.ignore_value)
        labels = ops.where(ops.expand_dims(valid, -1), labels, 0.0)
        label_norm = ops.sqrt(ops.sum(ops.square(labels), axis=-1, keepdims=True))
        prediction_norm = ops.sqrt(ops.sum(ops.square(prediction), axis=-1, keepdims=True))
        labels = labels / ops.maximum(label_norm, 1e-12)
        prediction = prediction / ops.maximum(prediction_norm, 1e-12)
        dot = ops.sum(labels * prediction, axis=-1)
        cross = ops.sqrt(ops.sum(ops.square(_cross(labels, prediction)), axis=-1))
        angle = ops.arctan2(cross, dot) * (180.0 / math.pi)
        angle = ops.where(prediction_norm[..., 0] > 0, angle, 90.0)
        angle = ops.where(valid, angle, 0.0)
        self.count.assign(self.count + ops.sum(ops.cast(valid, "int32")))
        self.sum_angle.assign(self.sum_angle + ops.sum(angle))
        self.sum_squared_angle.assign(self.sum_squared_angle + ops.sum(ops.square(angle)))
        within = [
            ops.sum(ops.cast(ops.logical_and(valid, angle < threshold), "int32")) for threshold in ANGLE_THRESHOLDS
        ]
        self.within.assign(self.within + ops.stack(within))
        if self.histogram is not None:
            bins = ops.minimum(ops.cast(ops.floor(angle / MEDIAN_BIN_DEGREES), "int32"), _MEDIAN_BINS - 1)
            bins = ops.where(valid, bins, _MEDIAN_BINS)
            counts = _count(ops.ones_like(bins), bins, _MEDIAN_BINS + 1)[:_MEDIAN_BINS]
            self.histogram.assign(self.histogram + counts)

    def _median(self):
        cumulative = ops.cumsum(self.histogram)
        count = self.count
        # 1-based ranks of the two middle values (equal when the count is odd).
        ranks = ops.stack([(count + 1) // 2, count // 2 + 1])
        bins = ops.sum(ops.cast(ops.expand_dims(cumulative, 0) < ops.expand_dims(ranks, 1), "int32"), axis=1)
        centres = (ops.cast(bins, "float32") + 0.5) * MEDIAN_BIN_DEGREES
        return ops.where(count > 0, ops.mean(centres), 0.0)

    def result(self):
        count = ops.maximum(ops.cast(self.count, "float32"), 1.0)
        if self.statistic == "mean_angle":
            value = self.sum_angle / count
        elif self.statistic == "rmse_angle":
            value = ops.sqrt(self.sum_squared_angle / count)
        elif self.statistic == "median_angle":
            value = self._median()
        else:
            index = NORMALS_STATISTICS.index(self.statistic) - 3
            value = 100.0 * ops.cast(self.within[index], "float32") / count
        # No valid pixel: NaN ("no valid pixels" in reports), never a perfect 0.
        value = ops.where(self.count > 0, value, float("nan"))
        return ops.cast(value, self.dtype)

    def reset_state(self):
        for variable in self.variables:
            variable.assign(ops.zeros(variable.shape, variable.dtype))

    def get_config(self):
        return {**super().get_config(), "statistic": self.statistic, "ignore_value": self.ignore_value}


@keras.saving.register_keras_serializable(package="keras_mtcl")
class SaliencyMaxF(keras.metrics.Metric):
    """Maximum F-measure over thresholds of precision and recall accumulated over the split, x100.

    Args:
        thresholds: probability thresholds (a pixel is positive when p >= t),
            increasing, in (0, 1).
        beta_squared: beta^2 of F_beta = (1 + b^2) P R / (b^2 P + R).
        double_sigmoid: apply the sigmoid twice, as InvPT's evaluation code does.
        ignore_value: label value of pixels to skip.
        name: metric name, e.g. `"saliency_maxf"`.
        dtype: dtype of the result.

    Input shape:
        y_true: (B, H, W, 1) or (B, H, W) in {0, 1}. y_pred: (B, H, W, 1) logits.
    """

    def __init__(
        self,
        thresholds: Sequence[float] = SALIENCY_THRESHOLDS,
        beta_squared: float = SALIENCY_BETA_SQUARED,
        double_sigmoid: bool = False,
        ignore_value: int = IGNORE_INDEX,
        name=None,
        dtype=None,
    ):
        thresholds = [float(t) for t in thresholds]
        if not thresholds or any(not 0.0 < t < 1.0 for t in thresholds) or sorted(set(thresholds)) != thresholds:
            raise ValueError(
                f"`thresholds` must be distinct increasing values in (0, 1). Received: thresholds={thresholds}"
            )
        if float(beta_squared) <= 0:
            raise ValueError(f"`beta_squared` must be > 0. Received: beta_squared={beta_squared!r}")
        super().__init__(name=name, dtype=dtype)
        self.thresholds = thresholds
        self.beta_squared = float(beta_squared)
        self.double_sigmoid = bool(double_sigmoid)
        self.ignore_value = ignore_value
        bins = len(thresholds) + 1
        # Histograms of valid pixels by "number of thresholds <= p", for all pixels and for positives.
        self.valid_histogram = self.add_variable(shape=(bins,), initializer="zeros", dtype="int32", name="valid")
        self.positive_histogram = self.add_variable(
            shape=(bins,), initializer="zeros", dtype="int32", name="positive"
        )

    def update_state(self, y_true, y_pred, sample_weight=None):
        _no_sample_weight(sample_weight, "SaliencyMaxF")
        labels = _scalar_label(y_true)
        _check_prediction(y_pred, y_true.shape, 1, "SaliencyMaxF")
        probabilities = _probabilities(y_pred[..., 0], self.double_sigmoid)
        valid = _valid(kinds.BINARY, labels, 1, self.ignore_value)
        positive = ops.logical_and(valid, labels > 0.5)
        bins = ops.digitize(probabilities, self.thresholds)
        bins = ops.cast(bins, "int32")
        size = len(self.thresholds) + 1
        self.valid_histogram.assign(self.valid_histogram + _count(valid, bins, size))
        self.positive_histogram.assign(self.positive_histogram + _count(positive, bins, size))

    def _counts(self):
        """Per threshold: (true positives, predicted positives, actual positives), float32."""
        # Pixels in bin k are >= thresholds[0..k-1]: predicted positives at t_i sum bins > i.
        def at_least(histogram):
            suffix = ops.flip(ops.cumsum(ops.flip(ops.cast(histogram, "float32"), 0)), 0)
            return suffix[1:]

        actual = ops.sum(ops.cast(self.positive_histogram, "float32"))
        return at_least(self.positive_histogram), at_least(self.valid_histogram), actual

    def f_scores(self):
        """(T,) F_beta at each threshold, x100 (0 where undefined)."""
        true_positives, predicted, actual = self._counts()
        precision = true_positives / ops.maximum(predicted, 1.0)
        recall = true_positives / ops.maximum(actual, 1.0)
        numerator = (1.0 + self.beta_squared) * precision * recall
        denominator = self.beta_squared * precision + recall
        return 100.0 * ops.where(denominator > 0, numerator / ops.maximum(denominator, 1e-12), 0.0)

    def result(self):
        return ops.cast(ops.max(self.f_scores()), self.dtype)

    def reset_state(self):
        for variable in self.variables:
            variable.assign(ops.zeros(variable.shape, variable.dtype))

    def get_config(self):
        return {
            **super().get_config(),
            "thresholds": list(self.thresholds),
            "beta_squared": self.beta_squared,
            "double_sigmoid": self.double_sigmoid,
            "ignore_value": self.ignore_value,
        }


@keras.saving.register_keras_serializable(package="keras_mtcl")
class EdgeLossProxy(keras.metrics.Metric):
    """Weighted binary cross-entropy per valid pixel over the split (the reference's logged edge score).

    Args:
        pos_weight: weight w of boundary pixels; background pixels weigh 1 - w.
        double_sigmoid: score sigmoid(logits) as if they were logits, as the
            reference meter does with its saved probabilities.
        ignore_value: label value of pixels to skip.
        name: metric name, e.g. `"edge_weighted_bce"`.
        dtype: dtype of the result.

    Input shape:
        y_true: (B, H, W, 1) or (B, H, W) in {0, 1}. y_pred: (B, H, W, 1) logits.
    """

    def __init__(
        self,
        pos_weight: float = EDGE_POS_WEIGHT,
        double_sigmoid: bool = False,
        ignore_value: int = IGNORE_INDEX,
        name=None,
        dtype=None,
    ):
        if not 0.0 <= float(pos_weight) <= 1.0:
            raise ValueError(f"`pos_weight` must be in [0, 1]. Received: pos_weight={pos_weight!r}")
        super().__init__(name=name, dtype=dtype)
        self.pos_weight = float(pos_weight)
        self.double_sigmoid = bool(double_sigmoid)
        self.ignore_value = ignore_value
        self.count = self.add_variable(shape=(), initializer="zeros", dtype="int32", name="count")
        self.total = self.add_variable(shape=(), initializer="zeros", name="total")

    def update_state(self, y_true, y_pred, sample_weight=None):
        _no_sample_weight(sample_weight, "EdgeLossProxy")
        labels = _scalar_label(y_true)
        _check_prediction(y_pred, y_true.shape, 1, "EdgeLossProxy")
        logits = ops.cast(y_pred, "float32")[..., 0]
        if self.double_sigmoid:
            logits = ops.sigmoid(logits)
        valid = _valid(kinds.BINARY, labels, 1, self.ignore_value)
        target = ops.cast(ops.logical_and(valid, labels > 0.5), "float32")
        mask = ops.cast(valid, "float32")
        # -log(sigmoid(x)) = softplus(-x); -log(1 - sigmoid(x)) = softplus(x).
        loss = self.pos_weight * target * ops.softplus(-logits) + (1.0 - self.pos_weight) * (
            1.0 - target
        ) * ops.softplus(logits)
        self.total.assign(self.total + ops.sum(loss * mask))
        self.count.assign(self.count + ops.sum(ops.cast(valid, "int32")))

    def result(self):
        return ops.cast(self.total / ops.maximum(ops.cast(self.count, "float32"), 1.0), self.dtype)

    def reset_state(self):
        for variable in self.variables:
            variable.assign(ops.zeros(variable.shape, variable.dtype))

    def get_config(self):
        return {
            **super().get_config(),
            "pos_weight": self.pos_weight,
            "double_sigmoid": self.double_sigmoid,
            "ignore_value": self.ignore_value,
        }


def _classes_metric(cls):
    def build(task: TaskSpec, name: str):
        return cls(task.channels, ignore_index=task.ignore_value, name=name)

    return build


def _statistic_metric(cls, statistic):
    def build(task: TaskSpec, name: str):
        return cls(statistic, ignore_value=task.ignore_value, name=name)

    return build


def _boundary_benchmark(task: TaskSpec, name: str):
    """No streaming metric: `keras_mtcl.evaluation` runs the boundary benchmark (`keras_mtcl.edge_eval`)."""
    return None


def _edge_loss(task: TaskSpec, name: str):
    pos_weight = task.loss_options.get("pos_weight", EDGE_POS_WEIGHT)
    return EdgeLossProxy(pos_weight=pos_weight, ignore_value=task.ignore_value, name=name)


# The metrics of each label kind: {kind: {metric name: builder}}. A builder
# `(task, name) -> Metric` builds the streaming metric called `name` for
# `task`, or returns None for a metric computed outside the streaming
# metrics (`NON_STREAMING_METRICS`, the boundary benchmark). Adding a kind
# means adding its entry (a test checks that every kind has one).
METRIC_BUILDERS: Mapping[kinds.LabelKind, Mapping[str, Callable]] = types.MappingProxyType(
    {
        kinds.CLASSES: {"miou": _classes_metric(MeanIoU), "pixel_accuracy": _classes_metric(PixelAccuracy)},
        kinds.BINARY: {
            "maxf": lambda task, name: SaliencyMaxF(ignore_value=task.ignore_value, name=name),
            "miou": lambda task, name: BinaryMeanIoU(ignore_index=task.ignore_value, name=name),
            "weighted_bce": _edge_loss,
            **{metric: _boundary_benchmark for metric in NON_STREAMING_METRICS},
        },
        kinds.DEPTH: {s: _statistic_metric(DepthMetric, s) for s in DEPTH_STATISTICS},
        kinds.NORMALS: {s: _statistic_metric(NormalsMetric, s) for s in NORMALS_STATISTICS},
    }
)


def task_metrics(task: TaskSpec, prefix: bool = True) -> list[keras.metrics.Metric]:
    """The streaming metrics of `task.metrics`, named `"<task>_<metric>"`.

    Built by the task's kind's entry of `METRIC_BUILDERS`: classes `miou`,
    `pixel_accuracy`; depth `DEPTH_STATISTICS`; normals `NORMALS_STATISTICS`;
    binary `maxf`, `miou`, `weighted_bce`, and the boundary benchmark names
    `NON_STREAMING_METRICS` (`odsf`, `oisf`, `ap`), which are left out here:
    `keras_mtcl.edge_eval` computes them.

    Args:
        task: the task; its `kind`, `metrics`, `channels`, `ignore_value` and
            `loss_options["pos_weight"]` (edge proxy) are used.
        prefix: name metrics `"<task>_<metric>"`; with False just `"<metric>"`,
            for `compile(metrics={task: [...]})` on a model with dict outputs,
            where Keras itself prefixes each name with the output's name.

    Raises:
        ValueError: a metric name that the task's kind does not know.

    Example:
    >>> from keras_mtcl import tasks
    >>> [m.name for m in task_metrics(tasks.depth())]
    ['depth_rmse', 'depth_log_rmse', 'depth_abs_rel', 'depth_delta1']
    """
    builders = METRIC_BUILDERS[task.label_kind]
    built = []
    for metric in task.metrics:
        if metric not in builders:
            raise ValueError(
                f"Unknown metric for task {task.name!r} of kind {task.kind!r}. Expected one of {list(builders)}. "
                f"Received: metric={metric!r}"
            )
        value = builders[metric](task, f"{task.name}_{metric}" if prefix else metric)
        if value is not None:
            built.append(value)
    return built


def _standard_tasks() -> list[TaskSpec]:
    return [build() for build in TASK_BUILDERS.values()]


def delta_m(
    results: Mapping[str, float],
    baselines: Mapping[str, float],
    tasks: Sequence[TaskSpec] | None = None,
    metrics: Mapping[str, str] | None = None,
) -> dict:
    """Multi-task performance: mean relative change over single-task baselines, in %.

    delta_m = (1/T) sum_i (-1)^{l_i} (M_i - B_i) / B_i x 100, with l_i = 1 when
    lower is better for task i's metric (`HIGHER_IS_BETTER`: depth RMSE,
    normals angle, ...). Positive means better than the baselines.

    Args:
        results: flat metric values of the multi-task model, keyed
            `"<task>_<metric>"` (e.g. `{"semseg_miou": 40.1, "depth_rmse": 0.6}`).
        baselines: the same keys for the single-task models.
        tasks: the `TaskSpec`s; each task's metric is its `main_metric`.
            Default: the six standard tasks (`tasks.TASK_BUILDERS`), unless
            `metrics` is given alone.
        metrics: optional {task name: metric} overriding the tasks' main
            metrics; given without `tasks`, exactly these tasks and metrics.
            Tasks whose `"<task>_<metric>"` key is in `results` take part.

    Returns:
        `{"delta_m": float, "per_task": {task: {"metric", "value", "baseline",
        "higher_is_better", "delta"}}}`, `delta` being the task's signed term in %.

    Raises:
        ValueError: no task found, a baseline missing or zero, or a metric of
            unknown direction.

    Example:
    >>> result = delta_m({"semseg_miou": 44.0, "depth_rmse": 0.45}, {"semseg_miou": 40.0, "depth_rmse": 0.5})
    >>> round(result["delta_m"], 6)  # semseg +10 %, depth RMSE 10 % lower: +10 %
    10.0
    >>> custom = [TaskSpec("segmentation", "classes", channels=5)]
    >>> delta_m({"segmentation_miou": 30.0}, {"segmentation_miou": 40.0}, tasks=custom)["delta_m"]
    -25.0
    """
    chosen = {}
    if tasks is not None or metrics is None:
        specs = _standard_tasks() if tasks is None else tasks
        chosen = {t.name: t.main_metric for t in specs if t.main_metric is not None}
    chosen.update(metrics or {})
    per_task = {}
    for task, metric in chosen.items():
        key = f"{task}_{metric}"
        if key not in results:
            continue
        if metric not in HIGHER_IS_BETTER:
            raise ValueError(
                f"The direction of metric {metric!r} is unknown. Expected one of {sorted(HIGHER_IS_BETTER)}. "
                f"Received: metrics[{task!r}]={metric!r}"
            )
        if key not in baselines:
            raise ValueError(
                f"No baseline for {key!r}: give the single-task model's value. Received: baselines keys={sorted(baselines)}"
            )
        value, baseline = float(results[key]), float(baselines[key])
        if baseline == 0 or not math.isfinite(baseline):
            raise ValueError(f"Baseline of {key!r} must be finite and non-zero. Received: baselines[{key!r}]={baseline}")
        higher = HIGHER_IS_BETTER[metric]
        sign = 1.0 if higher else -1.0
        per_task[task] = {
            "metric": metric,
            "value": value,
            "baseline": baseline,
            "higher_is_better": higher,
            "delta": sign * (value - baseline) / baseline * 100.0,
        }
    if not per_task:
        expected = [f"{t}_{m}" for t, m in chosen.items()]
        raise ValueError(f"No task metric to compare. Expected keys among {expected}. Received: results keys={sorted(results)}")
    overall = sum(entry["delta"] for entry in per_task.values()) / len(per_task)
    return {"delta_m": overall, "per_task": per_task}


__all__ = [
    "ANGLE_THRESHOLDS",
    "BINARY_THRESHOLD",
    "BinaryMeanIoU",
    "DEPTH_STATISTICS",
    "DepthMetric",
    "EDGE_POS_WEIGHT",
    "EdgeLossProxy",
    "HIGHER_IS_BETTER",
    "MAIN_METRICS",
    "METRIC_BUILDERS",
    "MEDIAN_BIN_DEGREES",
    "MeanIoU",
    "NON_STREAMING_METRICS",
    "NORMALS_STATISTICS",
    "NormalsMetric",
    "PixelAccuracy",
    "SALIENCY_BETA_SQUARED",
    "SALIENCY_THRESHOLDS",
    "SaliencyMaxF",
    "delta_m",
    "task_metrics",
]
