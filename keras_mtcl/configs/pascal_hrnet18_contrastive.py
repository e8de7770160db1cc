"""PASCAL-Context (4998 train / 5105 val) with HRNet-W18, the baseline decoder and the contrastive regularizer.

    mtcl-train --preset pascal_hrnet18_contrastive --set manual_dir=/data/PASCAL_MT

Adam 1e-4, weight decay 1e-4, batch 8, 100 epochs with poly decay; random
crops of 512x512 with the ATRC / InvPT augmentation; val padded to 512x512;
tasks semseg, human_parts, saliency, normals, edge.

Runtime: 100 epochs of 624 steps (62,400 steps of batch 8 at 512x512); not
measured on this project's machines (2 CPU cores, no GPU), where it is not
practical: run it on a GPU.

Expected metrics: PEERS.md (section 5) lists no HRNet-18 result on
PASCAL-Context. Its nearest published anchor is ATRC's: semseg mIoU 67.67,
human parts mIoU 62.93, saliency maxF 82.29, normals mean error 14.24
degrees, edge odsF 72.42 (PEERS.md does not give its backbone; ATRC's NYUD-v2
numbers there are HRNet-48's, a larger network than HRNet-18).
"""

from keras_mtcl.configs import shrink, smoke_data
from keras_mtcl.presets import DataConfig, ModelConfig, OptimizerConfig, RunConfig


def get_config(smoke: bool = False) -> RunConfig:
    """The regularized PASCAL-Context run; `smoke=True`: shrunk to seconds on a 5-image fixture in a temporary folder."""
    config = RunConfig(
        name="pascal_hrnet18_contrastive",
        epochs=100,
        data=DataConfig(dataset="pascal", image_size=(512, 512), eval_size=(512, 512), batch_size=8),
        model=ModelConfig(backbone="hrnet_w18", contrastive=True),
        optimizer=OptimizerConfig(name="adam", learning_rate=1e-4, weight_decay=1e-4),
    )
    return shrink(config, **smoke_data("pascal")) if smoke else config
