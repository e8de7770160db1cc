import pathlib

import keras
import numpy as np
import pytest

from harness import assert_round_trip, to_numpy
from keras_mtcl import backbones, tasks
from keras_mtcl.decoders.baseline import BaselineDecoder
from keras_mtcl.layers import ConvBNReLU
from keras_mtcl.model import MultiTaskModel, load_model
from keras_mtcl.trainer import MultiTaskTrainer

WIDTHS = (8, 8, 16, 16)
# .keras files written by keras_mtcl 0.1 (tiny_cnn, semseg + depth) with their inputs and predictions.
FIXTURES = pathlib.Path(__file__).parent / "fixtures"


def tiny_model(task_specs, **kwargs):
    return MultiTaskModel(backbones.get_backbone("tiny_cnn", widths=WIDTHS), task_specs, **kwargs)


def random_labels(task_specs, batch, height, width, seed=0):
    """Every pixel valid (`keras_mtcl.testing.labels.random_labels` with no invalid pixels)."""
    from keras_mtcl.testing.labels import random_labels as draw

    return draw(task_specs, batch, height, width, seed=seed, invalid_fraction=0.0)


@pytest.mark.parametrize("dataset", ["nyud", "pascal"])
def test_output_shapes_per_task_set(dataset):
    specs = tasks.task_set(dataset)
    model = tiny_model(specs)
    # 36 x 52 is not a multiple of the backbone's stride 32: outputs still match the input.
    outputs = model.predict(np.zeros((2, 36, 52, 3), "float32"), verbose=0)
    assert set(outputs) == {t.name for t in specs}
    for t in specs:
        assert outputs[t.name].shape == (2, 36, 52, t.channels)
        assert outputs[t.name].dtype == np.float32


def test_call_returns_predictions_only_and_task_features_are_public():
    specs = tasks.task_set("nyud", tasks=["semseg", "depth"], num_classes={"semseg": 5})
    model = tiny_model(specs, decoder_options={"head_channels": 12})
    x = np.zeros((1, 32, 48, 3), "float32")
    for training in (None, False, True):
        assert set(model(x, training=training)) == {"semseg", "depth"}
    features = model.task_features(x)
    # The head's hidden map at stride 4 (the finest backbone map).
    assert {name: tuple(f.shape) for name, f in features.items()} == {"semseg": (1, 8, 12, 12), "depth": (1, 8, 12, 12)}
    assert model.task_feature_shapes((1, 32, 48, 3)) == {"semseg": (1, 8, 12, 12), "depth": (1, 8, 12, 12)}
    outputs = model.training_outputs(x)
    assert set(outputs) == {"predictions", "features", "auxiliary"} and outputs["auxiliary"] == {}
    for name in ("semseg", "depth"):
        np.testing.assert_allclose(to_numpy(outputs["features"][name]), to_numpy(features[name]), rtol=1e-5, atol=1e-6)


def test_model_knows_its_pyramid():
    model = tiny_model([tasks.depth()])
    assert model.pyramid.strides == (4, 8, 16, 32)
    assert model.pyramid.channels == WIDTHS


def structured_batch(batch=2, size=32):
    """Images whose left half is bright; labels that follow the halves (learnable in a few steps)."""
    left = np.zeros((batch, size, size, 1), bool)
    left[:, :, : size // 2] = True
    x = np.where(left, 1.0, -1.0) + 0.1 * np.random.default_rng(1).normal(size=(batch, size, size, 3))
    edge = np.zeros_like(left)
    edge[:, :, size // 2 - 1 : size // 2 + 1] = True
    y = {
        "semseg": np.where(left, 1, 4).astype("int32"),
        "depth": np.where(left, 1.0, 3.0).astype("float32"),
        "normals": np.where(left, np.array([0.0, 0.0, 1.0]), np.array([1.0, 0.0, 0.0])).astype("float32"),
        "edge": edge.astype("int32"),
    }
    return x.astype("float32"), y


def test_fit_lowers_the_loss_on_a_fixed_batch():
    specs = tasks.task_set("nyud", num_classes={"semseg": 6})
    trainer = MultiTaskTrainer(tiny_model(specs))
    x, y = structured_batch()
    trainer.compile(optimizer=keras.optimizers.Adam(1e-2))
    history = trainer.fit(x, y, batch_size=2, epochs=15, verbose=0).history
    assert history["loss"][-1] < 0.5 * history["loss"][0]
    for name in ("semseg_loss", "depth_loss", "normals_loss", "edge_loss"):
        assert name in history and np.isfinite(history[name]).all()


def test_fit_from_tf_data_matches_the_total_of_weighted_task_losses():
    import tensorflow as tf

    specs = [tasks.depth(), tasks.edge(loss_weight=3.0)]
    trainer = MultiTaskTrainer(tiny_model(specs))
    x = np.random.default_rng(2).normal(size=(4, 32, 32, 3)).astype("float32")
    y = random_labels(specs, 4, 32, 32)
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(2)
    trainer.compile(optimizer="sgd")
    trainer.fit(dataset, epochs=1, verbose=0)
    result = trainer.evaluate(dataset, verbose=0, return_dict=True)
    assert result["loss"] == pytest.approx(result["depth_loss"] + 3.0 * result["edge_loss"], rel=1e-5)


def test_keras_file_round_trip_gives_identical_predictions(tmp_path):
    specs = tasks.task_set("pascal", tasks=["semseg", "saliency"])
    model = tiny_model(specs, decoder="padnet", decoder_options={"channels": 8})
    x = np.random.default_rng(3).normal(size=(2, 32, 32, 3)).astype("float32")
    y = random_labels(specs, 2, 32, 32)
    trainer = MultiTaskTrainer(model)
    trainer.compile(optimizer="adam")
    trainer.fit(x, y, epochs=1, verbose=0)  # moves batch-norm statistics away from their initial values
    path = tmp_path / "model.keras"
    model.save(path)
    restored = load_model(path)
    assert isinstance(restored, MultiTaskModel)
    assert restored.decoder_name == "padnet" and restored.decoder_options == {"channels": 8}
    expected, actual = to_numpy(model.predict(x, verbose=0)), to_numpy(restored.predict(x, verbose=0))
    for name in expected:
        np.testing.assert_array_equal(actual[name], expected[name])


def test_configs_cover_constructors_and_keep_non_defaults():
    specs = [tasks.depth(loss_weight=2.0)]
    assert_round_trip(ConvBNReLU(5, kernel_size=1, strides=2, activation=None), filters=5, strides=2, activation=None)
    assert_round_trip(BaselineDecoder(specs, head_channels=7, head_kernel_size=3), head_channels=7, head_kernel_size=3)
    backbone = backbones.get_backbone("tiny_cnn", widths=WIDTHS, input_channels=4)
    model = MultiTaskModel(backbone, specs, decoder_options={"head_channels": 6}, input_channels=4)
    restored = assert_round_trip(model, input_channels=4, decoder_options={"head_channels": 6})
    assert restored.task_specs[0].loss_weight == 2.0
    assert restored.count_params() == model.count_params()


def test_bad_arguments_and_labels_raise_clear_errors():
    specs = [tasks.depth(), tasks.semseg(num_classes=3)]
    trainer = MultiTaskTrainer(tiny_model(specs))
    with pytest.raises(ValueError, match="Received: loss='mse'"):
        trainer.compile(optimizer="sgd", loss="mse")
    trainer.compile(optimizer="sgd")
    x = np.zeros((1, 32, 32, 3), "float32")
    with pytest.raises(ValueError, match=r"missing for tasks \['semseg'\]"):
        trainer.fit(x, {"depth": np.ones((1, 32, 32, 1), "float32")}, verbose=0)
    with pytest.raises(ValueError, match="Received: decoder='segformer'"):
        tiny_model(specs, decoder="segformer")
    with pytest.raises(ValueError, match="must be a keras.Model"):
        MultiTaskModel("tiny_cnn", specs)
    with pytest.raises(ValueError, match="Received: name='resnet9000'"):
        backbones.get_backbone("resnet9000")


def test_mixed_bfloat16_trains_with_float32_outputs_and_losses():
    keras.config.set_dtype_policy("mixed_bfloat16")  # restored by the autouse fixture
    specs = tasks.task_set("nyud", num_classes={"semseg": 6})
    model = tiny_model(specs)
    x, y = structured_batch()
    assert keras.backend.standardize_dtype(model.task_features(x)["depth"].dtype) == "bfloat16"
    trainer = MultiTaskTrainer(model)
    trainer.compile(optimizer=keras.optimizers.Adam(1e-2))
    history = trainer.fit(x, y, batch_size=2, epochs=3, verbose=0).history
    assert np.isfinite(history["loss"]).all() and history["loss"][-1] < history["loss"][0]
    assert to_numpy(model.predict(x, verbose=0))["normals"].dtype == np.float32


@pytest.mark.parametrize("name", ["v01_baseline_regularized", "v01_padnet"])
def test_models_saved_by_version_0_1_load_with_their_predictions(name):
    """0.1 files held the regularizer and an optimizer: load_model keeps the network and its outputs."""
    model = load_model(FIXTURES / "legacy" / f"{name}.keras")
    reference = np.load(FIXTURES / "legacy" / f"{name}.npz")
    assert isinstance(model, MultiTaskModel) and not hasattr(model, "regularizer")
    outputs = to_numpy(model.predict(reference["x"], verbose=0))
    for task in ("semseg", "depth"):
        # Same weights, same float32 arithmetic; the backends differ in convolution order only.
        np.testing.assert_allclose(outputs[task], reference[task], rtol=1e-5, atol=1e-5)


def test_plain_keras_loading_of_a_version_0_1_file_says_what_to_do():
    from keras_mtcl.model import LegacyModelError

    # Keras re-raises errors of from_config as TypeError with the original message.
    with pytest.raises((LegacyModelError, TypeError), match="saved by keras_mtcl 0.1.*keras_mtcl.model.load_model"):
        keras.saving.load_model(FIXTURES / "legacy" / "v01_padnet.keras")
