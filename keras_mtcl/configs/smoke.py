"""The smallest run: the tiny CNN on 8 synthetic 32x48 scenes, one epoch; for tests and checks that the install works.

    mtcl-train --preset smoke

Runtime: about 20 seconds on 2 CPU cores (most of it imports and tracing), on
every backend (`KERAS_BACKEND=jax mtcl-train --preset smoke`).

Expected metrics: none; two batches of training leave the model near chance.
It checks that training, evaluation (the boundary benchmark included),
pictures and the export run end to end.
"""

from keras_mtcl.presets import DataConfig, ModelConfig, RunConfig


def get_config(smoke: bool = False) -> RunConfig:
    """The smoke run; `smoke` changes nothing (it takes seconds already)."""
    return RunConfig(
        name="smoke",
        epochs=1,
        num_pictures=2,
        data=DataConfig(dataset="synthetic", image_size=(32, 48), synthetic_size=(32, 48), synthetic_train=8,
                        synthetic_val=4, batch_size=4),
        model=ModelConfig(backbone="tiny_cnn", backbone_options={"widths": [8, 8, 16, 16]}),
    )
