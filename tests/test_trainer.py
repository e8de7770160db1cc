"""MultiTaskTrainer: the regularizer and deep supervision outside the inference model (METHOD.md section 8 at model level)."""

import keras
import numpy as np
import pytest

from harness import assert_round_trip, to_numpy
from keras_mtcl import backbones, tasks
from keras_mtcl.contrastive import CrossTaskContrastive
from keras_mtcl.model import MultiTaskModel
from keras_mtcl.trainer import MultiTaskTrainer

SPECS = tasks.task_set("nyud", tasks=["semseg", "depth"], num_classes={"semseg": 3})
SMALL = dict(num_anchors=32, pool_size=64, projector_width=16, projection_dim=8)


def structured_batch(batch=2, size=32):
    """Left half bright and near, right half dark and far: labels both tasks agree on."""
    left = np.zeros((batch, size, size, 1), bool)
    left[:, :, : size // 2] = True
    x = np.where(left, 1.0, -1.0) + 0.3 * np.random.default_rng(1).normal(size=(batch, size, size, 3))
    y = {"semseg": np.where(left, 0, 2).astype("int32"), "depth": np.where(left, 1.0, 4.0).astype("float32")}
    return x.astype("float32"), y


def make(decoder="baseline", options=None):
    backbone = backbones.get_backbone("tiny_cnn", widths=(8, 8, 16, 16))
    options = {"head_channels": 8} if options is None else options
    return MultiTaskModel(backbone, SPECS, decoder=decoder, decoder_options=options)


def loss_of(trainer, x, y):
    return float(to_numpy(trainer.compute_loss(x, y, trainer(x, training=True), training=True)))


def test_lambda_zero_gives_the_baseline_loss_and_the_model_holds_no_projector():
    x, y = structured_batch()
    model = make()
    baseline = MultiTaskTrainer(model)
    regularized = MultiTaskTrainer(model, regularizer=CrossTaskContrastive(weight=0.0, seed=1, **SMALL))
    assert loss_of(regularized, x, y) == pytest.approx(loss_of(baseline, x, y), rel=1e-6)
    # Projectors belong to the trainer: the inference model is the baseline, weight for weight.
    assert regularized.count_params() == model.count_params() + regularized.regularizer.count_params()
    assert all("projector" not in v.path for v in model.weights)


def test_the_regularizer_adds_lambda_times_the_mean_triplet_loss():
    x, y = structured_batch()
    trainer = MultiTaskTrainer(make(), regularizer=CrossTaskContrastive(weight=0.5, seed=2, **SMALL))
    total = loss_of(trainer, x, y)
    task_part = sum(float(t.result()) * spec.loss_weight for t, spec in zip(trainer.task_loss_trackers, SPECS))
    per_task = [float(t.result()) for t in trainer.contrastive_trackers]
    assert max(per_task) > 0
    assert total == pytest.approx(task_part + 0.5 * np.mean(per_task), rel=1e-5)
    # Not in evaluation: the regularizer is a training term.
    for tracker in trainer.metrics:
        tracker.reset_state()
    evaluation = float(to_numpy(trainer.compute_loss(x, y, trainer(x), training=False)))
    task_part = sum(float(t.result()) * spec.loss_weight for t, spec in zip(trainer.task_loss_trackers, SPECS))
    assert evaluation == pytest.approx(task_part, rel=1e-5)
    assert [float(t.result()) for t in trainer.contrastive_trackers] == [0.0, 0.0]


def test_fit_with_the_regularizer_lowers_the_triplet_loss_and_evaluate_reports_no_training_terms():
    x, y = structured_batch()
    trainer = MultiTaskTrainer(make(), regularizer=CrossTaskContrastive(weight=1.0, seed=3, **SMALL))
    trainer.compile(optimizer=keras.optimizers.Adam(3e-3))
    history = trainer.fit(x, y, epochs=12, verbose=0).history
    triplet = np.add(history["contrastive_semseg"], history["contrastive_depth"])
    assert np.isfinite(triplet).all()
    assert triplet[-3:].mean() < 0.7 * triplet[:3].mean()
    result = trainer.evaluate(x, y, verbose=0, return_dict=True)
    assert not [name for name in result if name.startswith("contrastive")]
    assert {"semseg_loss", "depth_loss", "semseg_miou", "depth_rmse"} <= set(result)


@pytest.mark.parametrize("decoder, options, channels", [("padnet", {"channels": 8}, 8), ("mtinet", {}, 48)])
def test_distillation_decoders_give_the_regularizer_their_final_features(decoder, options, channels):
    """The projectors read the decoder's final task features.

    A training step of each decoder with the regularizer (finite losses, a gradient to every weight, deep
    supervision heads included, and to the drawn projectors) is the contract harness's, on every backend
    (tests/test_contracts.py::test_training_step_reaches_every_weight[tiny_cnn-padnet], [tiny_cnn-mtinet]).
    """
    regularizer = CrossTaskContrastive(seed=4, **SMALL)
    model = make(decoder, options)
    trainer = MultiTaskTrainer(model, regularizer=regularizer)
    # One projector per ordered pair, reading the decoder's final task features.
    for target, source in (("semseg", "depth"), ("depth", "semseg")):
        assert regularizer.get_projector(target, source).weights[0].shape[0] == channels
    assert trainer.count_params() == model.count_params() + sum(int(np.prod(w.shape)) for w in regularizer.weights)


def user_model():
    """A multi-task network that is not a MultiTaskModel: a small functional model, features named."""
    images = keras.Input((None, None, 3))
    x = keras.layers.Conv2D(8, 3, strides=2, padding="same", activation="relu")(images)
    semseg_features = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="semseg_features")(x)
    depth_features = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="depth_features")(x)
    semseg = keras.layers.UpSampling2D(2, interpolation="bilinear")(keras.layers.Conv2D(3, 1)(semseg_features))
    depth = keras.layers.UpSampling2D(2, interpolation="bilinear")(keras.layers.Conv2D(1, 1)(depth_features))
    return keras.Model(images, {"semseg": semseg, "depth": depth})


def test_a_users_functional_model_trains_with_the_regularizer():
    model = user_model()
    trainer = MultiTaskTrainer(
        model,
        tasks=SPECS,
        regularizer=CrossTaskContrastive(weight=1.0, seed=5, **SMALL),
        feature_layers={"semseg": "semseg_features", "depth": "depth_features"},
    )
    x, y = structured_batch()
    before = [np.array(w) for w in to_numpy(model.weights)]
    trainer.compile(optimizer=keras.optimizers.Adam(3e-3))
    history = trainer.fit(x, y, epochs=3, verbose=0).history
    assert np.isfinite(history["contrastive_semseg"]).all() and max(history["contrastive_depth"]) > 0
    # The user's own model was trained (weights shared with the trainer's view), and is still plain.
    after = to_numpy(model.weights)
    assert all(np.abs(a - b).max() > 0 for a, b in zip(after, before))
    assert set(model.predict(x, verbose=0)) == {"semseg", "depth"}


def test_trainer_errors_name_the_fix():
    with pytest.raises(ValueError, match="training_outputs.*feature_layers"):
        MultiTaskTrainer(user_model(), tasks=SPECS, regularizer=CrossTaskContrastive(**SMALL))
    with pytest.raises(ValueError, match=r"lacks tasks \['depth'\]"):
        MultiTaskTrainer(user_model(), tasks=SPECS, feature_layers={"semseg": "semseg_features"})
    with pytest.raises(ValueError, match="`tasks` is required"):
        MultiTaskTrainer(user_model())
    clashing = [tasks.TaskSpec("auxiliary", "depth"), tasks.depth()]
    model = MultiTaskModel(backbones.get_backbone("tiny_cnn", widths=(8, 8, 8, 8)), clashing, decoder="padnet",
                           decoder_options={"channels": 8})
    with pytest.raises(ValueError, match="auxiliary_loss"):
        MultiTaskTrainer(model)


def test_trainer_config_round_trip_keeps_the_regularizer_options():
    trainer = MultiTaskTrainer(make(), regularizer=CrossTaskContrastive(weight=0.3, seed=6, **SMALL))
    restored = assert_round_trip(trainer)
    assert restored.regularizer.get_config()["weight"] == 0.3
    assert restored.model.decoder_options == {"head_channels": 8}


def test_checkpointed_trainer_weights_resume_the_regularizer_and_optimizer(tmp_path):
    x, y = structured_batch()
    trainer = MultiTaskTrainer(make(), regularizer=CrossTaskContrastive(seed=7, **SMALL))
    trainer.compile(optimizer="adam")
    trainer.fit(x, y, epochs=1, verbose=0)
    path = tmp_path / "trainer.weights.h5"
    trainer.save_weights(path)
    resumed = MultiTaskTrainer(make(), regularizer=CrossTaskContrastive(seed=7, **SMALL))
    resumed.compile(optimizer="adam")
    resumed.optimizer.build(resumed.trainable_variables)
    resumed.load_weights(path)
    for a, b in zip(to_numpy(resumed.weights), to_numpy(trainer.weights)):
        np.testing.assert_array_equal(a, b)
    assert int(resumed.optimizer.iterations) == int(trainer.optimizer.iterations) == 1
