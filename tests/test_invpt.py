"""The InvPT decoder on the ViT pyramid: shapes, joint attention across tasks, training, saving, export.

The contract harness (tests/test_contracts.py) runs InvPT on tiny_cnn; here it runs on vit_tiny, the
backbone it was designed for, at 32 x 48 inputs.
"""

import functools
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from keras_mtcl import backbones, export, tasks
from keras_mtcl.decoders.invpt import INVPT_OPTIONS, InvPTBlock, InvPTDecoder, TaskTokenAttention
from keras_mtcl.model import MultiTaskModel, load_model
from keras_mtcl.testing import harness as h

OPTIONS = dict(h.DECODERS["invpt"].options)  # channels 8, stage_channels (8, 8, 4)
SIZE = (32, 48)


def specs():
    return tasks.task_set("nyud", num_classes={"semseg": 5})


def make_model(task_specs=None):
    backbone = backbones.get_backbone("vit_tiny", **h.TINY_VIT)
    return MultiTaskModel(backbone, specs() if task_specs is None else task_specs, decoder="invpt", decoder_options=OPTIONS)


@functools.lru_cache(maxsize=None)
def shared_model():
    """One model for the read-only tests (building one costs seconds, tens of them on JAX)."""
    return make_model()


def images(batch=2, size=SIZE, seed=0):
    return np.random.default_rng(seed).normal(size=(batch, *size, 3)).astype("float32")


def test_shapes_and_deep_supervision_in_training_only():
    model = shared_model()
    x = images()
    outputs = model.predict(x, verbose=0)
    assert {k: v.shape for k, v in outputs.items()} == {
        "semseg": (2, 32, 48, 5), "depth": (2, 32, 48, 1), "normals": (2, 32, 48, 3), "edge": (2, 32, 48, 1)
    }
    training = model.training_outputs(x)
    # F_t at the finest pyramid map (stride 4: 8 x 12) with stage_channels[0] channels.
    assert {k: tuple(v.shape) for k, v in training["features"].items()} == {t.name: (2, 8, 12, 8) for t in specs()}
    assert model.task_feature_shapes((2, 32, 48)) == {t.name: (2, 8, 12, 8) for t in specs()}
    assert model.auxiliary_groups() == ("initial",)
    assert sorted(training["auxiliary"]["initial"]) == sorted(outputs)
    assert tuple(training["auxiliary"]["initial"]["semseg"].shape) == (2, 32, 48, 5)
    decoded = model.decoder(list(model.backbone(x)), training=False)
    assert decoded["auxiliary"] == {}


def test_every_task_attends_to_every_other_task():
    layer = TaskTokenAttention(num_tasks=3, channels=4, num_heads=2)
    rng = np.random.default_rng(0)
    maps = [rng.normal(size=(1, 4, 6, 4)).astype("float32") for _ in range(3)]
    outputs, scores, key_size = layer(maps)
    # Queries on a ceil(4 / 2) x ceil(6 / 2) grid per task; keys pooled by 2 from the three tasks: 3 x 2 x 3.
    assert tuple(scores.shape) == (1, 3, 2, 3, 2, 18) and tuple(key_size) == (2, 3)
    changed = list(maps)
    changed[2] = maps[2] + 1.0
    moved = layer(changed)[0]
    for t in (0, 1):  # task 2's map changes the outputs of tasks 0 and 1
        assert np.abs(h.to_numpy(moved[t]) - h.to_numpy(outputs[t])).max() > 1e-4


def test_later_stages_fuse_the_previous_scores_on_the_same_keys():
    first = TaskTokenAttention(num_tasks=2, channels=4, num_heads=2, kv_pool=2)
    second = TaskTokenAttention(num_tasks=2, channels=4, num_heads=2, kv_pool=4, fuse_message=True)
    rng = np.random.default_rng(0)
    coarse = [rng.normal(size=(1, 3, 5, 4)).astype("float32") for _ in range(2)]
    fine = [rng.normal(size=(1, 6, 10, 4)).astype("float32") for _ in range(2)]
    _, scores, key_size = first(coarse)
    _, fused, _ = second(fine, message=scores, key_size=key_size)
    # Keys: ceil(3 / 2) x ceil(5 / 2) = 2 x 3 per task at both stages (pooled by 2, then by 4 on the twice finer map).
    assert tuple(scores.shape) == (1, 2, 2, 3, 2, 12) and tuple(fused.shape) == (1, 2, 3, 5, 2, 12)


def test_fit_with_the_regularizer_reaches_every_weight():
    # One MultiTaskTrainer.fit step with the regularizer on, deep supervision included.
    model = make_model(h.contract_tasks())
    case = h.BackboneCase("vit_tiny", h.TINY_VIT, (4, 8, 16, 32), (16,) * 4, input_size=SIZE)
    x, y = h.contract_inputs(case, model.task_specs)
    trainer = h.check_training_step(model, x, y)
    assert trainer.regularizer is not None


def test_save_and_load_keep_predictions(tmp_path):
    model = shared_model()
    x = images()
    before = model.predict(x, verbose=0)
    model.save(tmp_path / "invpt.keras")
    restored = load_model(tmp_path / "invpt.keras")
    assert type(restored.decoder) is InvPTDecoder and restored.decoder.stage_channels == (8, 8, 4)
    after = restored.predict(x, verbose=0)
    for name in before:
        np.testing.assert_allclose(after[name], before[name], atol=1e-5, err_msg=name)


def test_config_round_trip_keeps_every_option():
    options = {
        "channels": 12,
        "stage_channels": (12, 6),
        "num_heads": 3,
        "mlp_ratio": 2.0,
        "query_stride": 1,
        "kv_pool": 4,
        "drop_path_rate": 0.1,
    }
    h.assert_round_trip(InvPTDecoder(specs(), **options), **options)
    block = {"num_tasks": 3, "channels": 6, "num_heads": 3, "query_stride": 1, "kv_pool": 4, "fuse_message": True}
    h.assert_round_trip(TaskTokenAttention(**block), **block)
    h.assert_round_trip(InvPTBlock(**block, mlp_ratio=2.0, drop_path_rate=0.1), **block, mlp_ratio=2.0, drop_path_rate=0.1)
    assert dict(INVPT_OPTIONS) == {"channels": 512, "stage_channels": (576, 288, 144), "drop_path_rate": 0.15}


def test_fewer_pyramid_maps_than_stages_and_more_maps():
    inputs = keras.Input((None, None, 3))
    fine = keras.layers.Conv2D(8, 4, strides=4, padding="same")(inputs)
    two_maps = keras.Model(inputs, [fine, keras.layers.Conv2D(8, 3, strides=2, padding="same")(fine)])
    model = MultiTaskModel(two_maps, [tasks.depth()], decoder="invpt", decoder_options=OPTIONS)
    assert len(model.decoder.blocks) == 2 and not model.decoder.fine_skips
    assert model.predict(images(1), verbose=0)["depth"].shape == (1, 32, 48, 1)
    # Four maps, three stages: the stride-4 map joins through one skip convolution.
    assert len(shared_model().decoder.blocks) == 3 and len(shared_model().decoder.fine_skips) == 1


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"stage_channels": (8, 6)}, r"`stage_channels` must be one or more positive multiples of `num_heads` \(4\). Received: stage_channels=\(8, 6\)"),
        ({"drop_path_rate": 1.0}, r"`drop_path_rate` must be in \[0, 1\). Received: drop_path_rate=1.0"),
        ({"kv_pool": 0}, r"`kv_pool` must be >= 1. Received: kv_pool=0"),
    ],
)
def test_bad_options_raise_in_the_keras_form(kwargs, message):
    with h.assert_raises(ValueError, message):
        InvPTDecoder(specs(), **{"num_heads": 4, **kwargs})


# Runs in a TensorFlow process: loads a .keras file saved on any backend, exports it and checks the SavedModel.
EXPORT_AND_VERIFY = r"""
import sys
from keras_mtcl import export
from keras_mtcl.model import load_model
model = load_model(sys.argv[1])
export.export_saved_model(model, sys.argv[2])
print("worst", export.verify_saved_model(model, sys.argv[2]))
"""


def test_saved_model_export_serves_the_keras_predictions(tmp_path):
    model = shared_model()
    if keras.backend.backend() == "tensorflow":
        export.export_saved_model(model, tmp_path / "saved")
        worst = export.verify_saved_model(model, tmp_path / "saved")  # raises past 1e-4
    else:
        # JAX and torch models are exported from their .keras file in a TensorFlow process (export.py's rule).
        model.save(tmp_path / "invpt.keras")
        env = dict(os.environ, KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="3")
        result = subprocess.run(
            [sys.executable, "-c", EXPORT_AND_VERIFY, str(tmp_path / "invpt.keras"), str(tmp_path / "saved")],
            capture_output=True, text=True, env=env, timeout=300,
        )
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        worst = float(result.stdout.split("worst")[-1])
    assert worst < 1e-4
    predict, served_specs, _ = export.load_saved_model(tmp_path / "saved")
    served = predict(np.zeros((1, 45, 70, 3), "uint8"))  # padded to 64 x 96 inside
    assert served["depth"].shape == (1, 45, 70, 1) and [t.name for t in served_specs] == [t.name for t in specs()]
