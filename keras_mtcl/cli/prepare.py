"""Prepare a dataset for training and evaluation (offline tfds build).

    mtcl-prepare nyud --manual-dir /data/NYUD_MT --data-dir ~/tensorflow_datasets
    mtcl-prepare pascal --manual-dir /data/PASCAL_MT --data-dir ~/tensorflow_datasets
    mtcl-prepare folder --manual-dir /data/my_rooms --data-dir ~/tensorflow_datasets
    mtcl-prepare synthetic --data-dir ~/tensorflow_datasets --config small

The first argument names a dataset of `keras_mtcl.data.list_datasets()`; the
others are its builder's command line (`mtcl-prepare nyud --help`).
Training and evaluation prepare on first use too.
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from keras_mtcl.data import get_dataset, list_datasets


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset", choices=list_datasets())
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in list_datasets():
        parser.parse_args(argv[:1])  # prints the help, or the one-line error (exit 2) for an unknown dataset
        return 0
    return get_dataset(argv[0]).main(argv[1:])


if __name__ == "__main__":
    sys.exit(main())
