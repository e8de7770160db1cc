"""Dataset names to ready batches (keras_mtcl.data.sources)."""


import numpy as np
import pytest

from conftest import nyud_real10

from keras_mtcl.data.sources import batches, open_split

pytestmark = pytest.mark.backend_independent


def test_synthetic_train_and_val_batches():
    train, specs = batches("synthetic", "train", batch_size=2, synthetic_size=(32, 48), synthetic_count=4, seed=0)
    images, labels = next(iter(train))
    assert tuple(images.shape) == (2, 32, 48, 3)
    assert sorted(labels) == sorted(t.name for t in specs)
    val, _ = batches("synthetic", "val", batch_size=2, synthetic_size=(30, 40), synthetic_count=2, tasks=["depth"])
    images, labels, meta = next(iter(val))
    assert tuple(images.shape) == (2, 32, 64, 3)  # padded to a multiple of 32
    assert list(labels) == ["depth"] and np.all(meta["height"].numpy() == 30)


def test_real_nyud_frames_through_the_builder(tmp_path):
    real10 = nyud_real10()
    val, specs = batches("nyud", "val", batch_size=5, manual_dir=str(real10), data_dir=str(tmp_path))
    assert [t.name for t in specs] == ["semseg", "depth"]
    images, labels, meta = next(iter(val))
    assert tuple(images.shape) == (5, 480, 640, 3)
    semseg = labels["semseg"].numpy()
    assert semseg.max() == 255 and semseg[semseg != 255].max() <= 39


def test_errors_name_the_fix():
    with pytest.raises(ValueError, match="Received: dataset='kitti'"):
        open_split("kitti", "train")
    with pytest.raises(ValueError, match="pass manual_dir"):
        open_split("nyud", "train")
    with pytest.raises(ValueError, match=r"Tasks \['nope'\] are not in the 'synthetic' dataset"):
        open_split("synthetic", "val", tasks=["saliency", "nope"], synthetic_count=1, synthetic_size=(16, 16))
