"""Train and eval tf.data pipelines: shapes, dtypes, reproducibility, padding metadata, errors."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_mtcl import losses
from keras_mtcl import tasks as T
from keras_mtcl.data import pipeline

NYUD = [T.semseg(num_classes=40), T.depth(), T.normals(), T.edge()]
CROP = (24, 32)


def _example(i, height=20, width=30, rng=None):
    rng = rng or np.random.default_rng(i)
    normals = rng.normal(size=(height, width, 3)).astype("float32")
    normals /= np.linalg.norm(normals, axis=-1, keepdims=True)
    return {
        "image": rng.integers(0, 256, (height, width, 3)).astype("uint8"),
        "id": f"img{i}",
        "semseg": rng.integers(0, 40, (height, width, 1)).astype("uint8"),
        "depth": rng.uniform(0.5, 5.0, (height, width, 1)).astype("float32"),
        "normals": normals,
        "edge": rng.integers(0, 2, (height, width, 1)).astype("uint8"),
    }


def _dataset(examples):
    return tf.data.Dataset.from_tensor_slices({k: np.stack([e[k] for e in examples]) for k in examples[0]})


def _ragged_dataset(examples):
    """Examples of different sizes, through a generator with an explicit signature."""
    signature = {"id": tf.TensorSpec((), tf.string)}
    for key, value in examples[0].items():
        if key != "id":
            signature[key] = tf.TensorSpec((None, None, value.shape[-1]), tf.as_dtype(value.dtype))
    return tf.data.Dataset.from_generator(lambda: iter(examples), output_signature=signature)


def _batches(ds):
    return [tf.nest.map_structure(np.asarray, b) for b in ds]


# ----------------------------------------------------------------------------- train


@pytest.mark.backend_independent
def test_train_batches_have_the_crop_size_and_label_dtypes():
    ds = pipeline.train_pipeline(_dataset([_example(i) for i in range(5)]), NYUD, 2, CROP, seed=0)
    batches = _batches(ds)
    assert len(batches) == 2  # 5 examples, incomplete last batch dropped
    image, labels = batches[0]
    assert image.shape == (2, 24, 32, 3) and image.dtype == np.float32
    assert list(labels) == ["semseg", "depth", "normals", "edge"]
    expected = {"semseg": (1, np.int32), "depth": (1, np.float32), "normals": (3, np.float32), "edge": (1, np.int32)}
    for name, (channels, dtype) in expected.items():
        assert labels[name].shape == (2, 24, 32, channels) and labels[name].dtype == dtype, name
    # 20x30 examples scaled by at most 2 and at least 0.5: values stay in their conventions.
    assert set(np.unique(labels["edge"])) <= {0, 1, 255}
    assert np.all((labels["semseg"] < 40) | (labels["semseg"] == 255))
    norms = np.linalg.norm(labels["normals"], axis=-1)
    assert np.all((np.abs(norms - 1) < 1e-5) | (norms == 0))


@pytest.mark.backend_independent
def test_train_pipeline_is_reproducible_with_a_seed_and_redraws_each_epoch():
    data = _dataset([_example(i) for i in range(6)])

    def run(seed):
        ds = pipeline.train_pipeline(data, NYUD, 3, CROP, seed=seed, shuffle_buffer=6)
        return _batches(ds), _batches(ds)  # two epochs

    (a1, a2), (b1, b2), (c1, _) = run(5), run(5), run(6)
    tf.nest.map_structure(np.testing.assert_array_equal, (a1, a2), (b1, b2))
    assert not np.array_equal(a1[0][0], a2[0][0])  # second epoch: new order and transforms
    assert not np.array_equal(a1[0][0], c1[0][0])  # another seed


@pytest.mark.backend_independent
def test_train_pipeline_without_shuffle_keeps_order_and_drops_other_keys():
    examples = [_example(i) for i in range(2)]
    for e in examples:
        e["extra"] = np.zeros((20, 30, 1), "float32")
    ds = pipeline.train_pipeline(_dataset(examples), NYUD[:1], 1, (20, 30), seed=1, shuffle_buffer=0,
                                 augment=pipeline.AugmentConfig.off())  # fmt: skip
    batches = _batches(ds)
    for (image, labels), example in zip(batches, examples):
        # Scale 1, crop = image size, no flip: labels come out unchanged.
        assert list(labels) == ["semseg"]
        np.testing.assert_array_equal(labels["semseg"][0], example["semseg"])
        mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
        np.testing.assert_allclose(image[0], (example["image"] / 255 - mean) / std, atol=1e-5)


# ----------------------------------------------------------------------------- eval


@pytest.mark.backend_independent
def test_eval_pads_centred_to_pad_size_and_crops_back_exactly():
    examples = [_example(i) for i in range(3)]
    batches = _batches(pipeline.eval_pipeline(_dataset(examples), NYUD, 2, pad_size=(24, 32)))
    assert [b[0].shape[0] for b in batches] == [2, 1]  # eval keeps the last, smaller batch
    image, labels, meta = batches[0]
    assert image.shape == (2, 24, 32, 3)
    # 20x30 in 24x32: 4 extra rows split 2/2, 2 extra columns 1/1.
    np.testing.assert_array_equal(meta["top"], [2, 2])
    np.testing.assert_array_equal(meta["left"], [1, 1])
    np.testing.assert_array_equal(meta["height"], [20, 20])
    np.testing.assert_array_equal(meta["width"], [30, 30])
    assert list(meta["id"]) == [b"img0", b"img1"]
    border = np.ones((24, 32), bool)
    border[2:22, 1:31] = False
    assert np.all(image[:, border] == 0)
    assert np.all(labels["semseg"][:, border] == 255) and np.all(labels["edge"][:, border] == 255)
    assert np.all(labels["depth"][:, border] == 0) and np.all(labels["normals"][:, border] == 0)
    for name in ("semseg", "depth", "normals", "edge"):
        for crop, example in zip(pipeline.crop_to_original(labels[name], meta), examples):
            np.testing.assert_array_equal(crop, example[name])


@pytest.mark.backend_independent
def test_eval_pad_multiple_with_mixed_sizes_records_where_each_image_lies():
    rng = np.random.default_rng(0)
    examples = [_example(0, 20, 30, rng), _example(1, 13, 20, rng)]
    batches = _batches(pipeline.eval_pipeline(_ragged_dataset(examples), NYUD, 2, pad_multiple=8))
    image, labels, meta = batches[0]
    # 20x30 -> 24x32 (top 2, left 1); 13x20 -> 16x24 (top 1, left 2), then bottom/right to 24x32.
    assert image.shape == (2, 24, 32, 3)
    np.testing.assert_array_equal(meta["top"], [2, 1])
    np.testing.assert_array_equal(meta["left"], [1, 2])
    for name in ("semseg", "depth", "normals", "edge"):
        for crop, example in zip(pipeline.crop_to_original(labels[name], meta), examples):
            np.testing.assert_array_equal(crop, example[name])
    assert np.all(labels["semseg"][1, 16:] == 255) and np.all(labels["depth"][1, :, 24:] == 0)


@pytest.mark.backend_independent
def test_eval_keeps_images_larger_than_pad_size_and_ignores_empty_parts():
    example = _example(0)
    example["human_parts"] = np.zeros((20, 30, 1), "uint8")
    tasks = [T.semseg(num_classes=40), T.human_parts()]
    image, labels, meta = _batches(pipeline.eval_pipeline(_dataset([example]), tasks, 1, pad_size=(8, 8)))[0]
    assert image.shape == (1, 20, 30, 3) and int(meta["top"][0]) == 0 and int(meta["left"][0]) == 0
    assert np.all(labels["human_parts"] == 255)  # no person: the whole map is ignored
    stripped = _batches(pipeline.strip_meta(pipeline.eval_pipeline(_dataset([example]), tasks, 1)))[0]
    assert len(stripped) == 2 and set(stripped[1]) == {"semseg", "human_parts"}


# ----------------------------------------------------------------------------- errors


@pytest.mark.backend_independent
def test_missing_task_names_the_task_and_the_fix():
    example = _example(0)
    del example["edge"]
    with pytest.raises(pipeline.ExampleFormatError, match=r"Task 'edge' has no label.*Remove 'edge' from `tasks`"):
        pipeline.train_pipeline(_dataset([example]), NYUD, 1, CROP)


@pytest.mark.backend_independent
@pytest.mark.parametrize(
    "name, value, message",
    [
        ("normals", np.zeros((20, 30, 3), "uint8"), r"'normals' \(normals\) has dtype uint8.*2 \* x / 255 - 1"),
        ("normals", np.zeros((20, 30, 1), "float32"), r"'normals' \(normals\) must have 3 channel"),
        ("semseg", np.zeros((20, 30, 1), "float32"), r"'semseg' \(classes\) has dtype float32.*integer dtype"),
        ("depth", np.zeros((20, 30), "float32"), r"'depth' must be a \(H, W, 1\) tensor.*label\[\.\.\., None\]"),
        ("image", np.zeros((20, 30, 3), "float32"), r"'image' must be a \(H, W, 3\) uint8"),
    ],
)
def test_wrong_layout_raises_example_format_error(name, value, message):
    example = _example(0)
    example[name] = value
    with pytest.raises(pipeline.ExampleFormatError, match=message + r".*Received:"):
        pipeline.eval_pipeline(_dataset([example]), NYUD, 1)


@pytest.mark.backend_independent
def test_non_dict_elements_are_refused():
    ds = tf.data.Dataset.from_tensor_slices(np.zeros((2, 4, 4, 3), "uint8"))
    with pytest.raises(pipeline.ExampleFormatError, match=r"must be dicts.*Received: element_spec="):
        pipeline.train_pipeline(ds, NYUD, 1, CROP)


def _bad_value(name, index, value):
    example = _example(0)
    example["id"] = "bad7"
    example[name] = example[name].copy()
    example[name][index] = value
    return example


@pytest.mark.backend_independent
@pytest.mark.parametrize(
    "example, message",
    [
        (_bad_value("semseg", (3, 4, 0), 40), r"`semseg` of example `bad7` has values outside 0\.\.39 .*max 40"),
        (_bad_value("edge", (0, 0, 0), 2), r"`edge` of example `bad7` has values outside 0\.\.1 .*max 2"),
        (_bad_value("depth", (1, 1, 0), np.nan), r"`depth` of example `bad7` has NaN or infinite values, or values below 0"),
        (_bad_value("depth", (1, 1, 0), -1.0), r"`depth` of example `bad7` has NaN or infinite values, or values below 0"),
        (_bad_value("normals", (2, 2, 1), np.inf), r"`normals` of example `bad7` has NaN or infinite values\. .*zero vector"),
    ],
)
def test_bad_label_values_stop_the_pipeline_naming_task_and_example(example, message):
    with pytest.raises(tf.errors.InvalidArgumentError, match=message):
        _batches(pipeline.eval_pipeline(_dataset([example]), NYUD, 1))


@pytest.mark.backend_independent
def test_bad_label_values_stop_the_train_pipeline_too():
    example = _bad_value("semseg", (0, 0, 0), 41)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"`semseg` of example `bad7` has values outside 0\.\.39"):
        _batches(pipeline.train_pipeline(_dataset([example]), NYUD, 1, CROP, seed=0))


@pytest.mark.backend_independent
def test_label_of_another_size_than_its_image_is_refused():
    example = _example(0)
    example["depth"] = np.ones((10, 30, 1), "float32")
    message = r"`depth` of example `img0` has shape \[10 30 1\] but its image is \[20 30\].*Resize the label"
    with pytest.raises(tf.errors.InvalidArgumentError, match=message):
        _batches(pipeline.eval_pipeline(_ragged_dataset([example]), NYUD, 1))


@pytest.mark.backend_independent
@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"batch_size": 0}, "batch_size"),
        ({"shuffle_buffer": -1}, "shuffle_buffer"),
        ({"seed": "a"}, "seed"),
        ({"prefetch": -5}, "prefetch"),
        ({"crop_size": (24, 0)}, "crop_size"),
        ({"augment": False}, "augment"),
        ({"augment": pipeline.AugmentConfig(ratio_task="normals")}, "ratio_task"),
    ],
)
def test_invalid_train_options_name_the_argument(kwargs, name):
    args = {"batch_size": 1, "crop_size": CROP, **kwargs}
    with pytest.raises(ValueError, match=rf"`{name}`.*Received: {name}="):
        pipeline.train_pipeline(_dataset([_example(0)]), NYUD, **args)


@pytest.mark.backend_independent
@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"batch_size": 1.5}, "batch_size"),
        ({"pad_size": (24,)}, "pad_size"),
        ({"pad_multiple": 0}, "pad_multiple"),
        ({"std": (1, 1, 0)}, "std"),
        ({"pad_values": {"sky": 1}}, "pad_values"),
    ],
)
def test_invalid_eval_options_name_the_argument(kwargs, name):
    args = {"batch_size": 1, **kwargs}
    with pytest.raises(ValueError, match=rf"`{name}`.*Received: {name}="):
        pipeline.eval_pipeline(_dataset([_example(0)]), NYUD, **args)


@pytest.mark.backend_independent
def test_crop_to_original_refuses_mismatched_meta():
    meta = {"top": [0], "left": [0], "height": [2], "width": [2]}
    message = r"`predictions` must be \(B, H, W, C\).*Received: predictions.shape=\(2, 4, 4, 1\)"
    with pytest.raises(ValueError, match=message):
        pipeline.crop_to_original(np.zeros((2, 4, 4, 1)), meta)


# ----------------------------------------------------------------------------- every backend


def test_train_batches_feed_model_fit_on_every_backend():
    tasks = [T.semseg(num_classes=40), T.depth()]
    ds = pipeline.train_pipeline(_dataset([_example(i) for i in range(4)]), tasks, 2, CROP, seed=0)
    inputs = keras.Input((24, 32, 3))
    outputs = {
        "semseg": keras.layers.Conv2D(40, 1, name="semseg")(inputs),
        "depth": keras.layers.Conv2D(1, 1, name="depth")(inputs),
    }
    model = keras.Model(inputs, outputs)
    model.compile(optimizer=keras.optimizers.SGD(0.01), loss={"semseg": losses.cross_entropy, "depth": losses.depth_l1})
    before = [np.array(w) for w in model.get_weights()]
    history = model.fit(ds, epochs=1, steps_per_epoch=1, verbose=0)
    assert math.isfinite(history.history["loss"][0]) and history.history["loss"][0] > 0
    after = model.get_weights()
    assert all(not np.allclose(b, a) for b, a in zip(before, after))  # every kernel and bias moved
