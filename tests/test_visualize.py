import numpy as np
import pytest

from keras_mtcl import tasks, visualize


pytestmark = pytest.mark.backend_independent


def test_class_palette_is_distinct_and_starts_black():
    palette = visualize.class_palette(21)
    assert palette[0].tolist() == [0, 0, 0]
    assert palette[1].tolist() == [128, 0, 0] and palette[2].tolist() == [0, 128, 0]
    assert len({tuple(c) for c in palette}) == 21


def test_colorize_each_kind_and_ignored_pixels():
    semseg = tasks.semseg(num_classes=3)
    logits = np.zeros((1, 2, 3), "float32")
    logits[0, 0, 2] = 5.0  # class 2: VOC colour (0, 128, 0)
    assert visualize.colorize(semseg, logits)[0, 0].tolist() == [0, 128, 0]
    label = np.array([[[1], [255]]], "float32")
    picture = visualize.colorize(semseg, label, is_label=True)
    assert picture[0, 0].tolist() == [128, 0, 0] and picture[0, 1].tolist() == [0, 0, 0]
    normals = visualize.colorize(tasks.normals(), np.array([[[0.0, 0.0, 2.0], [0.0, 0.0, 0.0]]]))
    assert normals[0, 0].tolist() == [128, 128, 255] and normals[0, 1].tolist() == [0, 0, 0]
    edge = visualize.colorize(tasks.edge(), np.array([[[0.0], [100.0]]]))
    assert edge[0, 0].tolist() == [128, 128, 128] and edge[0, 1].tolist() == [255, 255, 255]
    depth = visualize.colorize(tasks.depth(), np.array([[[1.0], [0.0], [5.0]]]), is_label=True)
    assert depth[0, 0, 0] > depth[0, 2, 0] and depth[0, 1].tolist() == [0, 0, 0]


def test_invalid_labels_are_black_by_the_kind_rule():
    # Class 5 of 3 classes, binary 2 and a NaN depth are no labels: black, like the ignore value.
    semseg = visualize.colorize(tasks.semseg(num_classes=3), np.array([[[1], [5], [255]]]), is_label=True)
    assert semseg[0, 0].tolist() == [128, 0, 0] and not semseg[0, 1:].any()
    edge = visualize.colorize(tasks.edge(), np.array([[[1], [2], [255]]]), is_label=True)
    assert edge[0, 0].tolist() == [255, 255, 255] and not edge[0, 1:].any()
    depth = visualize.colorize(tasks.depth(), np.array([[[1.0], [np.nan], [np.inf], [2.0]]]), is_label=True)
    assert depth[0, 0, 0] > depth[0, 3, 0] and not depth[0, 1:3].any()
    # Class and binary predictions are logits: every pixel is drawn.
    assert visualize.colorize(tasks.edge(), np.array([[[255.0]]]))[0, 0].tolist() == [255, 255, 255]


def test_prediction_panel_layout():
    specs = [tasks.depth(), tasks.edge()]
    image = np.full((4, 5, 3), 7, "uint8")
    predictions = {"depth": np.ones((4, 5, 1)), "edge": np.zeros((4, 5, 1))}
    labels = {"depth": np.ones((4, 5, 1))}
    panel = visualize.prediction_panel(image, specs, predictions, labels)
    assert panel.shape == (8, 15, 3) and panel.dtype == np.uint8
    assert (panel[:4, :5] == 7).all()
    assert (panel[4:, 10:] == 0).all()  # no edge label: an empty tile
