"""keras_mtcl.testing.labels: random labels in the package's conventions, drawn by each task's kind."""


import numpy as np
import pytest
import tensorflow as tf

from keras_mtcl import kinds, tasks
from keras_mtcl.data import pipeline
from keras_mtcl.testing import labels as L

pytestmark = pytest.mark.backend_independent

SPECS = [
    tasks.semseg(num_classes=5),
    tasks.depth(),
    tasks.normals(),
    tasks.edge(),
    tasks.TaskSpec("parts", "classes", channels=3, ignore_value=9),
]


def test_every_kind_can_draw_random_labels():
    assert all(kind.random is not None for kind in kinds.KINDS.values())


def test_shapes_dtypes_and_validity():
    labels = L.random_labels(SPECS, 3, 10, 14, seed=1, invalid_fraction=0.25)
    assert list(labels) == [s.name for s in SPECS]
    valid = {}
    for spec in SPECS:
        label = labels[spec.name]
        assert label.shape == (3, 10, 14, spec.label_channels), spec.name
        assert label.dtype == np.dtype(spec.label_kind.label_dtype), spec.name
        valid[spec.name] = spec.valid_mask(label, xp=np)
        assert 0.1 < valid[spec.name].mean() < 0.9, spec.name  # some invalid pixels, most valid
        np.testing.assert_array_equal(label[~valid[spec.name]], spec.label_kind.pad_value(spec.ignore_value))
        value_range = spec.label_kind.value_range(spec.channels)
        if value_range is not None:  # every id of the range appears
            ids = set(np.unique(label[valid[spec.name]]).tolist())
            assert ids == set(range(value_range[0], value_range[1] + 1)), spec.name
    np.testing.assert_allclose(np.linalg.norm(labels["normals"][valid["normals"]], axis=-1), 1.0, atol=1e-6)
    depth = labels["depth"][..., 0][valid["depth"]]
    assert 0.5 <= depth.min() and depth.max() < 5.0


def test_no_invalid_pixels_and_reproducible():
    labels = L.random_labels(SPECS, 2, 6, 7, seed=3, invalid_fraction=0.0)
    for spec in SPECS:
        assert spec.valid_mask(labels[spec.name], xp=np).all(), spec.name
    again = L.random_labels(SPECS, 2, 6, 7, seed=3, invalid_fraction=0.0)
    other = L.random_labels(SPECS, 2, 6, 7, seed=4, invalid_fraction=0.0)
    for spec in SPECS:
        np.testing.assert_array_equal(labels[spec.name], again[spec.name])
    assert not np.array_equal(labels["depth"], other["depth"])


def test_blocks_are_constant_and_cut_to_size():
    labels = L.random_labels(SPECS, 2, 10, 13, seed=0, block=4)
    for spec in SPECS:
        label = labels[spec.name]
        assert label.shape[:3] == (2, 10, 13)
        np.testing.assert_array_equal(label, np.repeat(np.repeat(label[:, ::4, ::4], 4, 1), 4, 2)[:, :10, :13])


def test_labels_pass_the_pipeline_checks():
    labels = L.random_labels(SPECS, 2, 8, 12, seed=5)
    for i in range(2):
        example = {"image": tf.zeros((8, 12, 3), tf.uint8), "id": tf.constant(f"x{i}")}
        example.update({name: tf.constant(label[i]) for name, label in labels.items()})
        pipeline.check_element_spec({k: tf.TensorSpec.from_tensor(v) for k, v in example.items()}, SPECS)
        out = pipeline.check_example(example, SPECS)
        for spec in SPECS:
            np.testing.assert_array_equal(out[spec.name].numpy(), labels[spec.name][i])


@pytest.mark.parametrize("options", [{"batch": -1}, {"invalid_fraction": 1.5}, {"block": 0}])
def test_invalid_arguments(options):
    arguments = {"batch": 1, "height": 2, "width": 2, **options}
    with pytest.raises(ValueError, match="Received:"):
        L.random_labels(SPECS, **arguments)
