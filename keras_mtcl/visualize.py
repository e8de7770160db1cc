"""Pictures of predictions and labels: one RGB uint8 image per task map, and titled panels with legends.

`colorize` draws one task map; `prediction_panel` puts an image, its
predictions and (optionally) its labels side by side, with column titles and
a legend under each column (numpy and Pillow only).

Invalid pixels (a label's ignore value, or whatever the task's kind's
validity rule rejects) are drawn as a diagonal hatch of two magenta tones,
`INVALID_COLOURS`, that no painter produces: red and blue at 255 together
never occur in the VOC palette below 256 classes (its channels stop at 224),
in gray levels, in the depth colour map or in a normal's RGB (a channel at
255 needs that component at 1, so the others near 0). Class 0 keeps its
palette colour (black).
"""

from __future__ import annotations

import dataclasses
import functools
import types
from typing import Callable, Mapping, Sequence

import numpy as np

from keras_mtcl import kinds
from keras_mtcl.tasks import TaskSpec

# The two stripes of the invalid-pixel hatch (see the module docstring).
INVALID_COLOURS = np.array([[255, 0, 255], [255, 176, 255]], "uint8")
_HATCH_STRIPE = 2  # pixels per stripe, along the anti-diagonal

# Depth colour map, far (dark) to near (bright): anchors of increasing lightness, linearly interpolated.
_DEPTH_ANCHORS = np.array(
    [[30, 18, 72], [52, 66, 142], [34, 128, 142], [72, 180, 98], [244, 226, 64]], "float64"
)

_BACKGROUND = (255, 255, 255)
_TEXT = (0, 0, 0)
_EMPTY_TILE = (236, 236, 236)  # a tile with nothing to show (no label)
_OUTLINE = (80, 80, 80)  # around swatches and colour bars; not a VOC colour below 256 classes
_LEGEND_LINES = 3


def class_palette(num_classes: int) -> np.ndarray:
    """(num_classes, 3) uint8 colours, distinct for neighbouring ids (PASCAL VOC bit pattern; class 0 black)."""
    palette = np.zeros((num_classes, 3), "uint8")
    for index in range(num_classes):
        value, colour = index, [0, 0, 0]
        for shift in range(7, -1, -1):
            for channel in range(3):
                colour[channel] |= ((value >> channel) & 1) << shift
            value >>= 3
        palette[index] = colour
    return palette


def invalid_hatch(height: int, width: int) -> np.ndarray:
    """(height, width, 3) uint8: the hatch drawn on invalid pixels, anchored at the picture's top left."""
    rows, columns = np.indices((height, width))
    return INVALID_COLOURS[((rows + columns) // _HATCH_STRIPE) % 2]


@dataclasses.dataclass(frozen=True)
class Painting:
    """One task map drawn, with what its legend needs.

    Attributes:
        picture: (H, W, 3) uint8; `paint` hatches the invalid pixels.
        valid: (H, W) bool, the pixels drawn from values.
        ids: (H, W) int class ids of a class map (-1 where invalid), else None.
        value_range: (low, high) values, in the map's units, at the two ends
            of a continuous colour scale (probabilities: (0, 1)), else None.
        unit: unit of `value_range` for the legend (depth: "m").
        note: a short legend text: the scale's name under a colour bar, or
            the whole legend of maps without ids or scale.
    """

    picture: np.ndarray
    valid: np.ndarray | None = None
    ids: np.ndarray | None = None
    value_range: tuple[float, float] | None = None
    unit: str = ""
    note: str | None = None


def _gray(values: np.ndarray) -> np.ndarray:
    return np.repeat((np.clip(values, 0.0, 1.0) * 255).round().astype("uint8")[..., None], 3, axis=-1)


def _depth_colours(nearness: np.ndarray) -> np.ndarray:
    """(...) nearness in [0, 1] (0 far, 1 near) -> (..., 3) uint8 along `_DEPTH_ANCHORS`."""
    position = np.clip(nearness, 0.0, 1.0) * (len(_DEPTH_ANCHORS) - 1)
    index = np.minimum(position.astype(int), len(_DEPTH_ANCHORS) - 2)
    fraction = (position - index)[..., None]
    colours = _DEPTH_ANCHORS[index] * (1.0 - fraction) + _DEPTH_ANCHORS[index + 1] * fraction
    return colours.round().astype("uint8")


def _paint_classes(task: TaskSpec, values: np.ndarray, is_label: bool, valid: np.ndarray, value_range=None) -> Painting:
    ids = values[..., 0] if is_label else values.argmax(-1)
    ids = np.where(valid, np.clip(np.nan_to_num(ids), 0, task.channels - 1), -1).astype(int)
    return Painting(class_palette(task.channels)[np.maximum(ids, 0)], ids=ids)


def _paint_binary(task: TaskSpec, values: np.ndarray, is_label: bool, valid: np.ndarray, value_range=None) -> Painting:
    # Labels (and legend ramps) are probabilities already; predictions are logits.
    probability = values[..., 0] if is_label else 1.0 / (1.0 + np.exp(-values[..., 0]))
    return Painting(_gray(probability), value_range=(0.0, 1.0), note="probability")


def _paint_depth(task: TaskSpec, values: np.ndarray, is_label: bool, valid: np.ndarray, value_range=None) -> Painting:
    depth = values[..., 0]
    if value_range is None:
        if not valid.any():
            return Painting(np.zeros(depth.shape + (3,), "uint8"))
        # The 2nd to 98th percentile: a few outliers do not flatten the rest.
        value_range = tuple(float(v) for v in np.percentile(depth[valid], [2, 98]))
    low, high = value_range
    nearness = 1.0 - (np.where(valid, depth, low) - low) / max(high - low, 1e-6)
    return Painting(_depth_colours(nearness), value_range=(low, high), unit="m")


def _paint_normals(task: TaskSpec, values: np.ndarray, is_label: bool, valid: np.ndarray, value_range=None) -> Painting:
    # Unit vectors in [-1, 1] mapped to RGB in [0, 255].
    values = np.where(valid[..., None], values, 0.0)
    unit = values / np.maximum(np.linalg.norm(values, axis=-1, keepdims=True), 1e-12)
    return Painting(((unit + 1.0) * 127.5).round().clip(0, 255).astype("uint8"), note="x, y, z as R, G, B")


# How each label kind is drawn: {kind: painter(task, values, is_label, valid, value_range=None) -> Painting}.
# `valid` marks the pixels the kind's validity rule keeps (all of a class or
# binary prediction); `paint` hatches the others afterwards. A painter with a
# continuous scale reports it in `Painting.value_range` and draws the given
# `value_range` instead of its own when one is passed (the panel's legend bar
# is the painter run on a ramp of values). Adding a kind means adding its
# painter (a test checks that every kind has one).
PAINTERS: Mapping[kinds.LabelKind, Callable[..., Painting]] = types.MappingProxyType(
    {
        kinds.CLASSES: _paint_classes,
        kinds.BINARY: _paint_binary,
        kinds.DEPTH: _paint_depth,
        kinds.NORMALS: _paint_normals,
    }
)


def paint(
    task: TaskSpec,
    values: np.ndarray,
    is_label: bool = False,
    value_range: tuple[float, float] | None = None,
) -> Painting:
    """One task map drawn by its kind's painter, invalid pixels hatched; see `colorize`.

    Args:
        task: the task's spec.
        values: a prediction (H, W, C) or, if `is_label`, a label (H, W, 1 or 3).
        is_label: whether `values` is a label in the label conventions.
        value_range: the (low, high) values at the ends of a continuous
            colour scale (depth, in metres); None: the painter's own (depth:
            the 2nd and 98th percentile of the valid values).

    Returns:
        A `Painting`: the (H, W, 3) uint8 picture, the (H, W) validity and
        what the legend needs (class ids, scale range).
    """
    values = np.asarray(values, "float32")
    if is_label or not task.label_kind.discrete:
        valid = np.asarray(task.valid_mask(values, xp=np), bool)
    else:
        valid = np.ones(values.shape[:-1], bool)
    painting = PAINTERS[task.label_kind](task, values, is_label, valid, value_range)
    picture = painting.picture.copy()
    if not valid.all():
        picture[~valid] = invalid_hatch(*valid.shape)[~valid]
    return dataclasses.replace(painting, picture=picture, valid=valid)


def colorize(task: TaskSpec, values: np.ndarray, is_label: bool = False) -> np.ndarray:
    """One task map as an (H, W, 3) uint8 picture; invalid pixels are hatched (`invalid_hatch`).

    Classes: the VOC palette (`class_palette`, class 0 black); binary: gray
    levels of the probability (0 black, 1 white); depth: a dark-blue (far)
    to yellow (near) colour map over the 2nd to 98th percentile of the valid
    depths; normals: (x, y, z) in [-1, 1] as RGB. Invalid pixels are those
    of the task's kind's validity rule (`TaskSpec.valid_mask`): in labels,
    and in predictions of continuous kinds (depth, normals), which are in
    label units; a logit map (classes, binary) has none. They are drawn in
    `INVALID_COLOURS`, which no painter produces.

    Args:
        task: the task's spec.
        values: a prediction (H, W, C) as the model returns it (logits,
            metres, vectors), or a label (H, W, 1) / (H, W, 3) if `is_label`.
        is_label: whether `values` is a label in the label conventions.
    """
    return paint(task, values, is_label).picture


# ----------------------------------------------------------------------------- panels


@functools.lru_cache(maxsize=8)
def _font(size: int):
    from PIL import ImageFont

    # Pillow's built-in font (no file, no download); scalable where Pillow has FreeType.
    return ImageFont.load_default(size=size)


def _text_width(text: str, font) -> float:
    return font.getlength(text) if text else 0.0


def _fit(text: str, font, width: float) -> str:
    """`text`, cut and ended with an ellipsis where it is wider than `width` pixels ("" where nothing fits)."""
    if _text_width(text, font) <= width:
        return text
    for end in range(len(text) - 1, 0, -1):
        cut = text[:end] + "\u2026"
        if _text_width(cut, font) <= width:
            return cut
    return ""


@dataclasses.dataclass(frozen=True)
class PanelLayout:
    """Where the parts of a `prediction_panel` lie, in pixels.

    The panel is a title strip, `rows` rows of tiles (predictions, then
    labels) and a legend strip; `columns` = 1 + tasks columns of `tile`-sized
    tiles, `gap` pixels apart:

        height = title_height + rows * H + (rows - 1) * gap + legend_height
        width = columns * W + (columns - 1) * gap

    Attributes:
        tile: (H, W) of the image and of every task map.
        rows: 1 (predictions) or 2 (predictions and labels).
        columns: 1 + the number of tasks.
        font_size: pixel size of the titles and legends.
        line_height: pixel height of one line of text.
        pad: margin around text and legends.
        gap: space between tiles.
        title_height: height of the title strip: `line_height + pad`.
        legend_height: height of the legend strip: `3 * line_height + 2 * pad`.
    """

    tile: tuple[int, int]
    rows: int
    columns: int
    font_size: int
    line_height: int
    pad: int
    gap: int
    title_height: int
    legend_height: int

    @property
    def shape(self) -> tuple[int, int, int]:
        """(height, width, 3) of the panel."""
        height, width = self.tile
        return (
            self.title_height + self.rows * height + (self.rows - 1) * self.gap + self.legend_height,
            self.columns * width + (self.columns - 1) * self.gap,
            3,
        )

    def column_left(self, column: int) -> int:
        """x of the left edge of column `column` (0: the image)."""
        return column * (self.tile[1] + self.gap)

    def row_top(self, row: int) -> int:
        """y of the top edge of tile row `row` (0: predictions, 1: labels)."""
        return self.title_height + row * (self.tile[0] + self.gap)

    @property
    def legend_top(self) -> int:
        """y of the top edge of the legend strip."""
        return self.row_top(self.rows) - self.gap


def panel_layout(height: int, width: int, num_tasks: int, rows: int = 1, font_size: int | None = None) -> PanelLayout:
    """The `PanelLayout` of a panel of (height, width) tiles.

    Args:
        height, width: the image's size.
        num_tasks: task columns after the image.
        rows: 1 (predictions) or 2 (predictions and labels).
        font_size: text size in pixels; default `max(11, min(height, width) // 20)`,
            readable on small pictures and growing with large ones.
    """
    size = max(11, min(height, width) // 20) if font_size is None else int(font_size)
    font = _font(size)
    # Pillow without FreeType gives a fixed bitmap font, which has no metrics: measure a tall line.
    ascent, descent = font.getmetrics() if hasattr(font, "getmetrics") else (font.getbbox("Ag")[3], 0)
    line = ascent + descent + 2
    pad = max(2, size // 4)
    return PanelLayout(
        tile=(int(height), int(width)),
        rows=int(rows),
        columns=1 + int(num_tasks),
        font_size=size,
        line_height=line,
        pad=pad,
        gap=max(2, size // 5),
        title_height=line + pad,
        legend_height=_LEGEND_LINES * line + 2 * pad,
    )


def _centred_text(draw, box: tuple[int, int, int, int], text: str, font, pad: int) -> None:
    """Draws `text` centred in box (left, top, right, bottom), cut to fit its width."""
    left, top, right, bottom = box
    text = _fit(text, font, right - left - 2 * pad)
    if text:
        draw.text(((left + right) / 2, (top + bottom) / 2), text, fill=_TEXT, font=font, anchor="mm")


def _swatch(draw, left: int, top: int, size: int, colour) -> None:
    draw.rectangle((left, top, left + size - 1, top + size - 1), fill=tuple(int(c) for c in colour), outline=_OUTLINE)


def _class_legend(
    draw, font, layout: PanelLayout, left: int, top: int, entries: list[tuple[np.ndarray, str]], max_entries: int
) -> None:
    """Swatches with texts flowed over the legend lines; those past `max_entries` or the room become "+N more"."""
    width = layout.tile[1] - 2 * layout.pad
    swatch = layout.line_height - 5
    spacing = 2 * layout.pad

    def flow(items: list[tuple[np.ndarray | None, str]]) -> list[tuple[int, int, np.ndarray | None, str]] | None:
        placed, x, line = [], 0, 0
        for colour, text in items:
            size = (swatch + 2 if colour is not None else 0) + _text_width(text, font)
            if x and x + size > width:
                x, line = 0, line + 1
            if line >= _LEGEND_LINES or size > width:
                return None
            placed.append((x, line, colour, text))
            x += int(np.ceil(size)) + spacing
        return placed

    texts = [(colour, _fit(text, font, width - swatch - 2)) for colour, text in entries]
    placed = None
    # "+N more" where one fewer swatch makes room for it, a bare "+N" in narrow columns.
    for more in (" more", ""):
        for shown in range(min(len(texts), max_entries), -1, -1):
            rest = len(texts) - shown
            placed = flow(texts[:shown] + ([(None, f"+{rest}{more}")] if rest else []))
            if placed is not None:
                break
        if placed is not None:
            break
    for x, line, colour, text in placed or []:
        y = top + layout.pad + line * layout.line_height
        x = left + layout.pad + x
        if colour is not None:
            _swatch(draw, x, y + (layout.line_height - swatch) // 2, swatch, colour)
            x += swatch + 2
        draw.text((x, y + layout.line_height / 2), text, fill=_TEXT, font=font, anchor="lm")


def _present_classes(
    task: TaskSpec, paintings: Sequence[Painting | None], names: Sequence[str] | None
) -> list[tuple[np.ndarray, str]]:
    """(colour, id or name) of the classes drawn in `paintings`, the most pixels first (ties: lower id)."""
    counts = np.zeros(task.channels, "int64")
    for painting in paintings:
        if painting is not None and painting.ids is not None:
            counts += np.bincount(painting.ids[painting.ids >= 0].ravel(), minlength=task.channels)[: task.channels]
    palette = class_palette(task.channels)
    present = [int(i) for i in np.argsort(-counts, kind="stable") if counts[i] > 0]
    return [(palette[i], str(names[i]) if names is not None and i < len(names) else str(i)) for i in present]


def _bar_legend(
    picture, draw, font, layout: PanelLayout, left: int, top: int, task: TaskSpec, painting: Painting
) -> None:
    """The painter's colours from the low to the high end of its scale, the values at the ends below."""
    from PIL import Image

    low, high = painting.value_range
    x0, x1 = left + layout.pad, left + layout.tile[1] - layout.pad - 1
    y0 = top + layout.pad + 2
    y1 = y0 + layout.line_height - 4
    if x1 - x0 < 3:
        return
    # The same painter on a ramp of values: the bar shows exactly the colours of the map.
    ramp = np.linspace(low, high, x1 - x0 - 1, dtype="float64")[None, :, None]
    ramp = np.repeat(ramp, task.label_channels, axis=-1)
    valid = np.ones(ramp.shape[:-1], bool)
    colours = PAINTERS[task.label_kind](task, ramp, True, valid, (low, high)).picture[0]
    draw.rectangle((x0, y0, x1, y1), outline=_OUTLINE)
    picture.paste(Image.fromarray(np.repeat(colours[None], y1 - y0 - 1, axis=0)), (x0 + 1, y0 + 1))
    unit = f" {painting.unit}" if painting.unit else ""
    text_y = y1 + 1 + layout.line_height / 2
    half = (x1 - x0) / 2
    low_text = _fit(f"{round(low, 2):g}{unit}", font, half)
    high_text = _fit(f"{round(high, 2):g}{unit}", font, half)
    if low_text:
        draw.text((x0, text_y), low_text, fill=_TEXT, font=font, anchor="lm")
    if high_text:
        draw.text((x1, text_y), high_text, fill=_TEXT, font=font, anchor="rm")
    # The scale's name between the end values, where it fits.
    room = x1 - x0 - _text_width(low_text, font) - _text_width(high_text, font) - 4 * layout.pad
    if painting.note and _text_width(painting.note, font) <= room:
        draw.text(((x0 + x1) / 2, text_y), painting.note, fill=_TEXT, font=font, anchor="mm")


def prediction_panel(
    image: np.ndarray,
    tasks: list[TaskSpec],
    predictions: Mapping[str, np.ndarray],
    labels: Mapping[str, np.ndarray] | None = None,
    class_names: Mapping[str, Sequence[str]] | None = None,
    font_size: int | None = None,
    max_legend_classes: int = 12,
) -> np.ndarray:
    """A titled grid picture: the image, then one column per task; predictions on top, labels below, legends under.

    Layout (`panel_layout` gives every size and position):

    - a title strip: "image", then each task's name (cut with an ellipsis
      where wider than the column);
    - the prediction row: the image, then `colorize` of each prediction;
    - with `labels`, the label row: a tile reading "labels", then each
      task's label (a gray tile reading "no label" for a task without one);
    - a legend strip under each column: the invalid-pixel hatch under the
      image (when a tile has invalid pixels); class tasks: a swatch per class
      present in the prediction or the label, the most frequent first, at
      most `max_legend_classes` and as many as fit in three lines, the others
      counted as "+N more"; tasks with a colour scale (binary: probability 0
      to 1; depth: metres) a bar of the scale's colours with the values at
      its ends; normals a note.

    Depth prediction and label share the label's scale (2nd to 98th
    percentile of its valid depths; the prediction's own without a label),
    so equal colours mean equal depths.

    Args:
        image: (H, W, 3) uint8 RGB.
        tasks: the tasks, one column each, in order.
        predictions: {task: (H, W, C)} raw model outputs for this image.
        labels: optional {task: (H, W, 1 or 3)} labels for a second row.
        class_names: optional {task: names by class id} for class legends;
            ids are shown for tasks without names.
        font_size: text size in pixels; default from the image size
            (`panel_layout`).
        max_legend_classes: most class swatches in one legend.

    Returns:
        (height, width, 3) uint8 with, for T tasks, rows = 1 + (labels given)
        and the `panel_layout(H, W, T, rows, font_size)` sizes:
        height = title_height + rows * H + (rows - 1) * gap + legend_height,
        width = (1 + T) * W + T * gap.
    """
    from PIL import Image, ImageDraw

    image = np.asarray(image, "uint8")
    height, width = image.shape[:2]
    rows = 1 if labels is None else 2
    layout = panel_layout(height, width, len(tasks), rows, font_size)
    font = _font(layout.font_size)
    class_names = class_names or {}

    # Paint first: the label's depth scale is the prediction's too.
    columns = []
    for task in tasks:
        label = None
        if labels is not None and task.name in labels:
            label = paint(task, labels[task.name], is_label=True)
        scale = label.value_range if label is not None and label.valid.any() else None
        columns.append((paint(task, predictions[task.name], value_range=scale), label))

    canvas = np.empty(layout.shape, "uint8")
    canvas[:] = _BACKGROUND
    for column, (top_tile, label) in enumerate([(image, None)] + [(p.picture, lab) for p, lab in columns]):
        left = layout.column_left(column)
        canvas[layout.row_top(0) : layout.row_top(0) + height, left : left + width] = top_tile
        if rows == 2:
            top = layout.row_top(1)
            canvas[top : top + height, left : left + width] = _EMPTY_TILE if label is None else label.picture
    picture = Image.fromarray(canvas)
    draw = ImageDraw.Draw(picture)

    titles = ["image"] + [task.name for task in tasks]
    for column, title in enumerate(titles):
        left = layout.column_left(column)
        _centred_text(draw, (left, 0, left + width, layout.title_height), title, font, layout.pad)
    if rows == 2:
        top = layout.row_top(1)
        for column in range(len(titles)):
            if column == 0 or columns[column - 1][1] is None:
                left = layout.column_left(column)
                text = "labels" if column == 0 else "no label"
                _centred_text(draw, (left, top, left + width, top + height), text, font, layout.pad)

    legend_top = layout.legend_top
    paintings = [p for pair in columns for p in pair if p is not None]
    if any(not p.valid.all() for p in paintings):
        swatch = layout.line_height - 5
        x, y = layout.pad, legend_top + layout.pad + (layout.line_height - swatch) // 2
        text = _fit("invalid", font, width - 2 * layout.pad - swatch - 2)
        if text:
            draw.rectangle((x, y, x + swatch - 1, y + swatch - 1), outline=_OUTLINE)
            picture.paste(Image.fromarray(invalid_hatch(swatch - 2, swatch - 2)), (x + 1, y + 1))
            draw.text((x + swatch + 2, y + swatch / 2), text, fill=_TEXT, font=font, anchor="lm")
    for column, (task, (prediction, label)) in enumerate(zip(tasks, columns), start=1):
        left = layout.column_left(column)
        if prediction.ids is not None:
            entries = _present_classes(task, [prediction, label], class_names.get(task.name))
            _class_legend(draw, font, layout, left, legend_top, entries, max_legend_classes)
        elif prediction.value_range is not None:
            _bar_legend(picture, draw, font, layout, left, legend_top, task, prediction)
        elif prediction.note:
            text = _fit(prediction.note, font, width - 2 * layout.pad)
            if text:
                y = legend_top + layout.pad + layout.line_height / 2
                draw.text((left + layout.pad, y), text, fill=_TEXT, font=font, anchor="lm")
    return np.array(picture)
