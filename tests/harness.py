"""The shared test checks, re-exported from the package (`keras_mtcl.testing.harness`) for older imports."""

from keras_mtcl.testing.harness import (
    assert_config_covers_constructor,
    assert_raises,
    assert_round_trip,
    non_default_arguments,
    to_numpy,
)

__all__ = ["assert_config_covers_constructor", "assert_raises", "assert_round_trip", "non_default_arguments", "to_numpy"]
