"""The options of the train augmentation (`AugmentConfig`), apart from its TensorFlow ops.

Plain Python, so a `RunConfig` (which holds one) is built and read without
importing TensorFlow; `keras_mtcl.data.augment` applies it and re-exports
every name here.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

from keras_mtcl.kinds import KINDS
from keras_mtcl.tasks import TaskSpec

SCALE_RANGE = (0.5, 2.0)
FLIP_PROBABILITY = 0.5
CAT_MAX_RATIO = 0.75
# Task checked by the class-ratio rule; skipped when a pipeline has no task of this name.
RATIO_TASK = "semseg"
CROP_TRIES = 10
BRIGHTNESS_DELTA = 32.0
CONTRAST_RANGE = (0.5, 1.5)
SATURATION_RANGE = (0.5, 1.5)
# Hue shift bound on OpenCV's 0..180 hue scale; shifts are integers in [-18, 17].
HUE_DELTA = 18
# Tasks whose crop is entirely ignored when it holds no foreground (value > 0) pixel.
EMPTY_IGNORE_TASKS = ("human_parts",)


def _pair(name, value, kind=float):
    try:
        pair = tuple(kind(v) for v in value)
    except (TypeError, ValueError):
        pair = ()
    if len(pair) != 2:
        raise ValueError(f"`{name}` must be a pair of numbers. Received: {name}={value!r}")
    return pair


def _number(name, value, rule):
    """float(value), or `ValueError` naming `name` and `rule` when it is not a number (a bool is not)."""
    if not isinstance(value, bool):
        try:
            return float(value)
        except (TypeError, ValueError):
            pass
    raise ValueError(f"`{name}` must be {rule}. Received: {name}={value!r}")


def _integer(name, value, rule):
    """int(value) for an integral number, else `ValueError` naming `name` and `rule`."""
    number = _number(name, value, rule)
    if not number.is_integer():  # also False for inf and NaN
        raise ValueError(f"`{name}` must be {rule}. Received: {name}={value!r}")
    return int(number)


@dataclasses.dataclass(frozen=True)
class AugmentConfig:
    """The options of the train augmentation (`train_transform`, `pipeline.train_pipeline`).

    The defaults are the ATRC / InvPT training recipe. The config checks
    itself when built (`ValueError` naming the field and the received value)
    and stores numbers and pairs in canonical form (floats, ints, tuples),
    so equal configs compare and hash equal.

    Attributes:
        scale_range: (min, max) of the uniform random scale factor, 0 < min <= max;
            (1, 1) turns scaling off.
        flip_probability: probability of the horizontal flip, in [0, 1]; 0 turns it off.
        photometric: whether to apply the photometric distortion (brightness,
            contrast, saturation, hue, each with p = 0.5).
        cat_max_ratio: crops are redrawn (up to `crop_tries` times) while one class of
            `ratio_task` covers this share of its valid pixels or more; in (0, 1], 1 turns
            the rule off.
        ratio_task: name of the task with class ids (a discrete kind) that `cat_max_ratio`
            checks, or None; the default `"semseg"` is skipped when there is no semseg task,
            any other name must be a discrete task of the pipeline.
        crop_tries: crop windows checked by the class-ratio rule (a positive integer).
        brightness_delta: bound of the uniform brightness shift, on the 0..255 scale (>= 0).
        contrast_range: (min, max) of the contrast gain, 0 <= min <= max.
        saturation_range: (min, max) of the saturation factor, 0 <= min <= max.
        hue_delta: hue shifts are integers in [-hue_delta, hue_delta - 1] of OpenCV's
            0..180 hue scale (an integer in 0..90).
        empty_ignore_tasks: names of the tasks whose crop becomes all-ignore when it holds
            no foreground pixel (reference: human_parts); names of absent tasks are skipped.

    Example:
    >>> config = AugmentConfig()
    >>> config.scale_range, config.flip_probability, config.photometric
    ((0.5, 2.0), 0.5, True)
    >>> off = AugmentConfig.off()
    >>> off.scale_range, off.flip_probability, off.photometric
    ((1.0, 1.0), 0.0, False)
    >>> dataclasses.replace(config, contrast_range=[0.8, 1.2]).contrast_range
    (0.8, 1.2)
    >>> AugmentConfig(flip_probability=1.5)
    Traceback (most recent call last):
    ...
    ValueError: `flip_probability` must be in [0, 1]. Received: flip_probability=1.5
    """

    scale_range: tuple[float, float] = SCALE_RANGE
    flip_probability: float = FLIP_PROBABILITY
    photometric: bool = True
    cat_max_ratio: float = CAT_MAX_RATIO
    ratio_task: str | None = RATIO_TASK
    crop_tries: int = CROP_TRIES
    brightness_delta: float = BRIGHTNESS_DELTA
    contrast_range: tuple[float, float] = CONTRAST_RANGE
    saturation_range: tuple[float, float] = SATURATION_RANGE
    hue_delta: int = HUE_DELTA
    empty_ignore_tasks: tuple[str, ...] = EMPTY_IGNORE_TASKS

    def __post_init__(self):
        # Frozen: the canonical values are stored with object.__setattr__.
        def store(name, value):
            object.__setattr__(self, name, value)

        lo, hi = _pair("scale_range", self.scale_range)
        if not 0 < lo <= hi:
            raise ValueError(f"`scale_range` must satisfy 0 < min <= max. Received: scale_range={self.scale_range!r}")
        store("scale_range", (lo, hi))

        rule = "in [0, 1]"
        probability = _number("flip_probability", self.flip_probability, rule)
        if not 0.0 <= probability <= 1.0:
            raise ValueError(f"`flip_probability` must be {rule}. Received: flip_probability={self.flip_probability!r}")
        store("flip_probability", probability)

        if not isinstance(self.photometric, bool):
            raise ValueError(f"`photometric` must be True or False. Received: photometric={self.photometric!r}")

        rule = "in (0, 1] (1 turns the rule off)"
        ratio = _number("cat_max_ratio", self.cat_max_ratio, rule)
        if not 0.0 < ratio <= 1.0:
            raise ValueError(f"`cat_max_ratio` must be {rule}. Received: cat_max_ratio={self.cat_max_ratio!r}")
        store("cat_max_ratio", ratio)

        if self.ratio_task is not None and not isinstance(self.ratio_task, str):
            raise ValueError(f"`ratio_task` must be a task name or None. Received: ratio_task={self.ratio_task!r}")

        rule = "a positive integer"
        tries = _integer("crop_tries", self.crop_tries, rule)
        if tries < 1:
            raise ValueError(f"`crop_tries` must be {rule}. Received: crop_tries={self.crop_tries!r}")
        store("crop_tries", tries)

        rule = ">= 0"
        delta = _number("brightness_delta", self.brightness_delta, rule)
        if not delta >= 0:
            raise ValueError(f"`brightness_delta` must be {rule}. Received: brightness_delta={self.brightness_delta!r}")
        store("brightness_delta", delta)

        for name in ("contrast_range", "saturation_range"):
            value = getattr(self, name)
            lo, hi = _pair(name, value)
            if not 0 <= lo <= hi:
                raise ValueError(f"`{name}` must satisfy 0 <= min <= max. Received: {name}={value!r}")
            store(name, (lo, hi))

        rule = "an integer in 0..90 (OpenCV hue units)"
        hue = _integer("hue_delta", self.hue_delta, rule)
        if not 0 <= hue <= 90:
            raise ValueError(f"`hue_delta` must be {rule}. Received: hue_delta={self.hue_delta!r}")
        store("hue_delta", hue)

        names = self.empty_ignore_tasks
        try:
            # A lone string would become its characters.
            ok = not isinstance(names, str) and all(isinstance(n, str) for n in names)
        except TypeError:
            ok = False
        if not ok:
            raise ValueError(
                f"`empty_ignore_tasks` must be a sequence of task names. Received: empty_ignore_tasks={names!r}"
            )
        store("empty_ignore_tasks", tuple(names))

    @classmethod
    def off(cls) -> AugmentConfig:
        """Crops only: scale 1, no flip, no photometric distortion (the crop rules still apply)."""
        return cls(scale_range=(1.0, 1.0), flip_probability=0.0, photometric=False)

    def check_tasks(self, tasks: Sequence[TaskSpec]) -> None:
        """Raises `ValueError` unless `ratio_task` is None, the default, or a task of `tasks` with class ids."""
        if self.ratio_task is None or self.ratio_task == RATIO_TASK:
            return
        discrete = [t.name for t in tasks if t.label_kind.discrete]
        if self.ratio_task not in discrete:
            kinds = [k.name for k in KINDS.values() if k.discrete]
            raise ValueError(
                f"`ratio_task` must name a task of `tasks` with class ids (kind {' or '.join(kinds)}), or be None. "
                f"Available: {discrete}. Received: ratio_task={self.ratio_task!r}"
            )
