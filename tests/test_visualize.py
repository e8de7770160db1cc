import numpy as np
import pytest

from keras_mtcl import tasks, visualize


pytestmark = pytest.mark.backend_independent

WHITE = [255, 255, 255]


def is_invalid_colour(pixels: np.ndarray) -> np.ndarray:
    """(...) bool: pixels in one of the hatch's two colours."""
    return (pixels[..., None, :] == visualize.INVALID_COLOURS).all(-1).any(-1)


def colours_in(region: np.ndarray) -> set[tuple[int, ...]]:
    return {tuple(c) for c in region.reshape(-1, 3).tolist()}


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
    assert picture[0, 0].tolist() == [128, 0, 0] and is_invalid_colour(picture[0, 1])
    normals = visualize.colorize(tasks.normals(), np.array([[[0.0, 0.0, 2.0], [0.0, 0.0, 0.0]]]))
    assert normals[0, 0].tolist() == [128, 128, 255] and is_invalid_colour(normals[0, 1])
    edge = visualize.colorize(tasks.edge(), np.array([[[0.0], [100.0]]]))
    assert edge[0, 0].tolist() == [128, 128, 128] and edge[0, 1].tolist() == WHITE
    depth = visualize.colorize(tasks.depth(), np.array([[[1.0], [0.0], [5.0]]]), is_label=True)
    # Near is bright: the 1 m pixel is lighter than the 5 m one.
    assert depth[0, 0].astype(int).sum() > depth[0, 2].astype(int).sum() and is_invalid_colour(depth[0, 1])


def test_class_zero_is_not_drawn_like_ignored_pixels():
    semseg = tasks.semseg(num_classes=3)
    label = np.zeros((6, 6, 1), "int32")
    label[:, 3:] = 255
    picture = visualize.colorize(semseg, label, is_label=True)
    assert (picture[:, :3] == 0).all()  # class 0 keeps its palette colour
    assert is_invalid_colour(picture[:, 3:]).all()
    # A hatch of both colours, so a region of ignored pixels reads as "no label" at a glance.
    assert colours_in(picture[:, 3:]) == {tuple(c) for c in visualize.INVALID_COLOURS.tolist()}


def test_the_invalid_colours_are_no_painter_colour():
    # The VOC palette up to 256 classes, every gray level, the depth map and the normals' RGB.
    rng = np.random.default_rng(0)
    palette = visualize.class_palette(256)
    assert not is_invalid_colour(palette).any()
    gray = visualize.colorize(tasks.edge(), np.linspace(0, 1, 256).reshape(1, 256, 1), is_label=True)
    depth = visualize.colorize(tasks.depth(), np.linspace(0.1, 10.0, 1000).reshape(1, 1000, 1))
    vectors = rng.normal(size=(100, 100, 3))
    vectors[0, :6] = np.concatenate([np.eye(3), -np.eye(3)])
    normals = visualize.colorize(tasks.normals(), vectors)
    for picture in (gray, depth, normals):
        assert not is_invalid_colour(picture).any()


def test_invalid_labels_are_hatched_by_the_kind_rule():
    # Class 5 of 3 classes, binary 2 and a NaN depth are no labels: hatched, like the ignore value.
    semseg = visualize.colorize(tasks.semseg(num_classes=3), np.array([[[1], [5], [255]]]), is_label=True)
    assert semseg[0, 0].tolist() == [128, 0, 0] and is_invalid_colour(semseg[0, 1:]).all()
    edge = visualize.colorize(tasks.edge(), np.array([[[1], [2], [255]]]), is_label=True)
    assert edge[0, 0].tolist() == WHITE and is_invalid_colour(edge[0, 1:]).all()
    depth = visualize.colorize(tasks.depth(), np.array([[[1.0], [np.nan], [np.inf], [2.0]]]), is_label=True)
    assert depth[0, 0].astype(int).sum() > depth[0, 3].astype(int).sum() and is_invalid_colour(depth[0, 1:3]).all()
    # Class and binary predictions are logits: every pixel is drawn.
    assert visualize.colorize(tasks.edge(), np.array([[[255.0]]]))[0, 0].tolist() == WHITE


def test_depth_painting_reports_its_scale():
    depth = np.linspace(1.0, 5.0, 100).reshape(10, 10, 1)
    painting = visualize.paint(tasks.depth(), depth)
    np.testing.assert_allclose(painting.value_range, np.percentile(depth, [2, 98]))
    assert painting.unit == "m" and painting.valid.all()
    # A given scale is used instead: everything beyond its far end has the far colour.
    fixed = visualize.paint(tasks.depth(), depth, value_range=(1.0, 2.0))
    assert fixed.value_range == (1.0, 2.0)
    far = fixed.picture[depth[..., 0] >= 2.0]
    assert (far == far[0]).all() and not (fixed.picture[0, 0] == far[0]).all()


def test_prediction_panel_layout():
    specs = [tasks.depth(), tasks.edge()]
    image = np.full((4, 5, 3), 7, "uint8")
    predictions = {"depth": np.ones((4, 5, 1)), "edge": np.zeros((4, 5, 1))}
    labels = {"depth": np.ones((4, 5, 1))}
    panel = visualize.prediction_panel(image, specs, predictions, labels)
    layout = visualize.panel_layout(4, 5, num_tasks=2, rows=2)
    height = layout.title_height + 2 * 4 + layout.gap + layout.legend_height
    assert panel.shape == layout.shape == (height, 3 * 5 + 2 * layout.gap, 3) and panel.dtype == np.uint8
    assert layout.title_height >= layout.font_size and layout.legend_height >= 3 * layout.font_size
    top, left = layout.row_top(0), layout.column_left(0)
    assert (panel[top : top + 4, left : left + 5] == 7).all()
    # Predictions in the first row, labels in the second, column by column.
    depth = visualize.colorize(specs[0], predictions["depth"])
    assert (panel[top : top + 4, layout.column_left(1) : layout.column_left(1) + 5] == depth).all()
    bottom, edge_left = layout.row_top(1), layout.column_left(2)
    no_label = panel[bottom : bottom + 4, edge_left : edge_left + 5]
    assert (no_label == no_label[0, 0]).all() and no_label[0, 0].tolist() != WHITE  # an empty tile


def test_panel_titles_stand_above_every_column():
    specs = [tasks.semseg(num_classes=5), tasks.depth(), tasks.normals()]
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (96, 128, 3), dtype=np.uint8)
    predictions = {
        "semseg": rng.normal(size=(96, 128, 5)),
        "depth": rng.uniform(1, 3, (96, 128, 1)),
        "normals": rng.normal(size=(96, 128, 3)),
    }
    panel = visualize.prediction_panel(image, specs, predictions)
    layout = visualize.panel_layout(96, 128, 3)
    assert panel.shape[0] > 96 + layout.title_height  # a title strip and a legend strip
    for column in range(4):
        left = layout.column_left(column)
        strip = panel[: layout.title_height, left : left + 128]
        assert (strip != 255).any(-1).sum() > 20, f"no title above column {column}"
    # A task name wider than its column is cut, not drawn over the neighbours.
    narrow = predictions["depth"][:, :40]
    long = tasks.TaskSpec("a_very_long_task_name_that_cannot_fit_in_one_column", "depth")
    panel_long = visualize.prediction_panel(image[:, :40], [long], {long.name: narrow})
    panel_short = visualize.prediction_panel(image[:, :40], [tasks.depth()], {"depth": narrow})
    assert panel_long.shape == panel_short.shape
    title_height = visualize.panel_layout(96, 40, 1).title_height
    np.testing.assert_array_equal(panel_long[:title_height, :40], panel_short[:title_height, :40])
    assert not (panel_long[:title_height, 40:] == panel_short[:title_height, 40:]).all()


def test_class_legend_shows_the_most_frequent_classes_present():
    spec = tasks.semseg(num_classes=40)
    palette = visualize.class_palette(40)
    # Classes 2..20 on (21 - k) * 20 pixels each (class 2 most, 20 least), class 1 on the rest (the most).
    ids = np.concatenate([np.full((21 - k) * 20, k) for k in range(2, 21)])
    ids = np.concatenate([ids, np.ones(96 * 128 - len(ids), int)]).reshape(96, 128)
    logits = np.eye(40)[ids] * 5.0
    image = np.full((96, 128, 3), 200, "uint8")
    panel = visualize.prediction_panel(image, [spec], {"semseg": logits}, max_legend_classes=5)
    layout = visualize.panel_layout(96, 128, 1)
    legend = panel[layout.legend_top :, layout.column_left(1) : layout.column_left(1) + 128]
    shown = colours_in(legend)
    order = np.argsort(-np.bincount(ids.ravel(), minlength=40), kind="stable")
    assert order[:5].tolist() == [1, 2, 3, 4, 5]
    for present in order[:5]:
        assert tuple(palette[present].tolist()) in shown, f"class {present} not in the legend"
    # Capped at 5: the less frequent classes (6..20) and the absent ones are left out. Gray colours are
    # not checked: text anti-aliasing draws grays.
    left_out = [k for k in range(40) if k not in order[:5] and len(set(palette[k].tolist())) > 1]
    assert 6 in left_out and 25 in left_out
    for absent in left_out:
        assert tuple(palette[absent].tolist()) not in shown, f"class {absent} in the legend"


def test_depth_bar_spans_the_painters_range():
    spec = tasks.depth()
    depth = np.linspace(1.0, 5.0, 96 * 128).reshape(96, 128, 1)
    image = np.zeros((96, 128, 3), "uint8")
    panel = visualize.prediction_panel(image, [spec], {"depth": depth})
    layout = visualize.panel_layout(96, 128, 1)
    legend = panel[layout.legend_top :, layout.column_left(1) : layout.column_left(1) + 128]
    picture = visualize.colorize(spec, depth)
    # The nearest and farthest depths lie beyond the 2nd / 98th percentiles: the bar's end colours.
    near, far = picture[0, 0], picture[-1, -1]
    colourful = (legend.max(-1).astype(int) - legend.min(-1)) > 30
    row = int(np.argmax(colourful.sum(1)))
    columns = np.flatnonzero(colourful[row])
    assert len(columns) > 100  # nearly the column's width
    assert legend[row, columns[0]].tolist() == near.tolist() and legend[row, columns[-1]].tolist() == far.tolist()
    # Every colour of the map is on the bar (the bar is the painter on a ramp).
    middle = picture[48, 64]
    assert np.abs(legend[row, columns].astype(int) - middle).max(-1).min() <= 8


def test_panel_depth_label_and_prediction_share_the_labels_scale():
    spec = tasks.depth()
    label = np.linspace(1.0, 3.0, 20 * 30).reshape(20, 30, 1)
    prediction = label * 2.0
    panel = visualize.prediction_panel(np.zeros((20, 30, 3), "uint8"), [spec], {"depth": prediction}, {"depth": label})
    layout = visualize.panel_layout(20, 30, 1, rows=2)
    left = layout.column_left(1)
    predicted = panel[layout.row_top(0) : layout.row_top(0) + 20, left : left + 30]
    expected = visualize.paint(spec, prediction, value_range=visualize.paint(spec, label, is_label=True).value_range)
    np.testing.assert_array_equal(predicted, expected.picture)


def test_class_names_and_invalid_marker_in_the_legend():
    spec = tasks.semseg(num_classes=3)
    label = np.zeros((96, 128, 1), "int32")
    label[:10] = 255
    logits = np.zeros((96, 128, 3))
    image = np.zeros((96, 128, 3), "uint8")
    names = {"semseg": ["wall", "floor", "sky"]}
    with_names = visualize.prediction_panel(image, [spec], {"semseg": logits}, {"semseg": label}, names)
    with_ids = visualize.prediction_panel(image, [spec], {"semseg": logits}, {"semseg": label})
    layout = visualize.panel_layout(96, 128, 1, rows=2)
    top = layout.legend_top
    # Names are wider than ids; the hatch swatch under the image says that some pixels are invalid.
    assert not (with_names[top:, layout.column_left(1) :] == with_ids[top:, layout.column_left(1) :]).all()
    assert is_invalid_colour(with_names[top:, :128]).any()
    clean = visualize.prediction_panel(image, [spec], {"semseg": logits}, {"semseg": np.zeros_like(label)})
    assert not is_invalid_colour(clean[top:, :128]).any()
