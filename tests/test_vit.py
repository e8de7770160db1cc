"""The ViT pyramid: the in-package ViT (keras_mtcl.backbones.vit) and keras-hub's ViT through the hub wrapper.

Pyramid declarations, predictions and gradients of `vit_tiny` are checked by the contract harness
(tests/test_contracts.py); here: which block each map reads, the position embeddings, keras-hub's ViT.
"""

import keras
import numpy as np
import pytest

from keras_mtcl import backbones
from keras_mtcl.backbones import hub, vit
from keras_mtcl.testing.harness import TINY_VIT, assert_raises, assert_round_trip, to_numpy

# A keras-hub ViT small enough for tests: a 64 x 64 input in 16-pixel patches (a 4 x 4 grid), 4 blocks.
HUB_VIT = {
    "class_name": "ViTBackbone",
    "config": {"image_shape": (64, 64, 3), "patch_size": 16, "num_layers": 4, "num_heads": 2, "hidden_dim": 16, "mlp_dim": 32},
}


def forward(model, x):
    """Outputs as numpy: one compiled program on JAX (op-by-op is slow there), eager elsewhere."""
    if keras.backend.backend() == "jax":
        return model.predict(x, verbose=0)
    return to_numpy(model(x, training=False))


def test_maps_read_evenly_spaced_blocks_at_ceil_sizes():
    model = backbones.get_backbone("vit_tiny", **TINY_VIT)
    x = np.random.default_rng(0).normal(size=(2, 36, 52, 3)).astype("float32")
    maps = forward(model, x)
    # 8-pixel patches: a ceil(36 / 8) x ceil(52 / 8) = 5 x 7 grid; maps at ceil(36 / s) x ceil(52 / s).
    assert [m.shape for m in maps] == [(2, 9, 13, 16), (2, 5, 7, 16), (2, 3, 4, 16), (2, 2, 2, 16)]
    # Stride 8 is the patch grid itself: block 2 of 4 (evenly spaced, ending at the last), class token dropped.
    tokens = forward(keras.Model(model.input, model.get_layer("block2").output), x)
    assert tokens.shape == (2, 1 + 5 * 7, 16)
    np.testing.assert_allclose(maps[1], tokens[:, 1:].reshape(2, 5, 7, 16), atol=1e-6)
    assert [layer.name for layer in model.layers if layer.name.startswith("block") and "_to_" not in layer.name] == [
        "block1", "block2", "block3", "block4"
    ]


def test_blocks_after_the_last_one_read_are_not_built():
    model = vit.vision_transformer(16, num_layers=6, num_heads=2, patch_size=8, strides=(8, 16), feature_blocks=(1, 3))
    assert [layer.name for layer in model.layers if layer.name.startswith("block") and "_to_" not in layer.name] == [
        "block1", "block2", "block3", "block4"
    ]


def test_position_embeddings_are_resized_to_the_patch_grid():
    layer = vit.PatchEmbedding(4, 4, position_grid=(2, 3))
    x = np.random.default_rng(0).normal(size=(1, 8, 12, 3)).astype("float32")
    tokens = to_numpy(layer(x))
    patches = to_numpy(layer.projection(x)).reshape(1, 6, 4)
    positions = to_numpy(layer.patch_positions).reshape(1, 6, 4)
    # On the embeddings' own 2 x 3 grid they are added as stored, after the class token and its position.
    np.testing.assert_allclose(tokens[:, 1:], patches + positions, atol=1e-6)
    np.testing.assert_allclose(tokens[:, 0], to_numpy(layer.class_token + layer.class_position)[:, 0], atol=1e-6)
    # A 4 x 6 grid gets them resized bilinearly: a constant embedding stays constant.
    layer.patch_positions.assign(np.ones((1, 2, 3, 4), "float32"))
    larger = np.random.default_rng(1).normal(size=(1, 16, 24, 3)).astype("float32")
    tokens = to_numpy(layer(larger))
    np.testing.assert_allclose(tokens[:, 1:], to_numpy(layer.projection(larger)).reshape(1, 24, 4) + 1.0, atol=1e-5)


def test_widths_and_parameter_count_of_the_registered_variants():
    model = backbones.get_backbone("vit_tiny")
    assert vit.VIT_VARIANTS["tiny"] == {"hidden_dim": 192, "num_layers": 12, "num_heads": 3}
    # Per block: attention 4 (D^2 + D), MLP 2 (4 D^2) + 4 D + D, two layer norms 4 D; D = 192.
    d = 192
    block = 4 * (d * d + d) + 8 * d * d + 5 * d + 4 * d
    embedding = 16 * 16 * 3 * d + d + 2 * d + 14 * 14 * d
    assert model.count_params() == 12 * block + embedding  # 5,524,032


def test_layer_configs_round_trip():
    assert_round_trip(vit.PatchEmbedding(8, 4, position_grid=(3, 5)), hidden_dim=8, patch_size=4, position_grid=(3, 5))
    assert_round_trip(vit.TransformerBlock(8, 2, 16, layer_norm_epsilon=1e-5), mlp_dim=16, layer_norm_epsilon=1e-5)
    assert_round_trip(vit.PatchTokensToMap(2, 14, 8), num_prefix_tokens=2, patch_size=14, stride=8)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"hidden_dim": 10, "num_heads": 3}, r"`hidden_dim` must be a multiple of `num_heads` \(3\). Received: hidden_dim=10"),
        ({"feature_blocks": (0, 1, 2, 4)}, r"`feature_blocks` must give one block in \[0, 3\].*Received: feature_blocks=\(0, 1, 2, 4\)"),
        ({"strides": (8, 4)}, r"`strides` must be increasing positive integers. Received: strides=\(8, 4\)"),
        ({"patch_size": 0}, r"`patch_size` must be >= 1. Received: patch_size=0"),
    ],
)
def test_bad_arguments_raise_in_the_keras_form(kwargs, message):
    with assert_raises(ValueError, message):
        vit.vision_transformer(**{**TINY_VIT, **kwargs})


# --- keras-hub's ViT ----------------------------------------------------------------------------------------------


def test_keras_hub_vit_blocks_become_maps_at_each_stride():
    backbone = hub.build_hub_backbone(config=HUB_VIT)
    levels = {lv.key: lv for lv in hub.hub_pyramid_levels(backbone)}
    assert sorted(levels) == ["stage1", "stage2", "stage3", "stage4", "stem"]
    assert levels["stage4"].stride == 16 and levels["stage4"].tokens
    encoder = hub.keras_hub_encoder(backbone=backbone)
    x = np.random.default_rng(0).normal(size=(2, 64, 64, 3)).astype("float32")
    maps = forward(encoder, x)
    assert [m.shape for m in maps] == [(2, 16, 16, 16), (2, 8, 8, 16), (2, 4, 4, 16), (2, 2, 2, 16)]
    # The blocks called one by one are keras-hub's own forward pass: its output is the final norm of block 4.
    stage4 = forward(keras.Model(backbone.input, backbone.pyramid_outputs["stage4"]), x)
    final_norm = backbone.get_layer("vit_encoder").layer_norm
    np.testing.assert_allclose(forward(backbone, x), to_numpy(final_norm(stage4)), atol=1e-5)
    # Stride 16 is the 4 x 4 patch grid of block 3 of 4, after the class token.
    stage3 = forward(keras.Model(backbone.input, backbone.pyramid_outputs["stage3"]), x)
    np.testing.assert_allclose(maps[2], stage3[:, 1:].reshape(2, 4, 4, 16), atol=1e-6)


def test_keras_hub_vit_presets_fail_fast_offline(monkeypatch):
    monkeypatch.setattr(hub, "_host_reachable", lambda host, timeout=3.0: False)
    with assert_raises(hub.HubOfflineError, r"downloaded from api.kaggle.com.*Received: preset='vit_base_patch16_224_imagenet'"):
        backbones.get_backbone("keras_hub", preset="vit_base_patch16_224_imagenet")
