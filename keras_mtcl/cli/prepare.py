"""Prepare a downloaded dataset for training and evaluation (offline tfds build).

    mtcl-prepare nyud --manual-dir /data/NYUD_MT --data-dir ~/tensorflow_datasets
    mtcl-prepare pascal --manual-dir /data/PASCAL_MT --data-dir ~/tensorflow_datasets
    mtcl-prepare folder --manual-dir /data/my_rooms --data-dir ~/tensorflow_datasets

The first argument names the dataset; the others are its builder's command
line (`mtcl-prepare nyud --help`). The same as `python -m
keras_mtcl.data.<dataset>`; training and evaluation prepare on first use too.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Sequence

# The datasets prepared from a download, each with its builder module's `main`.
PREPARED_DATASETS = ("nyud", "pascal", "folder")


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset", choices=PREPARED_DATASETS)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in PREPARED_DATASETS:
        parser.parse_args(argv[:1])  # prints the help, or the one-line error (exit 2) for an unknown dataset
        return 0
    return importlib.import_module(f"keras_mtcl.data.{argv[0]}").main(argv[1:])


if __name__ == "__main__":
    sys.exit(main())
