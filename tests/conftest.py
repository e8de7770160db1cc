"""Shared pytest setup. The suite runs once per Keras backend:

    KERAS_BACKEND=jax python -m pytest tests

Tests marked `backend_independent` exercise pure numpy / tf.data code that
never calls the Keras backend; they run in the tensorflow pass only, since
the other passes would repeat them byte for byte.
"""

import os
import pathlib

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras  # noqa: E402
import pytest  # noqa: E402


def pytest_report_header(config):
    return f"keras {keras.__version__}, backend {keras.backend.backend()}"


def pytest_collection_modifyitems(config, items):
    if keras.backend.backend() == "tensorflow":
        return
    kept, dropped = [], []
    for item in items:
        (dropped if item.get_closest_marker("backend_independent") else kept).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


@pytest.fixture(autouse=True)
def _fixed_seed():
    """Every test starts from the same global seed and leaves no global state behind."""
    keras.utils.set_random_seed(0)
    fmt = keras.config.image_data_format()
    policy = keras.config.dtype_policy()
    yield
    keras.config.set_image_data_format(fmt)
    keras.config.set_dtype_policy(policy)


def nyud_real10() -> pathlib.Path:
    """Folder of the ten real NYUD-v2 frames (layout C); skips the calling test where they are absent.

    They are not distributed with the package: this workplace keeps them in `../shared/data/nyud_real10`
    beside the checkout; `KERAS_MTCL_NYUD_REAL10` points elsewhere.
    """
    default = pathlib.Path(__file__).resolve().parents[2] / "shared" / "data" / "nyud_real10"
    path = pathlib.Path(os.environ.get("KERAS_MTCL_NYUD_REAL10", default))
    if not (path / "gt_sets").is_dir():
        pytest.skip(f"the real NYUD-v2 frames are not at {path} (set KERAS_MTCL_NYUD_REAL10 to their folder)")
    return path
