"""HRNet backbones: numerical parity with timm, architecture facts from timm, weight loading and its errors.

The parity fixture (tests/fixtures/hrnet, written by tools/make_hrnet_fixtures.py with timm 1.0.31) holds a
random-init timm `hrnet_w18_small_v2` state dict with random batch-norm statistics, a (2, 64, 96, 3)
input and timm's four feature maps computed in float64.
"""

import pathlib

import keras
import numpy as np
import pytest

from harness import to_numpy
from keras_mtcl import backbones, tasks
from keras_mtcl.backbones import hrnet
from keras_mtcl.backbones.weights import WeightsFormatError, WeightsNotFoundError
from keras_mtcl.model import MultiTaskModel

FIXTURES = pathlib.Path(__file__).parent / "fixtures" / "hrnet"
STATE_DICT = FIXTURES / "hrnet_w18_small_v2_state_dict.npz"
REFERENCE = FIXTURES / "hrnet_w18_small_v2_io.npz"

# sum(t.numel() for t in timm.create_model(name, features_only=True, feature_location="").state_dict().values()),
# without num_batches_tracked: weights plus batch-norm running statistics, as Keras's count_params counts them.
TIMM_PARAMETERS = {"hrnet_w18_small_v2": 3_876_668, "hrnet_w18": 9_596_196, "hrnet_w48": 65_409_216}


def tiny_hrnet(**kwargs):
    # Width 18 reuses W18's kernel shapes: on JAX each new shape costs a compiled random initialiser.
    return hrnet.hrnet(width=18, stage1_blocks=1, stage_modules=(1, 1, 1), blocks_per_branch=1, **kwargs)


def timm_state():
    with np.load(STATE_DICT) as data:
        return {key: data[key] for key in data.files}


@pytest.fixture(scope="module")
def small_v2():
    """hrnet_w18_small_v2 built through the registry with the fixture's timm weights, shared by the tests below.

    Tests that load into it load the same tensors or fail before assigning anything.
    """
    return backbones.get_backbone("hrnet_w18_small_v2", weights=STATE_DICT)


def test_feature_maps_match_timm_after_conversion(small_v2):
    assert small_v2.count_params() == TIMM_PARAMETERS["hrnet_w18_small_v2"]
    with np.load(REFERENCE) as reference:
        outputs = small_v2.predict(reference["input"], verbose=0)
        for i, (stride, channels) in enumerate(zip((4, 8, 16, 32), (18, 36, 72, 144))):
            expected = reference[f"branch{i}"]
            assert expected.shape == (2, 64 // stride, 96 // stride, channels)
            np.testing.assert_allclose(outputs[i], expected, rtol=0, atol=1e-4, err_msg=f"branch {i} (stride {stride})")


@pytest.mark.parametrize(
    "name, channels",
    [("hrnet_w18", (18, 36, 72, 144)), ("hrnet_w48", (48, 96, 192, 384))],
)
def test_variants_have_timms_parameter_counts_channels_and_strides(name, channels):
    model = backbones.get_backbone(name)
    assert model.count_params() == TIMM_PARAMETERS[name]
    shapes = model.compute_output_shape((2, 64, 96, 3))
    assert [tuple(s) for s in shapes] == [(2, 64 // s, 96 // s, c) for s, c in zip((4, 8, 16, 32), channels)]


def test_nearest_upsample_repeats_then_crops_to_the_reference():
    x = np.array([[1.0, 2.0], [3.0, 4.0]], "float32").reshape(1, 2, 2, 1)
    reference = np.zeros((1, 3, 4, 5), "float32")
    y = to_numpy(hrnet.NearestUpsampleTo(2)([x, reference]))
    expected = [[1, 1, 2, 2], [1, 1, 2, 2], [3, 3, 4, 4]]
    np.testing.assert_array_equal(y[0, :, :, 0], expected)
    assert hrnet.NearestUpsampleTo(2).compute_output_shape([(1, 2, 2, 1), (1, 3, 4, 5)]) == (1, 3, 4, 1)


def test_timm_checkpoint_extras_are_ignored_and_prefix_selects_the_backbone(small_v2):
    state = timm_state()
    # A classification checkpoint also has the head and batch counters; a larger model prefixes the backbone.
    extras = {"classifier.weight": np.zeros((1000, 2048)), "incre_modules.0.0.conv1.weight": np.zeros(1)}
    extras["bn1.num_batches_tracked"] = np.array(7)
    prefixed = {f"backbone.{key}": value for key, value in {**state, **extras}.items()}
    prefixed["decoder.head.weight"] = np.zeros(3)
    conv = small_v2.get_layer("stage3-2-fuse_layers-2-0-1-0")  # timm's stage3.2.fuse_layers.2.0.1.0
    bn = small_v2.get_layer("layer1-1-bn3")
    for layer in (conv, bn):  # so that the checks below see the load
        layer.set_weights([np.zeros_like(w) for w in layer.get_weights()])
    hrnet.load_timm_state_dict(small_v2, prefixed, prefix="backbone.")
    kernel = state["stage3.2.fuse_layers.2.0.1.0.weight"]  # (C_out, C_in, kh, kw)
    np.testing.assert_array_equal(conv.get_weights()[0], kernel.transpose(2, 3, 1, 0))
    names = ("weight", "bias", "running_mean", "running_var")
    for value, name in zip(bn.get_weights(), names):
        np.testing.assert_array_equal(value, state[f"layer1.1.bn3.{name}"])


def test_keras_weights_file_round_trip(tmp_path):
    model = tiny_hrnet()
    path = tmp_path / "tiny.weights.h5"
    model.save_weights(path)
    restored = tiny_hrnet(weights=path)
    for a, b in zip(model.get_weights(), restored.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_state_dict_errors_name_the_tensors_and_leave_weights_unchanged(small_v2):
    before = small_v2.get_layer("conv1").get_weights()[0].copy()
    state = timm_state()
    state["conv1.weight"] = state["conv1.weight"] + 1.0

    missing = dict(state)
    del missing["stage4.1.branches.3.1.bn2.running_var"]
    message = r"lacks 1 tensors .*'stage4\.1\.branches\.3\.1\.bn2\.running_var'"
    with pytest.raises(hrnet.HRNetWeightsError, match=message):
        hrnet.load_timm_state_dict(small_v2, missing)

    extra = {**state, "stage5.0.conv.weight": np.zeros((3, 3))}
    with pytest.raises(hrnet.HRNetWeightsError, match=r"1 tensors that 'hrnet_w18_small_v2' does not use.*stage5"):
        hrnet.load_timm_state_dict(small_v2, extra)

    wrong = {**state, "transition1.0.0.weight": np.zeros((18, 256, 1, 1), "float32")}
    message = r"transition1\.0\.0\.weight .*expected \(18, 256, 3, 3\)\. Received: shape=\(18, 256, 1, 1\)"
    with pytest.raises(hrnet.HRNetWeightsError, match=message):
        hrnet.load_timm_state_dict(small_v2, wrong)
    np.testing.assert_array_equal(small_v2.get_layer("conv1").get_weights()[0], before)

    # Another variant: the tiny HRNet has 1 stage-1 bottleneck where W18-small-v2 has 2.
    with pytest.raises(hrnet.HRNetWeightsError, match=r"tensors that 'hrnet' does not use, e\.g\. \['layer1\.1\."):
        hrnet.load_timm_state_dict(tiny_hrnet(), state)


@pytest.mark.filterwarnings("ignore:Skipping nested container")  # Keras's own noise while it fails on the Dense file
def test_weights_argument_errors(small_v2, tmp_path):
    # Missing files and tags are reported before the (large) model is built.
    with pytest.raises(WeightsNotFoundError, match=r"existing HRNet weights file.*Received: weights='.*absent\.npz'"):
        backbones.get_backbone("hrnet_w48", weights=tmp_path / "absent.npz")
    with pytest.raises(WeightsNotFoundError, match=r"No HRNet weights install offline.*Received: weights='imagenet'"):
        backbones.get_backbone("hrnet_w48", weights="imagenet")
    text = tmp_path / "weights.txt"
    text.write_text("not weights")
    with pytest.raises(WeightsFormatError):
        hrnet.load_weights(small_v2, text)
    dense = tmp_path / "dense.weights.h5"
    keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)]).save_weights(dense)
    message = r"dense\.weights\.h5 does not hold weights of 'hrnet_w18_small_v2'"
    with pytest.raises(hrnet.HRNetWeightsError, match=message):
        hrnet.load_weights(small_v2, dense)


def test_bad_builder_arguments_raise():
    message = r"`stage_modules` must be three positive integers.*Received: stage_modules=\(1, 2\)"
    with pytest.raises(ValueError, match=message):
        hrnet.hrnet(stage_modules=(1, 2))
    with pytest.raises(ValueError, match=r"`width` must be a positive integer\. Received: width=0"):
        hrnet.hrnet(width=0)
    with pytest.raises(ValueError, match=r"`factor` must be an integer >= 1\. Received: factor=0"):
        hrnet.NearestUpsampleTo(0)


def test_any_input_size_in_a_multi_task_model_and_a_keras_file(tmp_path):
    # 36 x 52 is no multiple of 32 (timm would fail): branches are ceil(36 / s) x ceil(52 / s).
    backbone = tiny_hrnet()
    assert [tuple(s) for s in backbone.compute_output_shape((2, 36, 52, 3))] == [
        (2, 9, 13, 18), (2, 5, 7, 36), (2, 3, 4, 72), (2, 2, 2, 144)
    ]
    model = MultiTaskModel(backbone, tasks.task_set("nyud", tasks=["semseg", "depth"], num_classes={"semseg": 4}))
    x = np.random.default_rng(0).normal(size=(2, 36, 52, 3)).astype("float32")
    outputs = model.predict(x, verbose=0)
    assert outputs["semseg"].shape == (2, 36, 52, 4) and outputs["depth"].shape == (2, 36, 52, 1)
    assert np.all(np.isfinite(outputs["depth"]))
    path = tmp_path / "model.keras"
    model.save(path)
    restored = keras.saving.load_model(path)
    factors = [layer.factor for layer in restored.backbone.layers if isinstance(layer, hrnet.NearestUpsampleTo)]
    assert factors == [layer.factor for layer in backbone.layers if isinstance(layer, hrnet.NearestUpsampleTo)]
    # Coarser-to-finer pairs: stage 2 (0, 1); stage 3 (0, 1) (0, 2) (1, 2); stage 4 adds (0, 3) (1, 3) (2, 3).
    assert sorted(factors) == [2] * 6 + [4] * 3 + [8]
    for a, b in zip(model.get_weights(), restored.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_kernel_init_is_timms_kaiming_normal_fan_out():
    init = hrnet.KaimingNormalFanOut(seed=1)
    values = to_numpy(init((3, 3, 64, 128)))
    np.testing.assert_allclose(values.std(), np.sqrt(2.0 / (3 * 3 * 128)), rtol=0.02)  # 73,728 draws
    assert abs(values.mean()) < 0.002
    np.testing.assert_array_equal(values, to_numpy(hrnet.KaimingNormalFanOut(seed=1)((3, 3, 64, 128))))
    assert hrnet.KaimingNormalFanOut.from_config(init.get_config()).seed == 1
