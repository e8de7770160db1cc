"""Losses against values computed by hand (each case's arithmetic is in its comment)."""

import math

import keras
import numpy as np
import pytest
from keras import ops

from keras_mtcl import losses, tasks


def _value(x):
    return float(ops.convert_to_numpy(x))


def test_cross_entropy_ignores_255_and_averages_over_valid_pixels():
    # Pixels (label, logits): (0, [0, 0]) -> -log(1/2) = log 2;
    # (255, [50, -50]) ignored; (1, [log 3, 0]) -> -log(1/4) = log 4;
    # (1, [0, log 3]) -> -log(3/4) = log(4/3). Mean over 3 valid = log(32/3) / 3.
    labels = np.array([[[0, 255], [1, 1]]], "int32")[..., None]
    logits = np.array([[[[0, 0], [50, -50]], [[math.log(3), 0], [0, math.log(3)]]]], "float32")
    assert _value(losses.cross_entropy(labels, logits)) == pytest.approx(math.log(32 / 3) / 3, rel=1e-6)
    # Rank-3 labels give the same value.
    assert _value(losses.cross_entropy(labels[..., 0], logits)) == pytest.approx(math.log(32 / 3) / 3, rel=1e-6)


def test_depth_l1_uses_only_measured_pixels():
    # Valid: (gt 2, pred 1.5) -> 0.5 and (gt 4, pred 3) -> 1; gt 0 and gt 255 skipped. Mean = 0.75.
    labels = np.array([[[2.0, 0.0], [255.0, 4.0]]], "float32")[..., None]
    pred = np.array([[[1.5, 100.0], [7.0, 3.0]]], "float32")[..., None]
    assert _value(losses.depth_l1(labels, pred)) == pytest.approx(0.75)


def test_normals_l1_normalises_predictions_and_divides_by_valid_pixels():
    # (0,0,1) vs pred (0,0,2) -> normalised equal -> 0.
    # (0,0,1) vs pred (3,0,4) -> (0.6,0,0.8) -> |0.6| + 0 + |0.2| = 0.8.
    # zero label and 255 label skipped. Sum 0.8 over 2 valid pixels = 0.4.
    labels = np.array([[[[0, 0, 1], [0, 0, 1]], [[0, 0, 0], [255, 255, 255]]]], "float32")
    pred = np.array([[[[0, 0, 2], [3, 0, 4]], [[1, 1, 1], [1, 0, 0]]]], "float32")
    assert _value(losses.normals_l1(labels, pred)) == pytest.approx(0.4, rel=1e-6)


def test_weighted_bce_weights_edges_095_and_background_005():
    # labels 1 (logit 2), 0 (logit 0), 0 (logit 0), 255 ignored.
    # 0.95 * softplus(-2) + 0.05 * (softplus(0) + softplus(0)), over 3 valid pixels.
    labels = np.array([[[1, 0], [0, 255]]], "float32")[..., None]
    logits = np.array([[[2.0, 0.0], [0.0, 9.0]]], "float32")[..., None]
    expected = (0.95 * math.log1p(math.exp(-2.0)) + 0.05 * 2 * math.log(2.0)) / 3
    assert _value(losses.weighted_bce(labels, logits)) == pytest.approx(expected, rel=1e-6)


def test_balanced_bce_weights_by_fraction_of_negatives():
    # labels [1, 0, 0, 255], logits [0, log 3, 0, -]: w = 2/3 negatives.
    # 2/3 * softplus(0) + 1/3 * (softplus(log 3) + softplus(0)) = 2/3 log2 + 1/3 (log 4 + log 2) = 5/3 log 2;
    # divided by 3 valid pixels = 5/9 log 2.
    labels = np.array([[[1, 0], [0, 255]]], "float32")[..., None]
    logits = np.array([[[0.0, math.log(3)], [0.0, 5.0]]], "float32")[..., None]
    assert _value(losses.balanced_bce(labels, logits)) == pytest.approx(5 / 9 * math.log(2), rel=1e-6)


def test_out_of_range_labels_are_ignored_like_the_ignore_value():
    # Binary 2 and -1 are not labels (the binary kind's rule 0 <= y <= 1): only the 1 and the 0 count.
    labels = np.array([[[1, 0], [2, -1]]], "float32")[..., None]
    logits = np.array([[[2.0, 0.0], [-7.0, 3.0]]], "float32")[..., None]
    expected = (0.95 * math.log1p(math.exp(-2.0)) + 0.05 * math.log(2.0)) / 2
    assert _value(losses.weighted_bce(labels, logits)) == pytest.approx(expected, rel=1e-6)
    # A class task's own ignore value counts even inside 0..C-1.
    assert _value(losses.cross_entropy(np.array([[[0, 1]]]), np.array([[[[0.0, 0.0], [9.0, 0.0]]]]), ignore_value=1)) == (
        pytest.approx(math.log(2.0), rel=1e-6)
    )


def test_non_finite_labels_are_invalid_and_leave_the_loss_and_its_gradient_finite():
    # Depth NaN / inf and a NaN normal are skipped: only the depth 2 (prediction 1.5) counts.
    depth_labels = np.array([[[2.0, float("nan")], [float("inf"), 0.0]]], "float32")[..., None]
    prediction = np.array([[[1.5, 1.0], [1.0, 1.0]]], "float32")[..., None]
    assert _value(losses.depth_l1(depth_labels, prediction)) == pytest.approx(0.5)
    normals_labels = np.array([[[[0.0, 0.0, 1.0], [float("nan"), 0.0, 1.0]]]], "float32")
    assert _value(losses.normals_l1(normals_labels, np.array([[[[0.0, 0.0, 3.0], [1.0, 0.0, 0.0]]]], "float32"))) == 0.0
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        variable = tf.Variable(prediction)
        with tf.GradientTape() as tape:
            loss = losses.depth_l1(depth_labels, variable)
        gradient = tape.gradient(loss, variable).numpy()
        np.testing.assert_array_equal(gradient[..., 0], [[[-1.0, 0.0], [0.0, 0.0]]])


@pytest.mark.parametrize("task", tasks.task_set("pascal") + [tasks.depth()], ids=lambda t: t.name)
def test_every_loss_is_zero_and_finite_on_an_all_ignore_batch(task):
    shape = (2, 4, 5, task.label_channels)
    labels = np.full(shape, 255, "float32")
    prediction = np.random.default_rng(0).normal(size=(2, 4, 5, task.channels)).astype("float32")
    value = _value(losses.task_loss(task, labels, prediction))
    assert value == 0.0


def test_task_loss_applies_task_options():
    spec = tasks.edge(pos_weight=0.5)
    labels = np.array([[[1, 0]]], "float32")[..., None]
    logits = np.zeros((1, 1, 2, 1), "float32")
    # 0.5 * log 2 + 0.5 * log 2 over 2 pixels = 0.5 log 2.
    assert _value(losses.task_loss(spec, labels, logits)) == pytest.approx(0.5 * math.log(2), rel=1e-6)
    with pytest.raises(ValueError, match="Received: loss='dice'"):
        losses.task_loss(spec.replace(loss="dice"), labels, logits)


def test_normals_loss_has_a_finite_gradient_at_a_zero_prediction():
    # A zero predicted normal (a head whose ReLU inputs are all dead) once gave NaN gradients on JAX: sqrt's
    # derivative at 0 is infinite. The gradient is taken by fit itself (GradientRecorder), on every backend.
    from keras_mtcl.testing.harness import GradientRecorder

    class Prediction(keras.layers.Layer):
        def build(self, input_shape):
            self.value = self.add_weight(shape=(1, 1, 2, 3), initializer="zeros", name="value")

        def call(self, x):
            return self.value + 0.0 * x

    inputs = keras.Input((1, 2, 3), batch_size=1)
    layer = Prediction()
    model = keras.Model(inputs, layer(inputs))
    layer.value.assign(np.array([[[[0.0, 0.0, 0.0], [0.0, 0.0, 2.0]]]], "float32"))  # a zero and a unit-z vector
    model.compile(optimizer=GradientRecorder(), loss=lambda y, p: losses.normals_l1(y, p))
    labels = np.array([[[[0.0, 0.0, 1.0], [0.0, 0.0, 1.0]]]], "float32")
    model.fit(np.zeros((1, 1, 2, 3), "float32"), labels, verbose=0)
    gradient = model.optimizer.gradient_of(layer.value)
    assert np.isfinite(gradient).all() and np.abs(gradient[0, 0, 0]).sum() > 0
    # The unit-z prediction equals its label: d|p/|p| - n|/dp is 0 there along z (it is on the sphere).
    assert gradient[0, 0, 1, 2] == pytest.approx(0.0, abs=1e-6)
