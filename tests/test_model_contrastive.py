"""The regularizer inside MultiTaskModel: METHOD.md section 8 invariants at model level."""

import keras
import numpy as np
import pytest

from harness import to_numpy
from keras_mtcl import backbones, export, tasks
from keras_mtcl.contrastive import CrossTaskContrastive
from keras_mtcl.model import MultiTaskModel

SPECS = tasks.task_set("nyud", tasks=["semseg", "depth"], num_classes={"semseg": 3})
SMALL = dict(num_anchors=32, pool_size=64, projector_width=16, projection_dim=8)


def structured_batch(batch=2, size=32):
    """Left half bright and near, right half dark and far: labels both tasks agree on."""
    left = np.zeros((batch, size, size, 1), bool)
    left[:, :, : size // 2] = True
    x = np.where(left, 1.0, -1.0) + 0.3 * np.random.default_rng(1).normal(size=(batch, size, size, 3))
    y = {"semseg": np.where(left, 0, 2).astype("int32"), "depth": np.where(left, 1.0, 4.0).astype("float32")}
    return x.astype("float32"), y


def make(contrastive=None, framework="baseline", options=None):
    backbone = backbones.get_backbone("tiny_cnn", widths=(8, 8, 16, 16))
    options = {"head_channels": 8} if options is None else options
    return MultiTaskModel(backbone, SPECS, framework=framework, decoder_options=options, contrastive=contrastive)


def test_lambda_zero_gives_the_baseline_loss_and_inference_is_the_baseline():
    x, y = structured_batch()
    baseline = make()
    regularized = make(CrossTaskContrastive(weight=0.0, seed=1, **SMALL))
    regularized.backbone.set_weights(baseline.backbone.get_weights())
    regularized.decoder.set_weights(baseline.decoder.get_weights())
    loss_baseline = baseline.compute_loss(x, y, baseline(x, training=True))
    loss_regularized = regularized.compute_loss(x, y, regularized(x, training=True))
    assert float(to_numpy(loss_regularized)) == pytest.approx(float(to_numpy(loss_baseline)), rel=1e-6)
    # Projectors exist only for training: the inference model is the baseline, weight for weight.
    assert regularized.count_params() > baseline.count_params()
    inference = export.inference_model(regularized)
    assert inference.contrastive is None
    assert inference.count_params() == baseline.count_params()
    for a, b in zip(inference.get_weights(), baseline.get_weights()):
        np.testing.assert_array_equal(a, b)
    expected, actual = to_numpy(baseline.predict(x, verbose=0)), to_numpy(regularized.predict(x, verbose=0))
    for name in expected:
        np.testing.assert_array_equal(actual[name], expected[name])


def test_the_regularizer_adds_lambda_times_the_mean_triplet_loss():
    x, y = structured_batch()
    model = make(CrossTaskContrastive(weight=0.5, seed=2, **SMALL))
    outputs = model(x, training=True)
    total = float(to_numpy(model.compute_loss(x, y, outputs)))
    task_part = sum(float(t.result()) * spec.loss_weight for t, spec in zip(model.task_loss_trackers, SPECS))
    per_task = [float(t.result()) for t in model.contrastive_trackers]
    assert max(per_task) > 0
    assert total == pytest.approx(task_part + 0.5 * np.mean(per_task), rel=1e-5)


def test_fit_with_the_regularizer_lowers_the_triplet_loss():
    x, y = structured_batch()
    model = make(CrossTaskContrastive(weight=1.0, seed=3, **SMALL))
    model.compile(optimizer=keras.optimizers.Adam(3e-3))
    history = model.fit(x, y, epochs=12, verbose=0).history
    triplet = np.add(history["contrastive_semseg"], history["contrastive_depth"])
    assert np.isfinite(triplet).all()
    assert triplet[-3:].mean() < 0.7 * triplet[:3].mean()


@pytest.mark.parametrize("framework, options, channels", [("padnet", {"channels": 8}, 8), ("mtinet", {}, 48)])
def test_distillation_frameworks_train_with_the_regularizer_on_their_final_features(framework, options, channels):
    regularizer = CrossTaskContrastive(seed=4, **SMALL)
    model = make(regularizer, framework=framework, options=options)
    # One projector per ordered pair, reading the framework's final task features.
    for target, source in (("semseg", "depth"), ("depth", "semseg")):
        assert regularizer.get_projector(target, source).weights[0].shape[0] == channels
    x, y = structured_batch()
    model.compile(optimizer="adam")
    history = model.fit(x, y, epochs=1, verbose=0).history
    for name in ("contrastive_semseg", "contrastive_depth", "auxiliary_loss", "loss"):
        assert np.isfinite(history[name]).all(), name
    assert export.inference_model(model).count_params() == model.count_params() - sum(
        int(np.prod(w.shape)) for w in regularizer.weights
    )
