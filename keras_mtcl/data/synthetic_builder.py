"""tensorflow-datasets builder of the procedural scenes of `keras_mtcl.data.synthetic`.

The scenes are rendered at preparation time, so the builder needs no
download and no `manual_dir`: prepare it into an explicit `data_dir`.

| config      | size (H x W) | train | val | on disk   |
|-------------|--------------|-------|-----|-----------|
| `tiny`      | 64 x 80      | 64    | 16  | ~3 MB     |
| `small`     | 240 x 320    | 3000  | 300 | ~1.6 GB   |
| `nyud_like` | 480 x 640    | 795   | 654 | ~2.7 GB   |

(`nyud_like` has NYUD-v2's resolution and split sizes.) Example i of a split
is `render_scene(SPLIT_SEED_OFFSETS[split] + i, H, W)`: train seeds start
at 0 and val seeds at 10**9, so the splits are disjoint and any example can
be re-rendered from its id. Other sizes: pass a `SyntheticScenesConfig`.

Features (the package's example format): `"image"` (H, W, 3) uint8,
`"id"` string, `"semseg"`, `"edge"`, `"saliency"`, `"human_parts"`
(H, W, 1) uint8 (PNG), `"depth"` (H, W, 1) and `"normals"` (H, W, 3)
float32 (zlib).

Registered as the dataset `"synthetic"`: `open_split` renders a split in
memory at any size (what training on `"synthetic"` reads), `prepare` builds
a config into a `data_dir`.

Example:
```python
builder = SyntheticScenes.prepare(None, data_dir="/data/tfds", config="tiny")
train = builder.load_split("train")
```
or `mtcl-prepare synthetic --data-dir /data/tfds --config tiny`.
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import Sequence

import numpy as np
import tensorflow_datasets as tfds

from keras_mtcl.data import register_dataset, synthetic
from keras_mtcl.data.builder import LocalDatasetInfo, MultiTaskBuilder
from keras_mtcl.data.decode import PathLike
from keras_mtcl.errors import ConfigError
from keras_mtcl.tasks import TaskSpec


@dataclasses.dataclass(eq=False)
class SyntheticScenesConfig(tfds.core.BuilderConfig):
    """Size of the rendered scenes and of the splits.

    Args:
        height: image height in pixels, >= `synthetic.MIN_SIZE`.
        width: image width in pixels, >= `synthetic.MIN_SIZE`.
        num_train: number of training scenes, >= 1.
        num_val: number of validation scenes, >= 1.
    """

    height: int = 64
    width: int = 80
    num_train: int = 64
    num_val: int = 16

    def __post_init__(self):
        for name, minimum in (("height", synthetic.MIN_SIZE), ("width", synthetic.MIN_SIZE),
                              ("num_train", 1), ("num_val", 1)):
            synthetic._check_int(name, getattr(self, name), minimum)
        if self.num_train > synthetic.SPLIT_SEED_OFFSETS["val"]:
            raise ValueError(
                f"`num_train` must be <= {synthetic.SPLIT_SEED_OFFSETS['val']} so that train and val seeds "
                f"stay disjoint. Received: num_train={self.num_train}"
            )


@register_dataset("synthetic")
class SyntheticScenes(MultiTaskBuilder):
    """Procedural indoor scenes with labels for all six tasks (see `keras_mtcl.data.synthetic`)."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release: rooms with boxes, spheres, cylinders and pictures."}
    BUILDER_CONFIGS = [
        SyntheticScenesConfig(name="tiny", description="64x80, 64 train / 16 val: tests and smoke runs.",
                              height=64, width=80, num_train=64, num_val=16),
        SyntheticScenesConfig(name="small", description="240x320, 3000 train / 300 val.",
                              height=240, width=320, num_train=3000, num_val=300),
        SyntheticScenesConfig(name="nyud_like", description="480x640, 795 train / 654 val (NYUD-v2's sizes).",
                              height=480, width=640, num_train=795, num_val=654),
    ]
    DEFAULT_CONFIG_NAME = "tiny"
    TITLE = "synthetic scenes"
    SPLITS = tuple(synthetic.SPLIT_SEED_OFFSETS)
    NEEDS_MANUAL_DIR = False

    @property
    def num_classes(self) -> dict[str, int]:
        """Classes of the class-map tasks: `{"semseg": 7, "human_parts": 7}`."""
        return {"semseg": synthetic.NUM_CLASSES, "human_parts": synthetic.NUM_PARTS}

    @property
    def tasks(self) -> tuple[str, ...]:
        """The six tasks of every scene, `synthetic.SYNTHETIC_TASKS`."""
        return synthetic.SYNTHETIC_TASKS

    def task_specs(self) -> list[TaskSpec]:
        """The `TaskSpec`s of the dataset (`synthetic.synthetic_tasks()`)."""
        return synthetic.synthetic_tasks()

    @classmethod
    def tasks_and_splits(cls, manual_dir: PathLike | None) -> tuple[list[str], list[str]]:
        return list(synthetic.SYNTHETIC_TASKS), list(cls.SPLITS)

    @classmethod
    def prepare(cls, manual_dir: PathLike | None, data_dir: PathLike, tasks: Sequence[str] | None = None,
                overwrite: bool = False, config: str = DEFAULT_CONFIG_NAME) -> SyntheticScenes:
        """Renders the scenes of `config` into `data_dir` and returns the builder.

        Args:
            manual_dir: must be empty: the scenes are rendered, nothing is read.
            data_dir: where tfds writes the prepared dataset.
            tasks: must be None: every scene carries the six tasks.
            overwrite: render again even if this config was already prepared.
            config: a name of `BUILDER_CONFIGS` or a `SyntheticScenesConfig`.

        Raises:
            ConfigError: for a `manual_dir` or `tasks`.
        """
        if manual_dir or tasks is not None:
            raise ConfigError(
                "The synthetic scenes are rendered with all six tasks: pass no manual_dir and no tasks. "
                f"Received: manual_dir={manual_dir!r}, tasks={tasks!r}"
            )
        builder = cls(config=config, data_dir=str(data_dir))
        mode = tfds.GenerateMode.REUSE_CACHE_IF_EXISTS if overwrite else tfds.GenerateMode.REUSE_DATASET_IF_EXISTS
        builder.download_and_prepare(download_config=tfds.download.DownloadConfig(download_mode=mode))
        return builder

    @classmethod
    def open_split(cls, split: str, manual_dir: PathLike | None, data_dir: PathLike,
                   size: Sequence[int] = (120, 160), count: int = 32, seed: int = 0):
        """`count` scenes of (height, width) `size` rendered in memory, from seed `SPLIT_SEED_OFFSETS[split] + seed`.

        Nothing is written: `manual_dir` and `data_dir` are not used.

        Returns:
            (a `tf.data.Dataset` of example dicts, the six `TaskSpec`s).
        """
        import tensorflow as tf

        height, width = size
        examples = synthetic.make_scenes(count, height, width, seed=synthetic.SPLIT_SEED_OFFSETS[split] + seed)
        return tf.data.Dataset.from_tensor_slices(examples), synthetic.synthetic_tasks()

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--config", default=cls.DEFAULT_CONFIG_NAME, choices=[c.name for c in cls.BUILDER_CONFIGS],
                            help="Size of the scenes and of the splits.")

    def _info(self) -> tfds.core.DatasetInfo:
        h, w = self.builder_config.height, self.builder_config.width

        def mask():
            return tfds.features.Image(shape=(h, w, 1), dtype=np.uint8, encoding_format="png")

        zlib = tfds.features.Encoding.ZLIB
        return LocalDatasetInfo(
            builder=self,
            description=(
                "Procedurally rendered indoor scenes (room, pictures, boxes, spheres, cylinders) with "
                "geometrically consistent labels: semseg (7 classes), z-depth (m), camera-frame normals, "
                "1-px instance edges, object saliency and object parts (7 classes)."
            ),
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Image(shape=(h, w, 3), dtype=np.uint8, encoding_format="png"),
                    "id": tfds.features.Text(),
                    "semseg": mask(),
                    "depth": tfds.features.Tensor(shape=(h, w, 1), dtype=np.float32, encoding=zlib),
                    "normals": tfds.features.Tensor(shape=(h, w, 3), dtype=np.float32, encoding=zlib),
                    "edge": mask(),
                    "saliency": mask(),
                    "human_parts": mask(),
                }
            ),
            supervised_keys=None,
        )

    def _split_generators(self, dl_manager):
        del dl_manager  # nothing to download: the scenes are rendered
        config = self.builder_config
        return {
            "train": self._generate_examples("train", config.num_train),
            "val": self._generate_examples("val", config.num_val),
        }

    def _generate_examples(self, split: str, num: int):
        config = self.builder_config
        offset = synthetic.SPLIT_SEED_OFFSETS[split]
        for i in range(num):
            seed = offset + i
            yield seed, synthetic.render_scene(seed, config.height, config.width)
