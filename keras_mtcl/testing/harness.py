"""The contract harness: what every backbone x decoder pair must do, written once (STYLE.md items 1, 2, 5, 7).

Each registered backbone has a tiny configuration here (`BACKBONES`: builder
arguments, the strides and channels its documentation declares, a test input
size) and each registered decoder tiny options (`DECODERS`). For one pair the
checks are:

- `check_pyramid`: `FeaturePyramid.of(backbone)` has strictly increasing
  strides and the declared strides and channels, and the maps' shapes, symbolic
  and (unless `run=False`) computed on a test input, are `pyramid.shapes(...)`;
- `check_predictions`: a `MultiTaskModel` of the pair predicts
  {task: (B, H, W, C_task)} on numpy arrays and, the same values, on a
  `tf.data.Dataset`;
- `check_round_trip`: the model's and the decoder's `get_config` hold every
  constructor argument, and `from_config` gives back the same config, with the
  tiny options (chosen to differ from the defaults) kept;
- `check_training_step`: one `MultiTaskTrainer.fit` step with the
  regularizer on gives finite losses and a non-zero, finite gradient to every
  trainable variable of the backbone, the decoder and its heads
  (deep-supervision heads included), and to the projector of each pair the
  regularizer drew (one source per target: exactly one pair per target gets a
  gradient, the others none; `check_projector_gradients`);
- `check_refuses_unreadable_pyramid`: a decoder given what it cannot read
  fails with `check_pyramid`'s error.

`check_contract` runs them all. Nothing here is backend-specific: gradients
are recorded by an optimizer (`GradientRecorder`) from `fit`'s own step, so
each backend's train step (tape, `jax.grad`, autograd) computes them.
Imports only numpy and keras at import time; TensorFlow (for tf.data) is
imported by the check that needs it.

Example:
>>> pyramid = check_pyramid(BACKBONES["tiny_cnn"], run=False)
>>> pyramid.strides, pyramid.channels
((4, 8, 16, 32), (8, 8, 8, 8))
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import inspect
import re
import types
from typing import Any, Callable, Mapping, Sequence

import keras
import numpy as np

from keras_mtcl.backbones.pyramid import FeaturePyramid, PyramidLevel

# ---------------------------------------------------------------------------
# Generic checks shared by the layer and model tests (keras-hub's TestCase habit).


def assert_config_covers_constructor(instance, ignore=("kwargs",)) -> dict:
    """Every constructor argument appears in `get_config()`; returns the config."""
    config = instance.get_config()
    params = [p for p in inspect.signature(type(instance).__init__).parameters if p not in ("self",) + tuple(ignore)]
    missing = [p for p in params if p not in config]
    assert not missing, f"{type(instance).__name__}.get_config() lacks constructor arguments {missing}"
    return config


def assert_round_trip(instance, **expected_values):
    """`from_config(get_config())` keeps every argument, including the non-default ones given."""
    config = assert_config_covers_constructor(instance)
    restored = type(instance).from_config(config)
    restored_config = restored.get_config()
    for key, value in expected_values.items():
        assert config[key] == value, f"{key}: config has {config[key]!r}, expected {value!r}"
        assert restored_config[key] == value, f"{key} lost in a round trip: {restored_config[key]!r}"
    return restored


def non_default_arguments(cls, arguments: Mapping[str, Any]) -> dict:
    """The entries of `arguments` that differ from `cls.__init__`'s defaults (a round trip can only lose those)."""
    parameters = inspect.signature(cls.__init__).parameters
    return {
        name: value
        for name, value in arguments.items()
        if name not in parameters or parameters[name].default is inspect.Parameter.empty or parameters[name].default != value
    }


def to_numpy(tree):
    """A structure of tensors as numpy arrays, on any backend."""
    return keras.tree.map_structure(lambda x: np.asarray(keras.ops.convert_to_numpy(x)), tree)


@contextlib.contextmanager
def assert_raises(error: type[BaseException], pattern: str):
    """Asserts that the block raises `error` with a message matching `pattern` (re.search)."""
    try:
        yield
    except error as raised:
        assert re.search(pattern, str(raised)), f"{type(raised).__name__} message {str(raised)!r} does not match {pattern!r}"
    else:
        raise AssertionError(f"no {error.__name__} raised (expected a message matching {pattern!r})")


# ---------------------------------------------------------------------------
# Tiny configurations of the registered backbones and decoders.


@dataclasses.dataclass(frozen=True)
class BackboneCase:
    """A registered backbone in a tiny configuration, with the pyramid its documentation declares.

    Attributes:
        name: the name in `keras_mtcl.backbones` (`get_backbone(name, **kwargs)`).
        kwargs: tiny builder arguments (no weights: nothing is read or downloaded).
        strides: declared strides of the maps, finest first.
        channels: declared channels of the maps.
        input_size: (H, W) of the test input.
        batch: B of the test input.
        pyramid_only: when not empty, why only `check_pyramid` (symbolic) runs for it.
    """

    name: str
    kwargs: Mapping[str, Any]
    strides: tuple[int, ...]
    channels: tuple[int, ...]
    input_size: tuple[int, int] = (32, 32)
    batch: int = 2
    pyramid_only: str = ""

    def __post_init__(self):
        object.__setattr__(self, "kwargs", types.MappingProxyType(dict(self.kwargs)))

    def build(self) -> keras.Model:
        """`get_backbone(name, **kwargs)`, with fresh (mutable) copies of the arguments."""
        from keras_mtcl.backbones import get_backbone

        return get_backbone(self.name, **_thaw(self.kwargs))

    @property
    def input_shape(self) -> tuple[int, int, int, int]:
        return (self.batch, *self.input_size, 3)


def _thaw(value):
    """Read-only mappings (nested) as fresh dicts."""
    if isinstance(value, Mapping):
        return {k: _thaw(v) for k, v in value.items()}
    return copy.deepcopy(value)


@dataclasses.dataclass(frozen=True)
class DecoderCase:
    """A registered decoder with tiny options (each differing from its default, so a round trip can lose it)."""

    name: str
    options: Mapping[str, Any]


# A ResNet-vd small enough for tests (keras-hub requires 64 filters in the first stack); any input size.
TINY_RESNET = types.MappingProxyType(
    {
        "class_name": "ResNetBackbone",
        "config": types.MappingProxyType(
            {
                "input_conv_filters": (8,),
                "input_conv_kernel_sizes": (3,),
                "stackwise_num_filters": (64, 16, 16, 16),
                "stackwise_num_blocks": (1, 1, 1, 1),
                "stackwise_num_strides": (1, 2, 2, 2),
                "block_type": "basic_block_vd",
            }
        ),
    }
)

_HRNET_PYRAMID_ONLY = (
    "the same builder as hrnet_w18_small_v2 (keras_mtcl.backbones.hrnet.hrnet) with more blocks and modules, and "
    "wider for w48 (9.6 M and 65.4 M parameters against 3.9 M): its declared pyramid and map shapes are checked "
    "symbolically; running it would repeat hrnet_w18_small_v2's model checks at several times their cost"
)


# A ViT small enough for tests: 4 blocks of width 16, 8-pixel patches.
TINY_VIT = types.MappingProxyType({"hidden_dim": 16, "num_layers": 4, "num_heads": 2, "patch_size": 8})

_VIT_SMALL_PYRAMID_ONLY = (
    "the same builder as vit_tiny (keras_mtcl.backbones.vit.vision_transformer) at ViT-S widths (21.7 M "
    "parameters): its declared pyramid and map shapes are checked symbolically"
)


def _backbone_cases() -> tuple[BackboneCase, ...]:
    from keras_mtcl.backbones.efficientnet_lite import FEATURES

    return (
        BackboneCase("tiny_cnn", {"widths": (8, 8, 8, 8)}, (4, 8, 16, 32), (8, 8, 8, 8)),
        BackboneCase(
            "efficientnet_lite0",
            {"weights": None},
            tuple(level.stride for level in FEATURES),
            tuple(level.channels for level in FEATURES),
        ),
        # HRNetV2 branches: widths w, 2w, 4w, 8w at strides 4 to 32 (`hrnet`'s docstring).
        BackboneCase("hrnet_w18_small_v2", {"weights": None}, (4, 8, 16, 32), (18, 36, 72, 144), (64, 64), batch=1),
        BackboneCase(
            "hrnet_w18", {"weights": None}, (4, 8, 16, 32), (18, 36, 72, 144), (64, 64), 1, _HRNET_PYRAMID_ONLY
        ),
        BackboneCase(
            "hrnet_w48", {"weights": None}, (4, 8, 16, 32), (48, 96, 192, 384), (64, 64), 1, _HRNET_PYRAMID_ONLY
        ),
        # The ResNet's stacks give the four maps their channels: 64, 16, 16, 16.
        BackboneCase("keras_hub", {"config": TINY_RESNET}, (4, 8, 16, 32), (64, 16, 16, 16)),
        # Every map of a ViT has its token width (hidden_dim).
        BackboneCase("vit_tiny", TINY_VIT, (4, 8, 16, 32), (16, 16, 16, 16)),
        BackboneCase("vit_small", {}, (4, 8, 16, 32), (384, 384, 384, 384), pyramid_only=_VIT_SMALL_PYRAMID_ONLY),
    )


class _Lazy(Mapping):
    """A read-only mapping built on first use (the cases import the backbone modules)."""

    def __init__(self, make: Callable[[], Sequence]):
        self._make, self._items = make, None

    def _get(self) -> Mapping:
        if self._items is None:
            self._items = types.MappingProxyType({case.name: case for case in self._make()})
        return self._items

    def __getitem__(self, key):
        return self._get()[key]

    def __iter__(self):
        return iter(self._get())

    def __len__(self):
        return len(self._get())


# {registered backbone name: BackboneCase}.
BACKBONES: Mapping[str, BackboneCase] = _Lazy(_backbone_cases)

# {registered decoder name: DecoderCase}; MTI-Net has no options (its widths follow the pyramid).
DECODERS: Mapping[str, DecoderCase] = types.MappingProxyType(
    {
        "baseline": DecoderCase("baseline", types.MappingProxyType({"head_channels": 8, "head_kernel_size": 3})),
        "padnet": DecoderCase("padnet", types.MappingProxyType({"channels": 8})),
        "mtinet": DecoderCase("mtinet", types.MappingProxyType({})),
        "invpt": DecoderCase("invpt", types.MappingProxyType({"channels": 8, "stage_channels": (8, 8, 4)})),
    }
)

# The tiny regularizer: few anchors, small projectors.
REGULARIZER_OPTIONS = types.MappingProxyType(
    {
        "num_anchors": 16,
        "pool_size": 64,
        # 16 hidden ReLU units: all of them dead for every input (no projector gradient) has odds 2**-16.
        "projector_width": 16,
        "projection_dim": 4,
        # Squared distances of unit vectors are at most 4: every triplet found is active, so every drawn
        # pair has a gradient whatever the random projectors.
        "margin": 4.0,
        "seed": 0,
    }
)


def missing_cases() -> dict[str, list[str]]:
    """Registered backbones and decoders without a tiny configuration here: {"backbones": [...], "decoders": [...]}."""
    from keras_mtcl.backbones import list_backbones
    from keras_mtcl.decoders import list_decoders

    return {
        "backbones": [name for name in list_backbones() if name not in BACKBONES],
        "decoders": [name for name in list_decoders() if name not in DECODERS],
    }


def contract_tasks() -> list:
    """The tasks of the checks: semseg (5 classes), depth and normals.

    Three tasks, so that the regularizer has two sources to draw from per
    target; three rather than NYUD-v2's four, because the decoders' per-task
    and task-pair modules make the checks' cost grow with the task count (every
    label kind is the regularizer's and the losses' own tests' business).
    """
    from keras_mtcl.tasks import task_set

    return list(task_set("nyud", tasks=["semseg", "depth", "normals"], num_classes={"semseg": 5}))


def contract_inputs(case: BackboneCase, tasks: Sequence, seed: int = 0) -> tuple[np.ndarray, dict]:
    """(images (B, H, W, 3) float32, {task: labels}) for `case`'s input size.

    Labels are constant over squares of a quarter of the image side (4 x 4
    blobs), so the regularizer finds positives and negatives for every label
    kind among a few dozen pooled pixels.
    """
    from keras_mtcl.testing.labels import random_labels

    batch, (height, width) = case.batch, case.input_size
    images = np.random.default_rng(seed).normal(size=(batch, height, width, 3)).astype("float32")
    labels = random_labels(tasks, batch, height, width, seed=seed, block=max(1, min(height, width) // 4))
    return images, labels


# ---------------------------------------------------------------------------
# The checks.


def check_pyramid(case: BackboneCase, backbone: keras.Model | None = None, run: bool = True) -> FeaturePyramid:
    """The backbone's measured pyramid is the declared one, and its maps have `pyramid.shapes` sizes.

    Args:
        case: the backbone's tiny configuration.
        backbone: the built backbone; default `case.build()`.
        run: also run the backbone on a test input (else shapes are symbolic only).

    Returns:
        The backbone's `FeaturePyramid`.
    """
    backbone = case.build() if backbone is None else backbone
    pyramid = FeaturePyramid.of(backbone)
    strides = pyramid.strides
    assert all(b > a for a, b in zip(strides, strides[1:])), f"{case.name}: strides not increasing: {strides}"
    assert strides == tuple(case.strides), f"{case.name}: strides {strides}, declared {tuple(case.strides)}"
    assert pyramid.channels == tuple(case.channels), f"{case.name}: channels {pyramid.channels}, declared {tuple(case.channels)}"
    assert [level.key for level in pyramid.levels] == [PyramidLevel.at(s, 1).key for s in strides]
    batch, (height, width) = case.batch, case.input_size
    # Symbolic shapes at the test size and at a size that is not a multiple of the coarsest stride (ceil rule).
    for h, w in ((height, width), (height + 4, width + 20)):
        symbolic = [tuple(s) for s in backbone.compute_output_shape((batch, h, w, 3))]
        assert symbolic == pyramid.shapes(batch, h, w), f"{case.name} at {(h, w)}: {symbolic} != {pyramid.shapes(batch, h, w)}"
    if run:
        x = np.random.default_rng(0).normal(size=case.input_shape).astype("float32")
        # One compiled program on JAX, where a first eager call compiles op by op (several times slower).
        maps = backbone.predict(x, verbose=0) if keras.backend.backend() == "jax" else to_numpy(backbone(x))
        actual = [tuple(m.shape) for m in maps]
        assert actual == pyramid.shapes(batch, height, width), f"{case.name}: maps {actual} != {pyramid.shapes(batch, height, width)}"
        assert all(np.isfinite(m).all() for m in maps), f"{case.name}: non-finite maps"
    return pyramid


def build_model(backbone_case: BackboneCase, decoder_case: DecoderCase, tasks: Sequence | None = None, backbone=None):
    """The `MultiTaskModel` of a pair (on `backbone`, default `backbone_case.build()`)."""
    from keras_mtcl.model import MultiTaskModel

    return MultiTaskModel(
        backbone_case.build() if backbone is None else backbone,
        contract_tasks() if tasks is None else tasks,
        decoder=decoder_case.name,
        decoder_options=dict(decoder_case.options),
    )


def check_predictions(model, case: BackboneCase, images: np.ndarray) -> dict:
    """{task: (B, H, W, C_task)} from `predict` on numpy and, with the same values, on a `tf.data.Dataset`."""
    import tensorflow as tf

    batch, (height, width) = case.batch, case.input_size
    expected = {t.name: (batch, height, width, t.channels) for t in model.task_specs}
    outputs = model.predict(images, batch_size=batch, verbose=0)
    assert {k: tuple(v.shape) for k, v in outputs.items()} == expected, f"numpy predictions: {to_numpy(outputs)}"
    from_dataset = model.predict(tf.data.Dataset.from_tensor_slices(images).batch(batch), verbose=0)
    assert {k: tuple(v.shape) for k, v in from_dataset.items()} == expected
    for name in expected:
        assert np.isfinite(outputs[name]).all(), f"non-finite predictions of {name}"
        np.testing.assert_allclose(from_dataset[name], outputs[name], rtol=1e-5, atol=1e-5, err_msg=name)
    return outputs


def check_round_trip(model, decoder_case: DecoderCase):
    """Model and decoder configs hold every constructor argument and survive `from_config` unchanged."""
    config = assert_config_covers_constructor(model)
    options = dict(decoder_case.options)
    decoder_class = type(model.decoder)
    changed = non_default_arguments(decoder_class, options)
    assert changed == options, (
        f"The tiny options of {decoder_case.name!r} must differ from the defaults, or a round trip cannot show "
        f"that they are kept: {sorted(set(options) - set(changed))} equal the defaults"
    )
    assert (config["decoder"], config["decoder_options"]) == (decoder_case.name, options)
    restored = type(model).from_config(config)
    assert restored.get_config() == config, f"{type(model).__name__} config changed in a round trip"
    restored_decoder = assert_round_trip(model.decoder, **options)
    assert restored_decoder.get_config() == model.decoder.get_config(), f"{decoder_class.__name__} config changed"
    return restored


def make_regularizer(**overrides):
    """The tiny `CrossTaskContrastive` of the checks."""
    from keras_mtcl.contrastive import CrossTaskContrastive

    return CrossTaskContrastive(**{**REGULARIZER_OPTIONS, **overrides})


class GradientRecorder(keras.optimizers.Optimizer):
    """An optimizer that records each step's gradients and leaves the weights as they are.

    Compiled into a trainer, it lets `fit` itself compute the gradients, by
    the backend's own train step (a tape on TensorFlow, `jax.grad` of the
    stateless loss on JAX, autograd on torch): no backend-specific code here.
    After a step, `gradient_of(variable)` is the gradient the variable got,
    or None if the backend gave it none (TensorFlow and torch give none to a
    variable the loss does not reach; Keras then skips it with a warning).
    """

    def __init__(self, name: str = "gradient_recorder", **kwargs):
        super().__init__(learning_rate=0.0, name=name, **kwargs)

    def build(self, variables):
        if self.built:
            return
        super().build(variables)
        self.gradients = [self.add_variable_from_reference(v, "gradient") for v in variables]
        self.received = [self.add_variable((), initializer="zeros", name=f"received_{i}") for i in range(len(variables))]

    def update_step(self, gradient, variable, learning_rate):
        index = self._get_variable_index(variable)
        self.assign(self.gradients[index], keras.ops.cast(gradient, self.gradients[index].dtype))
        self.assign(self.received[index], 1.0)

    def reset(self) -> None:
        """Forgets the recorded gradients."""
        for variable in self.gradients + self.received:
            variable.assign(keras.ops.zeros(variable.shape, variable.dtype))

    def gradient_of(self, variable) -> np.ndarray | None:
        index = self._get_variable_index(variable)
        if not float(keras.ops.convert_to_numpy(self.received[index].value)):
            return None
        return np.asarray(keras.ops.convert_to_numpy(self.gradients[index].value))


def _nonzero(gradient) -> bool:
    return gradient is not None and bool(np.any(gradient != 0))


def _revived(variables: Sequence) -> list:
    """Sets `variables` to positive values (|N(0, s)|, s their std or 0.1); returns their previous values.

    ReLU units can be dead at initialisation: with the tiny widths, a
    squeeze-excitation bottleneck (channels // 16) has one unit, dead for every
    input half the time, and its kernels then get an exact zero gradient.
    Positive weights and biases make a unit fed by non-negative maps active.
    """
    rng = np.random.default_rng(0)
    previous = []
    for variable in variables:
        value = np.asarray(keras.ops.convert_to_numpy(variable.value))
        previous.append(value)
        scale = float(value.std()) or 0.1
        variable.assign(np.abs(rng.normal(scale=scale, size=value.shape)).astype(value.dtype))
    return previous


def eager_unless_jax() -> bool:
    """`run_eagerly` for a test's few training steps: eager on TensorFlow and PyTorch, compiled on JAX.

    Tracing a TensorFlow graph for one or two steps costs more than it saves
    (MTI-Net: about 100 s against seconds eagerly); eager JAX compiles every op
    one by one (about 1,300 compilations, 80 s, for one InvPT step on a CPU,
    against 25 s for the whole step).
    """
    return keras.backend.backend() != "jax"


def check_training_step(model, images: np.ndarray, labels: Mapping, regularizer=None, run_eagerly: bool | None = None):
    """One `MultiTaskTrainer.fit` step with the regularizer on: finite losses, and a gradient for every weight.

    The step is `fit`'s own (task losses, deep supervision, regularizer),
    with `GradientRecorder` as the optimizer. Checks:

    - the total, per-task and regularizer losses are finite;
    - every trainable variable of the model (backbone, decoder, heads) gets
      a non-zero, finite gradient. One with an exact zero gradient (not none)
      is checked again in a second step after `_revived` gives it positive
      values, which wakes ReLU units dead at initialisation; still zero, it is
      not connected to the loss;
    - the regularizer draws one source per target per step: for each target,
      exactly one (target, source) projector gets a non-zero gradient, in all
      of its parameters, and the others exactly zero or none.

    Args:
        model: a `MultiTaskModel` (or any model `MultiTaskTrainer` takes).
        images, labels: one batch.
        regularizer: default `make_regularizer()`.
        run_eagerly: passed to `compile`. Default: `eager_unless_jax()`.

    Returns:
        The trainer, with its `GradientRecorder` as `trainer.optimizer`.
    """
    from keras_mtcl.trainer import MultiTaskTrainer

    trainer = MultiTaskTrainer(model, regularizer=make_regularizer() if regularizer is None else regularizer)
    if run_eagerly is None:
        run_eagerly = eager_unless_jax()
    trainer.compile(optimizer=GradientRecorder(), metrics=None, run_eagerly=run_eagerly)

    def step() -> dict:
        history = trainer.fit(images, dict(labels), batch_size=len(images), epochs=1, verbose=0).history
        return {name: values[0] for name, values in history.items()}

    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Gradients do not exist for variables")  # undrawn projectors
        losses = step()
        logged = ["loss", "contrastive_triplet_fraction"]
        logged += [f"{t.name}_loss" for t in model.task_specs] + [f"contrastive_{t.name}" for t in model.task_specs]
        for name in logged:
            assert np.isfinite(losses[name]), f"{name} after one fit step: {losses}"
        assert losses["contrastive_triplet_fraction"] > 0, f"the regularizer found no triplet: {losses}"

        recorder = trainer.optimizer
        model_variables = list(model.trainable_variables)
        regularizer_variables = list(trainer.regularizer.trainable_variables)
        covered = {id(v) for v in model_variables + regularizer_variables}
        assert all(id(v) in covered for v in trainer.trainable_variables), "trainable variables outside the model and the regularizer"
        gradients = {id(v): recorder.gradient_of(v) for v in trainer.trainable_variables}
        assert all(g is None or np.isfinite(g).all() for g in gradients.values()), "non-finite gradients"
        unreached = [v.path for v in model_variables if gradients[id(v)] is None]
        assert not unreached, f"{len(unreached)} model variables are not reached by the loss: {unreached[:20]}"
        zero = [v for v in model_variables if not _nonzero(gradients[id(v)])]
        if zero:
            previous = _revived(zero)
            recorder.reset()
            try:
                step()
                lacking = [v.path for v in zero if not _nonzero(recorder.gradient_of(v))]
            finally:
                for variable, value in zip(zero, previous):
                    variable.assign(value)
            assert not lacking, (
                f"{len(lacking)} of {len(model_variables)} model variables get no gradient, even with positive "
                f"values: {lacking[:20]}"
            )

    check_projector_gradients(trainer.regularizer, lambda v: gradients[id(v)])
    return trainer


def check_projector_gradients(regularizer, gradient_of: Callable[[Any], np.ndarray | None]) -> dict[str, tuple[str, str]]:
    """For each target task, exactly one (target, source) projector has a gradient, in every parameter.

    The regularizer draws one source per target per step; the projectors of
    the pairs not drawn must get an exact zero gradient (or none). Parameters
    shared by every pair (`projector_gradients`) must get a gradient.

    Args:
        regularizer: see `projector_gradients`.
        gradient_of: variable -> its gradient (None where the backend gave none).

    Returns:
        {target: the drawn (target, source) pair}.
    """
    parts, shared = projector_gradients(regularizer, gradient_of)
    lacking = [i for i, g in enumerate(shared) if not _nonzero(g)]
    assert not lacking, f"shared parameters {lacking} of the regularizer get no gradient"
    drawn = {}
    for target in regularizer.task_names:
        pairs = [pair for pair in parts if pair[0] == target and any(_nonzero(g) for g in parts[pair])]
        assert len(pairs) == 1, f"target {target!r}: projectors with a gradient {pairs}, expected the one drawn pair"
        partial = [i for i, g in enumerate(parts[pairs[0]]) if not _nonzero(g)]
        assert not partial, f"projector {pairs[0]}: parameters {partial} of the drawn pair get no gradient"
        drawn[target] = pairs[0]
    return drawn


def projector_gradients(regularizer, gradient_of: Callable[[Any], np.ndarray | None]) -> tuple[dict, list]:
    """The gradients of the regularizer's parameters, per ordered pair and shared.

    Works for one projector layer per pair (`regularizer.get_projector(target,
    source)`), and for a stacked bank: a variable whose first axis has one
    entry per ordered pair (in `regularizer.pairs` order if it has one, else
    target-major: each target's sources in task order) gives each pair its
    slice. Other variables of the regularizer are shared by every pair.

    Args:
        regularizer: a `CrossTaskContrastive` (or an object with `task_names`
            and `trainable_variables`).
        gradient_of: variable -> its gradient (None where the backend gave none).

    Returns:
        ({(target, source): [gradients of that pair's parameters]}, [gradients of shared parameters]).
    """
    names = list(regularizer.task_names)
    pairs = [tuple(p) for p in getattr(regularizer, "pairs", None) or [(t, s) for t in names for s in names if s != t]]
    parts: dict[tuple[str, str], list] = {pair: [] for pair in pairs}
    shared, owned = [], set()
    if hasattr(regularizer, "get_projector"):
        for pair in pairs:
            projector = regularizer.get_projector(*pair)
            for variable in getattr(projector, "trainable_variables", ()):
                parts[pair].append(gradient_of(variable))
                owned.add(id(variable))
    for variable in regularizer.trainable_variables:
        if id(variable) in owned:
            continue
        gradient = gradient_of(variable)
        if len(variable.shape) > 0 and variable.shape[0] == len(pairs):
            for i, pair in enumerate(pairs):
                parts[pair].append(None if gradient is None else gradient[i])
        else:
            shared.append(gradient)
    return parts, shared


def check_refuses_unreadable_pyramid(decoder_case: DecoderCase, tasks: Sequence | None = None) -> None:
    """The decoder's `check_pyramid` refuses what it cannot read, naming the problem (in the Keras form)."""
    from keras_mtcl.decoders import get_decoder
    from keras_mtcl.model import MultiTaskModel

    tasks = contract_tasks() if tasks is None else tasks
    decoder = get_decoder(decoder_case.name, tasks, **dict(decoder_case.options))
    with assert_raises(ValueError, r"`pyramid` must be a FeaturePyramid. Received: pyramid="):
        decoder.check_pyramid([(None, 8, 8, 16)])
    if decoder.min_levels > 1:
        fewer = decoder.min_levels - 1
        pattern = rf"reads at least {decoder.min_levels} pyramid level.*gives {fewer}. Received: strides="
        with assert_raises(ValueError, pattern):
            decoder.check_pyramid(FeaturePyramid(tuple(PyramidLevel.at(4 * 2**i, 8) for i in range(fewer))))
        # The same error from the model, before anything is built on a backbone with too few maps.
        inputs = keras.Input((None, None, 3))
        maps, x = [], inputs
        for i in range(fewer):
            x = keras.layers.Conv2D(8, 3, strides=4 if i == 0 else 2, padding="same")(x)
            maps.append(x)
        with assert_raises(ValueError, pattern):
            MultiTaskModel(keras.Model(inputs, maps), tasks, decoder=decoder_case.name, decoder_options=dict(decoder_case.options))


def check_contract(backbone_case: BackboneCase, decoder_case: DecoderCase, gradients: bool = True) -> None:
    """Every check for one (backbone, decoder) pair; `gradients=False` skips the fit step and gradients."""
    tasks = contract_tasks()
    model = build_model(backbone_case, decoder_case, tasks)
    check_pyramid(backbone_case, model.backbone)
    images, labels = contract_inputs(backbone_case, tasks)
    check_predictions(model, backbone_case, images)
    check_round_trip(model, decoder_case)
    if gradients:
        check_training_step(model, images, labels)
    check_refuses_unreadable_pyramid(decoder_case, tasks)


__all__ = [
    "BACKBONES",
    "BackboneCase",
    "DECODERS",
    "DecoderCase",
    "REGULARIZER_OPTIONS",
    "TINY_RESNET",
    "TINY_VIT",
    "assert_config_covers_constructor",
    "assert_raises",
    "assert_round_trip",
    "build_model",
    "check_contract",
    "GradientRecorder",
    "check_training_step",
    "check_predictions",
    "check_projector_gradients",
    "check_pyramid",
    "check_refuses_unreadable_pyramid",
    "check_round_trip",
    "contract_inputs",
    "contract_tasks",
    "eager_unless_jax",
    "make_regularizer",
    "missing_cases",
    "non_default_arguments",
    "projector_gradients",
    "to_numpy",
]
