"""NYUD-v2 with HRNet-W18, the baseline decoder and the cross-task contrastive regularizer.

    mtcl-train --preset nyud_hrnet18_contrastive --set manual_dir=/data/NYUDv2

The recipe of `nyud_hrnet18_baseline` (Adam 1e-4, weight decay 1e-4, batch
8, 100 epochs, poly; 448x576 crops; val at 480x640) with
`model.contrastive=true` and the regularizer's default options.

Runtime: the baseline's 9,900 steps plus the regularizer's projectors and
sampling; not measured on this project's machines (2 CPU cores, no GPU).

Expected metrics: the regularizer's paper (AAAI 2023) has no public code and
PEERS.md gives no regularized HRNet-18 number; the anchor is the published
HRNet-18 multi-task baseline (PEERS.md, section 5; HRNet-18-small): semseg
mIoU 36.35, depth RMSE 0.6248 m, normals mean error 21.02 degrees, which the
regularized run should match or improve (compare with `nyud_hrnet18_baseline`
trained here, the delta_m baseline).
"""

from keras_mtcl.configs import shrink, smoke_data
from keras_mtcl.configs.nyud_hrnet18_baseline import recipe
from keras_mtcl.presets import RunConfig


def get_config(smoke: bool = False) -> RunConfig:
    """The regularized NYUD-v2 run; `smoke=True`: shrunk to seconds on a 5-frame fixture in a temporary folder."""
    config = recipe("nyud_hrnet18_contrastive", contrastive=True)
    return shrink(config, **smoke_data("nyud")) if smoke else config
