"""NYUD-v2 (795 train / 654 val) with HRNet-W18 and the baseline decoder, the MTL-PyTorch recipe, no regularizer.

    mtcl-train --preset nyud_hrnet18_baseline --set manual_dir=/data/NYUDv2

Adam 1e-4, weight decay 1e-4, batch 8, 100 epochs with poly decay; random
crops of 448x576 with the ATRC / InvPT augmentation; evaluation on val
padded to 480x640; tasks semseg, depth, normals, edge. HRNet weights do not
install offline: convert a timm checkpoint with `mtcl-convert-hrnet` and pass
it as `--set 'backbone_options={"weights": "hrnet_w18.weights.h5"}'`.

Runtime: 100 epochs of 99 steps (9,900 steps of batch 8 at 448x576); not
measured on this project's machines (2 CPU cores, no GPU), where it is not
practical: run it on a GPU.

Expected metrics, the reference codebases' published HRNet-18 multi-task
baseline on NYUD-v2 (PEERS.md, section 5; MTL-PyTorch's HRNet-18-small, a
smaller variant than `hrnet_w18`): semseg mIoU 36.35, depth RMSE 0.6248 m,
normals mean error 21.02 degrees (no edge number is published for it).
"""

from keras_mtcl.configs import shrink, smoke_data
from keras_mtcl.presets import DataConfig, ModelConfig, OptimizerConfig, RunConfig

NAME = "nyud_hrnet18_baseline"


def recipe(name: str, contrastive: bool) -> RunConfig:
    """The NYUD-v2 HRNet-18 recipe shared by the baseline and the regularized preset."""
    return RunConfig(
        name=name,
        epochs=100,
        data=DataConfig(dataset="nyud", image_size=(448, 576), eval_size=(480, 640), batch_size=8),
        model=ModelConfig(backbone="hrnet_w18", contrastive=contrastive),
        optimizer=OptimizerConfig(name="adam", learning_rate=1e-4, weight_decay=1e-4),
    )


def get_config(smoke: bool = False) -> RunConfig:
    """The NYUD-v2 baseline; `smoke=True`: shrunk to seconds on a 5-frame fixture in a temporary folder."""
    config = recipe(NAME, contrastive=False)
    return shrink(config, **smoke_data("nyud")) if smoke else config
