"""keras-hub backbones as encoders, built from configs and local preset folders only (no network)."""

import sys

import keras
import numpy as np
import pytest

from keras_mtcl import backbones, tasks
from keras_mtcl.backbones import hub
from keras_mtcl.backbones.pyramid import PyramidLevel
from keras_mtcl.model import MultiTaskModel
from keras_mtcl.testing.labels import random_labels
from keras_mtcl.trainer import MultiTaskTrainer

# A small ResNet-vd (keras-hub requires 64 filters in the first stack); takes any input size.
RESNET = {
    "class_name": "ResNetBackbone",
    "config": {
        "input_conv_filters": [8],
        "input_conv_kernel_sizes": [3],
        "stackwise_num_filters": [64, 16, 16, 16],
        "stackwise_num_blocks": [1, 1, 1, 1],
        "stackwise_num_strides": [1, 2, 2, 2],
        "block_type": "basic_block_vd",
    },
}
# A small DINOv2: 56 x 56 input, 14-pixel patches (a 4 x 4 grid), one class and one register token.
DINOV2 = {
    "class_name": "DINOV2Backbone",
    "config": {
        "patch_size": 14,
        "num_layers": 4,
        "hidden_dim": 16,
        "num_heads": 2,
        "intermediate_dim": 32,
        "num_register_tokens": 1,
        "image_shape": (56, 56, 3),
        "position_embedding_shape": (56, 56, 3),
    },
}


def forward(model: keras.Model, x: np.ndarray):
    """Inference outputs as numpy: one compiled program on JAX (op-by-op is slow there), eager elsewhere."""
    if keras.backend.backend() == "jax":
        return model.predict(x, verbose=0)
    return keras.tree.map_structure(keras.ops.convert_to_numpy, model(x, training=False))


@pytest.fixture(scope="module")
def resnet():
    return hub.build_hub_backbone(config=RESNET)


def test_resnet_encoder_returns_maps_at_strides_4_to_32(resnet):
    levels = hub.hub_pyramid_levels(resnet)
    assert levels == [
        PyramidLevel("P2", 4, 64, source="P2"),
        PyramidLevel("P3", 8, 16, source="P3"),
        PyramidLevel("P4", 16, 16, source="P4"),
        PyramidLevel("P5", 32, 16, source="P5"),
    ]
    encoder = hub.keras_hub_encoder(backbone=resnet)
    outputs = forward(encoder, np.random.default_rng(0).normal(size=(2, 36, 52, 3)).astype("float32"))
    # Padded stride-2 convolutions and pooling: ceil(36 / s) x ceil(52 / s).
    assert [o.shape for o in outputs] == [(2, 9, 13, 64), (2, 5, 7, 16), (2, 3, 4, 16), (2, 2, 2, 16)]
    assert all(np.isfinite(o).all() for o in outputs)
    # The maps are the backbone's pyramid entries themselves.
    reference = forward(keras.Model(resnet.input, resnet.pyramid_outputs["P4"]), np.zeros((1, 64, 64, 3), "float32"))
    np.testing.assert_allclose(forward(encoder, np.zeros((1, 64, 64, 3), "float32"))[2], reference, atol=1e-6)


def test_registered_builder_selects_strides_from_a_config():
    encoder = backbones.get_backbone("keras_hub", config=RESNET, strides=(8, 32))
    assert [tuple(s) for s in encoder.compute_output_shape((1, 64, 96, 3))] == [(1, 8, 12, 16), (1, 2, 3, 16)]


def test_dinov2_tokens_become_maps_at_each_stride():
    backbone = hub.build_hub_backbone(config=DINOV2)
    levels = {lv.key: lv for lv in hub.hub_pyramid_levels(backbone)}
    # Token stages keep keras-hub's names: they all sit at the patch stride.
    assert levels["stage4"] == PyramidLevel("stage4", 14, 16, source="stage4", tokens=True)
    encoder = hub.keras_hub_encoder(backbone=backbone)
    x = np.random.default_rng(0).normal(size=(2, 56, 56, 3)).astype("float32")
    outputs = forward(encoder, x)
    # ceil(56 / s) for s = 4, 8, 16, 32.
    assert [o.shape for o in outputs] == [(2, 14, 14, 16), (2, 7, 7, 16), (2, 4, 4, 16), (2, 2, 2, 16)]
    # Stride 16 reads stage 3 of 4 on its own 4 x 4 grid (no resizing): the 16 patch tokens after the class and
    # register tokens, row by row.
    tokens = forward(keras.Model(backbone.input, backbone.pyramid_outputs["stage3"]), {"images": x})
    assert tokens.shape == (2, 2 + 16, 16)
    np.testing.assert_allclose(outputs[2], tokens[:, 2:].reshape(2, 4, 4, 16), atol=1e-6)


def test_local_preset_folder_loads_offline_with_its_weights(resnet, tmp_path):
    resnet.save_to_preset(str(tmp_path / "tiny_resnet"))
    encoder = hub.keras_hub_encoder(preset=tmp_path / "tiny_resnet")
    for got, want in zip(encoder.get_weights(), resnet.get_weights(), strict=True):
        np.testing.assert_array_equal(got, want)


def test_encoder_config_round_trip(resnet):
    encoder = hub.keras_hub_encoder(backbone=resnet, strides=(4, 16))
    restored = keras.Model.from_config(encoder.get_config())
    assert [tuple(s) for s in restored.compute_output_shape((1, 64, 64, 3))] == [(1, 16, 16, 64), (1, 4, 4, 16)]
    layer = hub.TokensToMap(2, (4, 4), (7, 7), name="t")
    config = layer.get_config()
    assert (config["num_prefix_tokens"], config["grid_size"], config["output_size"]) == (2, (4, 4), (7, 7))
    assert hub.TokensToMap.from_config(config).output_size == (7, 7)


def test_hub_encoder_plugs_into_the_multi_task_model_and_fits():
    specs = tasks.task_set("nyud", tasks=["semseg", "depth"], num_classes={"semseg": 3})
    model = MultiTaskModel(backbones.get_backbone("keras_hub", config=RESNET), specs)
    trainer = MultiTaskTrainer(model)
    trainer.compile(optimizer=keras.optimizers.SGD(0.01))
    x = np.random.default_rng(0).normal(size=(2, 32, 32, 3)).astype("float32")
    y = random_labels(specs, 2, 32, 32, invalid_fraction=0.0)
    history = trainer.fit(x, y, epochs=1, batch_size=2, verbose=0)
    assert np.isfinite(history.history["loss"][0])


# --- errors -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "preset, host", [("resnet_18_imagenet", "api.kaggle.com"), ("hf://someone/some_model", "huggingface.co")]
)
def test_preset_names_fail_fast_offline_naming_the_alternatives(monkeypatch, preset, host):
    monkeypatch.setattr(hub, "_host_reachable", lambda host: False)
    message = rf"{host}.*local preset folder.*`config=`.*Received: preset='{preset}'"
    with pytest.raises(hub.HubOfflineError, match=message):
        hub.keras_hub_encoder(preset=preset)


def test_unknown_preset_is_refused_before_any_download(monkeypatch):
    monkeypatch.setattr(hub, "_host_reachable", lambda host: pytest.fail("no probe for an unknown preset"))
    with pytest.raises(ValueError, match=r"`preset` must be a local preset folder.*Received: preset='no_such_model'"):
        hub.keras_hub_encoder(preset="no_such_model")


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({}, r"Pass exactly one of `preset`.*Received: preset=None, config=None"),
        ({"preset": "x", "config": RESNET}, r"Pass exactly one of `preset`"),
        ({"config": {"config": {}}}, r"`config` must be a mapping with a `class_name`"),
        ({"config": {"class_name": "Dense"}}, r"must name a backbone class of keras_hub.models.*class_name='Dense'"),
        ({"config": {"class_name": "ResNetBackbone", "config": [1]}}, r"`config\['config'\]` must be a mapping"),
        ({"config": RESNET, "strides": (8, 4)}, r"`strides` must be increasing.*Received: strides=\(8, 4\)"),
    ],
)
def test_bad_arguments_raise_in_the_keras_form(kwargs, message):
    with pytest.raises(ValueError, match=message):
        hub.keras_hub_encoder(**kwargs)


def test_strides_missing_from_the_pyramid_are_named(resnet):
    with pytest.raises(ValueError, match=r"maps at strides \[4, 8, 16, 32\].*not at \[2\]. Received: strides=\(2, 4\)"):
        hub.keras_hub_encoder(backbone=resnet, strides=(2, 4))
    with pytest.raises(ValueError, match=r"Pass `backbone` alone"):
        hub.keras_hub_encoder(backbone=resnet, config=RESNET)


def test_models_without_a_pyramid_are_refused():
    inputs = keras.Input((None, None, 3))
    plain = keras.Model(inputs, keras.layers.Conv2D(2, 1)(inputs), name="plain")
    with pytest.raises(ValueError, match=r"'plain' \(Functional\) has no `pyramid_outputs`"):
        hub.keras_hub_encoder(backbone=plain)


def test_missing_keras_hub_names_the_install_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "keras_hub", None)  # makes `import keras_hub` raise ImportError
    with pytest.raises(ImportError, match=r"keras-hub, not installed.*pip install \"keras_mtcl\[hub\]\""):
        hub.build_hub_backbone(config=RESNET)
