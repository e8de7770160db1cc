"""One entry point from a dataset name to a split of examples and its task specs."""

from __future__ import annotations

import os
from typing import Sequence

import tensorflow as tf

from keras_mtcl.data import get_dataset
from keras_mtcl.errors import ConfigError
from keras_mtcl.tasks import TaskSpec

DEFAULT_DATA_DIR = os.path.join("~", "tensorflow_datasets")


def open_split(
    dataset: str,
    split: str,
    manual_dir: str = "",
    data_dir: str = "",
    tasks: Sequence[str] = (),
    synthetic_size: Sequence[int] = (120, 160),
    synthetic_count: int = 32,
    seed: int = 0,
) -> tuple[tf.data.Dataset, list[TaskSpec]]:
    """A split of examples (package example format) and the `TaskSpec`s of the tasks kept.

    The dataset's registered builder (`keras_mtcl.data.get_dataset`) reads it:
    its `open_split` prepares it on first use.

    Args:
        dataset: a name of `keras_mtcl.data.list_datasets()`: `"synthetic"`
            (rendered in memory, no files), `"nyud"`, `"pascal"` or `"folder"`
            (prepared offline from `manual_dir` into `data_dir` on first use
            by the tfds builders).
        split: `"train"` or `"val"`.
        manual_dir: the downloaded release (NYUD-v2, PASCAL-Context) or the
            custom folder holding `manifest.json`.
        data_dir: tfds data_dir for prepared datasets (default
            `~/tensorflow_datasets`); never inside `manual_dir`.
        tasks: keep only these tasks (empty: every task the dataset carries).
        synthetic_size, synthetic_count, seed: synthetic scenes' (height,
            width), number and seed (scenes of different splits never overlap).

    Returns:
        (a `tf.data.Dataset` of example dicts: "image" (H, W, 3) uint8, "id", one (H, W, C) label per task;
        list of `TaskSpec`).

    Raises:
        ConfigError: unknown dataset, no `manual_dir`, or tasks the dataset does not carry.
    """
    builder = get_dataset(dataset)
    if builder.NEEDS_MANUAL_DIR and not manual_dir:
        raise ConfigError(
            f"Dataset {dataset!r} is read from its downloaded folder: pass manual_dir (--set manual_dir=PATH). "
            "Received: manual_dir=''"
        )
    examples, specs = builder.open_split(
        split, manual_dir, os.path.expanduser(data_dir or DEFAULT_DATA_DIR),
        size=synthetic_size, count=synthetic_count, seed=seed,
    )
    return _keep(examples, specs, tasks, dataset)


def _keep(examples: tf.data.Dataset, specs: list[TaskSpec], names: Sequence[str], dataset: str):
    if not names:
        return examples, specs
    by_name = {t.name: t for t in specs}
    missing = [n for n in names if n not in by_name]
    if missing:
        raise ConfigError(
            f"Tasks {missing} are not in the {dataset!r} dataset, which has {sorted(by_name)}. Received: tasks={list(names)}"
        )
    return examples, [by_name[n] for n in names]


def batches(
    dataset: str,
    split: str,
    batch_size: int,
    tasks: Sequence[str] = (),
    manual_dir: str = "",
    data_dir: str = "",
    crop_size: Sequence[int] | None = None,
    seed: int | None = None,
    synthetic_size: Sequence[int] = (120, 160),
    synthetic_count: int = 32,
) -> tuple[tf.data.Dataset, list[TaskSpec]]:
    """Ready batches of a split: the training pipeline for `"train"`, the evaluation pipeline otherwise.

    Training crops to `crop_size` (default: NYUD 448x576, PASCAL 512x512, the
    synthetic size otherwise) with the reference augmentation, shuffled and
    seeded; evaluation pads to a multiple of 32 and carries each image's
    original size (see `keras_mtcl.data.pipeline`).

    Returns:
        (dataset, task specs).

    Example:
    >>> ds, specs = batches("synthetic", "train", batch_size=2, synthetic_size=(32, 48), synthetic_count=4, seed=0)
    >>> images, labels = next(iter(ds))
    >>> tuple(images.shape), sorted(labels)[:2]
    ((2, 32, 48, 3), ['depth', 'edge'])
    """
    from keras_mtcl.data import augment, pipeline

    examples, specs = open_split(
        dataset, split, manual_dir=manual_dir, data_dir=data_dir, tasks=tasks,
        synthetic_size=synthetic_size, synthetic_count=synthetic_count, seed=seed or 0,
    )
    if split == "train":
        size = tuple(crop_size or augment.CROP_SIZES.get(dataset, tuple(synthetic_size)))
        return pipeline.train_pipeline(examples, specs, batch_size=batch_size, crop_size=size, seed=seed), specs
    return pipeline.eval_pipeline(examples, specs, batch_size=batch_size, pad_multiple=32), specs
