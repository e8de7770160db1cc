"""PAD-Net and MTI-Net decoders: shapes, deep supervision, task mixing, saving, training.

Config round trips, predictions and gradients of every decoder are checked by the contract harness
(tests/test_contracts.py).
"""

import keras
import numpy as np
import pytest

from harness import to_numpy
from keras_mtcl import backbones, tasks
from keras_mtcl.decoders import list_decoders
from keras_mtcl.decoders.blocks import FeaturePropagation, MultiModalDistillation
from keras_mtcl.model import MultiTaskModel, load_model
from keras_mtcl.testing.harness import eager_unless_jax
from keras_mtcl.testing.labels import random_labels
from keras_mtcl.trainer import MultiTaskTrainer

WIDTHS = (8, 8, 16, 16)
OPTIONS = {"padnet": {"channels": 8}, "mtinet": {}}


def make_model(decoder, specs):
    backbone = backbones.get_backbone("tiny_cnn", widths=WIDTHS)
    return MultiTaskModel(backbone, specs, decoder=decoder, decoder_options=OPTIONS[decoder])


def test_decoders_are_registered():
    assert {"baseline", "padnet", "mtinet"} <= set(list_decoders())


@pytest.mark.parametrize("framework, dataset", [("padnet", "nyud"), ("mtinet", "pascal")])
def test_shapes_and_deep_supervision_in_training_only(framework, dataset):
    specs = tasks.task_set(dataset, num_classes={"semseg": 4, "human_parts": 3})
    model = make_model(framework, specs)
    x = np.random.default_rng(0).normal(size=(1, 32, 40, 3)).astype("float32")
    inference = model(x)
    assert sorted(inference) == sorted(t.name for t in specs)
    training = model.training_outputs(x)
    groups = training["auxiliary"]
    expected_groups = ["initial"] if framework == "padnet" else [f"scale_{i}" for i in range(4)]
    assert sorted(groups) == expected_groups == sorted(model.auxiliary_groups())
    for t in specs:
        assert tuple(inference[t.name].shape) == (1, 32, 40, t.channels)
        for group in groups.values():  # deep-supervision predictions are resized to the input for their losses
            assert tuple(group[t.name].shape) == (1, 32, 40, t.channels)
    feature_channels = 8 if framework == "padnet" else sum(WIDTHS)
    assert tuple(training["features"]["semseg"].shape) == (1, 8, 10, feature_channels)


def test_distillation_mixes_tasks():
    layer = MultiModalDistillation(["a", "b", "c"], channels=4)
    rng = np.random.default_rng(1)
    features = {name: rng.normal(size=(1, 5, 6, 4)).astype("float32") for name in "abc"}
    before = to_numpy(layer(features))
    changed = dict(features, a=features["a"] + 1.0)
    after = to_numpy(layer(changed))
    # b and c receive a's message; a's own output changes by exactly the +1 of its input (no self message).
    assert np.abs(after["b"] - before["b"]).max() > 1e-3 and np.abs(after["c"] - before["c"]).max() > 1e-3
    np.testing.assert_allclose(after["a"] - before["a"], 1.0, atol=1e-5)


def test_feature_propagation_shares_information_across_tasks():
    layer = FeaturePropagation(["a", "b"], channels=4)
    rng = np.random.default_rng(2)
    features = {name: rng.normal(size=(1, 4, 4, 4)).astype("float32") for name in "ab"}
    before = to_numpy(layer(features))
    after = to_numpy(layer(dict(features, a=features["a"] * 3.0)))
    assert np.abs(after["b"] - before["b"]).max() > 1e-4


@pytest.mark.parametrize("framework", ["padnet", "mtinet"])
def test_fit_trains_with_deep_supervision_and_save_load_keeps_predictions(framework, tmp_path):
    specs = tasks.task_set("nyud", tasks=["semseg", "depth"], num_classes={"semseg": 3})
    model = make_model(framework, specs)
    x = np.random.default_rng(3).normal(size=(2, 32, 32, 3)).astype("float32")
    y = random_labels(specs, 2, 32, 32, seed=3, invalid_fraction=0.0)
    trainer = MultiTaskTrainer(model)
    trainer.compile(optimizer=keras.optimizers.Adam(1e-3), run_eagerly=eager_unless_jax())
    history = trainer.fit(x, y, epochs=2, verbose=0).history
    assert np.all(np.isfinite(history["auxiliary_loss"])) and history["auxiliary_loss"][0] > 0
    # The total includes the deep-supervision terms.
    assert history["loss"][0] > history["semseg_loss"][0] + history["depth_loss"][0]
    result = trainer.evaluate(x, y, verbose=0, return_dict=True)
    # Evaluation runs the inference model: no deep supervision, so the loss is the task losses' total.
    assert "auxiliary_loss" not in result
    assert result["loss"] == pytest.approx(result["semseg_loss"] + result["depth_loss"], rel=1e-5)
    path = tmp_path / "model.keras"
    model.save(path)
    restored = load_model(path)
    np.testing.assert_array_equal(to_numpy(restored.predict(x, verbose=0))["depth"], to_numpy(model.predict(x, verbose=0))["depth"])


@pytest.mark.parametrize("framework", ["padnet", "mtinet"])
def test_inference_never_runs_the_deep_supervision_heads(framework):
    """Calls of the deep-supervision prediction convolutions are counted: none at inference, all in training."""
    specs = tasks.task_set("nyud", tasks=["semseg", "depth"], num_classes={"semseg": 3})
    model = make_model(framework, specs)
    heads = [p for layer in model.decoder._flatten_layers() if hasattr(layer, "predictors") and hasattr(layer, "refiners")
             for p in layer.predictors]
    assert heads
    calls = []
    for head in heads:
        original = head.call
        head.call = lambda *args, _original=original, **kwargs: calls.append(1) or _original(*args, **kwargs)
    x = np.zeros((1, 32, 32, 3), "float32")
    model(x)
    model.task_features(x)
    model.predict(x, verbose=0)
    assert calls == []
    model.training_outputs(x)
    assert len(calls) == len(heads)
