"""The package's commands: `mtcl-train`, `mtcl-evaluate`, `mtcl-export`, `mtcl-predict`, `mtcl-prepare`.

Each module's `main(argv=None) -> int` is a console script (`[project.scripts]`
in pyproject.toml); `apps/<name>.py` and `python -m keras_mtcl.cli.<name>` run
the same function. Importing a command module imports neither Keras nor
TensorFlow: each `main` parses its arguments first, so `--help` and argument
errors are instant and the log settings below apply before TensorFlow starts.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import tempfile
from contextlib import contextmanager


def add_verbose_flag(parser: argparse.ArgumentParser) -> None:
    """Adds `--verbose` (TensorFlow's C++ log lines stay visible)."""
    parser.add_argument("--verbose", action="store_true", help="show TensorFlow's C++ log lines (hidden by default)")


def quiet_tensorflow(verbose: bool) -> None:
    """Keeps TensorFlow's start-up and C++ log lines out of the terminal unless `verbose`.

    They (CUDA probing, CPU features, graph optimizer warnings) say nothing
    about the run. `TF_CPP_MIN_LOG_LEVEL=3` silences the C++ logging once
    TensorFlow has set it up; the lines printed while TensorFlow is imported,
    before that (absl's "All log messages before absl::InitializeLog()" and
    the CUDA stub's), are dropped by importing it here with the process's
    stderr set aside, and shown after all if the import fails.
    """
    if verbose:
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if "tensorflow" not in sys.modules:
        with _stderr_set_aside():
            importlib.import_module("tensorflow")


@contextmanager
def _stderr_set_aside():
    """Sends file descriptor 2 to a temporary file for the block; replays it if the block raises."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            yield
        except BaseException:
            os.dup2(saved, 2)
            held.seek(0)
            sys.stderr.write(held.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


__all__ = ["add_verbose_flag", "quiet_tensorflow"]
