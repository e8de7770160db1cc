"""The contract harness (`keras_mtcl.testing.harness`) on every registered backbone and decoder.

Run once per backend (`KERAS_BACKEND=jax python -m pytest tests/test_contracts.py`).
The matrix is `list_backbones() x list_decoders()`, cut to fit about two
minutes per backend:

- every backbone: its pyramid against its declaration, with maps computed on a
  test input (hrnet_w18 and hrnet_w48: symbolically only, see
  `harness.BACKBONES[...].pyramid_only`);
- the model contract (predictions on numpy and tf.data, config round trip,
  the pyramid error) and a training step with the regularizer reaching every
  weight, for every decoder on tiny_cnn and for every other backbone with the
  baseline decoder (on JAX, the training step on tiny_cnn only:
  `JAX_TRAINING_BACKBONES`). Decoders read nothing but the pyramid (STYLE.md item 1),
  which the pyramid checks pin down per backbone, so the other pairs are
  skipped with that reason; a new backbone or decoder joins the matrix by
  getting a tiny configuration in the harness (a test fails until it has one).
"""

import functools
import types

import keras
import numpy as np
import pytest

from keras_mtcl.backbones import list_backbones
from keras_mtcl.backbones.pyramid import FeaturePyramid, PyramidLevel
from keras_mtcl.decoders import get_decoder, list_decoders
from keras_mtcl.decoders.baseline import BaselineDecoder
from keras_mtcl.testing import harness as h

SKIPPED_PAIR = (
    "decoders read only the pyramid, checked per backbone: each decoder runs on tiny_cnn, each other backbone with "
    "the baseline decoder"
)


def test_every_registered_backbone_and_decoder_has_a_tiny_configuration():
    assert h.missing_cases() == {"backbones": [], "decoders": []}


@pytest.mark.parametrize("backbone", list_backbones())
def test_backbone_pyramid_is_the_declared_one(backbone):
    if backbone not in h.BACKBONES:
        pytest.fail(f"{backbone} has no tiny configuration in keras_mtcl.testing.harness.BACKBONES")
    case = h.BACKBONES[backbone]
    h.check_pyramid(case, _backbone(backbone), run=not case.pyramid_only)


# On JAX the first training step of each model costs 20 s to 100 s of compilation (eager: every new op shape
# compiles on its own; jitted: the whole step, the same order), past the budget for the larger backbones. JAX
# runs the training step of every decoder on tiny_cnn (the per-decoder JAX numerics: deep supervision, the
# regularizer's `lax.switch`); the other backbones' gradients are checked on TensorFlow and torch, and their
# compiled forward pass on JAX by test_model_contract.
JAX_TRAINING_BACKBONES = ("tiny_cnn",)


def _pairs():
    for backbone in list_backbones():
        for decoder in list_decoders():
            case = h.BACKBONES.get(backbone)
            reason = None
            if case is None or decoder not in h.DECODERS:
                reason = "no tiny configuration (test_every_registered_backbone_and_decoder_has_a_tiny_configuration fails)"
            elif case.pyramid_only:
                reason = case.pyramid_only
            elif backbone != "tiny_cnn" and decoder != "baseline":
                reason = SKIPPED_PAIR
            marks = [pytest.mark.skip(reason=reason)] if reason else []
            yield pytest.param(backbone, decoder, marks=marks, id=f"{backbone}-{decoder}")


@functools.lru_cache(maxsize=None)
def _backbone(name):
    """Each backbone built once for the module (a training step leaves the weights as they are)."""
    return h.BACKBONES[name].build()


@functools.lru_cache(maxsize=None)
def _built(backbone, decoder):
    """(model, images, labels) of a pair, shared by its two tests."""
    case, tasks = h.BACKBONES[backbone], h.contract_tasks()
    return (h.build_model(case, h.DECODERS[decoder], tasks, _backbone(backbone)), *h.contract_inputs(case, tasks))


@pytest.mark.parametrize("backbone, decoder", list(_pairs()))
def test_model_contract(backbone, decoder):
    case, decoder_case = h.BACKBONES[backbone], h.DECODERS[decoder]
    model, images, _ = _built(backbone, decoder)
    h.check_pyramid(case, model.backbone, run=False)  # run on its own in test_backbone_pyramid_is_the_declared_one
    h.check_predictions(model, case, images)
    h.check_round_trip(model, decoder_case)
    h.check_refuses_unreadable_pyramid(decoder_case, model.task_specs)


@pytest.mark.parametrize("backbone, decoder", list(_pairs()))
def test_training_step_reaches_every_weight(backbone, decoder):
    if keras.backend.backend() == "jax" and backbone not in JAX_TRAINING_BACKBONES:
        pytest.skip(f"compiling {backbone}'s training step on JAX is over the time budget (JAX_TRAINING_BACKBONES)")
    h.check_training_step(*_built(backbone, decoder))


# --- the harness can fail -----------------------------------------------------------------------------------------


def test_a_wrong_declaration_fails_the_pyramid_check():
    case = h.BACKBONES["tiny_cnn"]
    wrong = h.BackboneCase(case.name, case.kwargs, case.strides, (8, 8, 8, 16), case.input_size)
    with h.assert_raises(AssertionError, r"channels \(8, 8, 8, 8\), declared \(8, 8, 8, 16\)"):
        h.check_pyramid(wrong, run=False)


def test_an_option_lost_in_a_round_trip_fails_the_round_trip_check():
    class Forgetful(BaselineDecoder):
        def get_config(self):
            config = super().get_config()
            config["head_channels"] = None
            return config

    decoder = Forgetful(h.contract_tasks(), head_channels=8)
    with h.assert_raises(AssertionError, r"head_channels: config has None, expected 8"):
        h.assert_round_trip(decoder, head_channels=8)


def test_a_weight_the_loss_never_reaches_fails_the_training_step():
    class WithUnusedWeight(keras.Model):
        """A backbone holding a weight that its call never reads."""

        def __init__(self, inner):
            super().__init__(name="with_unused_weight")
            self.inner = inner
            self.unused = self.add_weight(shape=(3,), initializer="ones", name="unused")

        def call(self, images, training=None):
            return self.inner(images, training=training)

        def compute_output_shape(self, input_shape):
            return self.inner.compute_output_shape(input_shape)

    from keras_mtcl.model import MultiTaskModel

    case, tasks = h.BACKBONES["tiny_cnn"], h.contract_tasks()
    model = MultiTaskModel(WithUnusedWeight(case.build()), tasks)
    images, labels = h.contract_inputs(case, tasks)
    # TensorFlow and torch give it no gradient; JAX a zero one, which stays zero with positive values.
    with h.assert_raises(AssertionError, r"(not reached by the loss|get no gradient, even with positive values).*unused"):
        h.check_training_step(model, images, labels)


def _fake_regularizer():
    """A regularizer whose projectors are one stacked bank: a (pairs, 2) kernel and a shared (2,) bias."""
    kernel = types.SimpleNamespace(shape=(6, 2), path="bank/kernel")
    bias = types.SimpleNamespace(shape=(2,), path="bank/bias")
    return types.SimpleNamespace(task_names=["a", "b", "c"], trainable_variables=[kernel, bias]), kernel, bias


@pytest.mark.backend_independent
def test_projector_gradients_of_a_stacked_bank_go_to_their_pairs():
    regularizer, kernel, bias = _fake_regularizer()
    # Pairs in target-major order: (a, b), (a, c), (b, a), (b, c), (c, a), (c, b). Drawn: a <- c, b <- a, c <- b.
    bank = np.zeros((6, 2))
    bank[[1, 2, 5]] = 1.0
    gradients = {id(kernel): bank, id(bias): np.ones(2)}
    drawn = h.check_projector_gradients(regularizer, lambda v: gradients[id(v)])
    assert drawn == {"a": ("a", "c"), "b": ("b", "a"), "c": ("c", "b")}
    bank[0] = 1.0  # a second pair of target a gets a gradient
    with h.assert_raises(AssertionError, r"target 'a': projectors with a gradient \[\('a', 'b'\), \('a', 'c'\)\]"):
        h.check_projector_gradients(regularizer, lambda v: gradients[id(v)])
    bank[[0, 1]] = 0.0  # target a's drawn pair gets none
    with h.assert_raises(AssertionError, r"target 'a': projectors with a gradient \[\]"):
        h.check_projector_gradients(regularizer, lambda v: gradients[id(v)])


def test_decoders_refuse_fewer_levels_than_they_read():
    # Every registered decoder reads any number of levels (min_levels = 1); the base class's rule, on a subclass.
    narrow = type("NarrowBaseline", (BaselineDecoder,), {"min_levels": 2})(h.contract_tasks())
    one_level = FeaturePyramid((PyramidLevel.at(4, 8),))
    with h.assert_raises(ValueError, r"NarrowBaseline reads at least 2 pyramid level\(s\); the backbone gives 1. Received: strides=\(4,\)"):
        narrow.check_pyramid(one_level)
    for name in list_decoders():
        get_decoder(name, h.contract_tasks(), **h.DECODERS[name].options).check_pyramid(one_level)


def test_docstring_examples_run():
    import doctest

    result = doctest.testmod(h)
    assert result.attempted > 0 and result.failed == 0
