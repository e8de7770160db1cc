"""Shared pytest setup. The suite runs once per Keras backend:

    KERAS_BACKEND=jax python -m pytest tests

Tests marked `backend_independent` exercise pure numpy / tf.data code that
never calls the Keras backend; they run in the tensorflow pass only, since
the other passes would repeat them byte for byte.
"""

import os

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
