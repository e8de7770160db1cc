import keras
import numpy as np
import pytest

from harness import assert_round_trip, to_numpy
from keras_mtcl import backbones, tasks
from keras_mtcl.decoders.baseline import BaselineDecoder
from keras_mtcl.layers import ConvBNReLU
from keras_mtcl.model import MultiTaskModel

WIDTHS = (8, 8, 16, 16)


def tiny_model(task_specs, **kwargs):
    return MultiTaskModel(backbones.get_backbone("tiny_cnn", widths=WIDTHS), task_specs, **kwargs)


def random_labels(task_specs, batch, height, width, seed=0):
    rng = np.random.default_rng(seed)
    labels = {}
    for t in task_specs:
        shape = (batch, height, width, 1)
        if t.kind == "classes":
            labels[t.name] = rng.integers(0, t.channels, shape).astype("int32")
        elif t.kind == "binary":
            labels[t.name] = (rng.uniform(size=shape) < 0.2).astype("int32")
        elif t.kind == "depth":
            labels[t.name] = rng.uniform(0.5, 5.0, shape).astype("float32")
        else:
            v = rng.normal(size=(batch, height, width, 3))
            labels[t.name] = (v / np.linalg.norm(v, axis=-1, keepdims=True)).astype("float32")
    return labels


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


def test_task_features_are_returned_in_training_only():
    specs = tasks.task_set("nyud", tasks=["semseg", "depth"], num_classes={"semseg": 5})
    model = tiny_model(specs, decoder_options={"head_channels": 12})
    x = np.zeros((1, 32, 48, 3), "float32")
    inference = model(x)
    assert set(inference) == {"semseg", "depth"}
    training = model(x, training=True)
    assert set(training) == {"predictions", "features", "auxiliary"}
    assert training["auxiliary"] == {}
    # The head's hidden map at stride 4 (the finest backbone map).
    for name in ("semseg", "depth"):
        assert tuple(training["features"][name].shape) == (1, 8, 12, 12)
        assert tuple(training["predictions"][name].shape) == tuple(inference[name].shape)


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
    model = tiny_model(specs)
    x, y = structured_batch()
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    history = model.fit(x, y, batch_size=2, epochs=15, verbose=0).history
    assert history["loss"][-1] < 0.5 * history["loss"][0]
    for name in ("semseg_loss", "depth_loss", "normals_loss", "edge_loss"):
        assert name in history and np.isfinite(history[name]).all()


def test_fit_from_tf_data_matches_the_total_of_weighted_task_losses():
    import tensorflow as tf

    specs = [tasks.depth(), tasks.edge(loss_weight=3.0)]
    model = tiny_model(specs)
    x = np.random.default_rng(2).normal(size=(4, 32, 32, 3)).astype("float32")
    y = random_labels(specs, 4, 32, 32)
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(2)
    model.compile(optimizer="sgd")
    model.fit(dataset, epochs=1, verbose=0)
    result = model.evaluate(dataset, verbose=0, return_dict=True)
    assert result["loss"] == pytest.approx(result["depth_loss"] + 3.0 * result["edge_loss"], rel=1e-5)


def test_keras_file_round_trip_gives_identical_predictions(tmp_path):
    specs = tasks.task_set("pascal", tasks=["semseg", "saliency"])
    model = tiny_model(specs, decoder_options={"head_channels": 8, "head_kernel_size": 3})
    x = np.random.default_rng(3).normal(size=(2, 32, 32, 3)).astype("float32")
    y = random_labels(specs, 2, 32, 32)
    model.compile(optimizer="adam")
    model.fit(x, y, epochs=1, verbose=0)  # moves batch-norm statistics away from their initial values
    path = tmp_path / "model.keras"
    model.save(path)
    restored = keras.saving.load_model(path)
    assert isinstance(restored, MultiTaskModel)
    assert restored.decoder_options == {"head_channels": 8, "head_kernel_size": 3}
    expected, actual = to_numpy(model.predict(x, verbose=0)), to_numpy(restored.predict(x, verbose=0))
    for name in expected:
        np.testing.assert_array_equal(actual[name], expected[name])
    # The optimizer state came back too, so training resumes.
    restored.fit(x, y, epochs=1, verbose=0)


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
    model = tiny_model(specs)
    with pytest.raises(ValueError, match="Received: loss='mse'"):
        model.compile(optimizer="sgd", loss="mse")
    model.compile(optimizer="sgd")
    x = np.zeros((1, 32, 32, 3), "float32")
    with pytest.raises(ValueError, match=r"missing for tasks \['semseg'\]"):
        model.fit(x, {"depth": np.ones((1, 32, 32, 1), "float32")}, verbose=0)
    with pytest.raises(ValueError, match="Received: framework='segformer'"):
        tiny_model(specs, framework="segformer")
    with pytest.raises(ValueError, match="must be a keras.Model"):
        MultiTaskModel("tiny_cnn", specs)
    with pytest.raises(ValueError, match="Received: name='resnet9000'"):
        backbones.get_backbone("resnet9000")


def test_mixed_bfloat16_trains_with_float32_outputs_and_losses():
    keras.config.set_dtype_policy("mixed_bfloat16")  # restored by the autouse fixture
    specs = tasks.task_set("nyud", num_classes={"semseg": 6})
    model = tiny_model(specs)
    x, y = structured_batch()
    assert keras.backend.standardize_dtype(model(x, training=True)["features"]["depth"].dtype) == "bfloat16"
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    history = model.fit(x, y, batch_size=2, epochs=3, verbose=0).history
    assert np.isfinite(history["loss"]).all() and history["loss"][-1] < history["loss"][0]
    assert to_numpy(model.predict(x, verbose=0))["normals"].dtype == np.float32
