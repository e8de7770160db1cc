"""Presets as small config files: one module per preset, each with `get_config(smoke=False) -> RunConfig`.

A module's docstring gives the command that runs it, the expected runtime and
the expected metrics. `get_config(smoke=True)` returns the same config shrunk
to seconds (`shrink`): the tiny CNN, 32x48 crops, one short epoch, and for a
dataset that needs a download, a tiny fixture of its released layout written
to a new temporary folder (`smoke_data`). `keras_mtcl.presets.get_preset`
finds a preset by its module name; `mtcl-train --preset NAME [--smoke]` runs it.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from keras_mtcl.presets import RunConfig

# The tiny CNN of smoke runs and its crop: a few seconds per run on 2 CPU cores.
SMOKE_BACKBONE_OPTIONS = {"widths": [8, 8, 16, 16]}
SMOKE_SIZE = (32, 48)


def smoke_data(dataset: str) -> dict:
    """`manual_dir` and `data_dir` of a tiny fixture of `dataset` (`keras_mtcl.testing.datasets`), in a new temporary folder.

    NYUD-v2 in the ATRC layout and PASCAL-Context with 3 train and 2 val
    images of 32x48, a custom folder with 3 train and 1 val image of 16x20.
    """
    from keras_mtcl.testing import datasets as fixtures

    root = Path(tempfile.mkdtemp(prefix=f"mtcl_smoke_{dataset}_"))
    height, width = SMOKE_SIZE
    make = {
        "nyud": lambda: fixtures.make_nyud(root / "raw", "C", height=height, width=width),
        "pascal": lambda: fixtures.make_pascal(root / "raw", height=height, width=width),
        "folder": lambda: fixtures.make_folder(root / "raw"),
    }
    return {"manual_dir": str(make[dataset]()), "data_dir": str(root / "tfds")}


def shrink(config: RunConfig, **changes) -> RunConfig:
    """`config` shrunk to seconds: named `<name>_smoke`, tiny CNN, 32x48 crops, batch 2, one epoch, 4 + 2 scenes.

    The decoder, tasks, regularizer, optimizer and augmentation stay as they
    are. `changes` (any `RunConfig.replace` names) apply last, e.g. the
    `manual_dir` of `smoke_data`.

    >>> small = shrink(RunConfig(name="big", epochs=100))
    >>> small.name, small.epochs, small.model.backbone, small.data.image_size
    ('big_smoke', 1, 'tiny_cnn', (32, 48))
    """
    small = dict(
        name=f"{config.name}_smoke",
        epochs=1,
        num_pictures=1,
        backbone="tiny_cnn",
        backbone_options=SMOKE_BACKBONE_OPTIONS,
        decoder_options={},
        image_size=SMOKE_SIZE,
        eval_size=(),
        batch_size=2,
        synthetic_train=4,
        synthetic_val=2,
        synthetic_size=SMOKE_SIZE,
    )
    return config.replace(**{**small, **changes})
