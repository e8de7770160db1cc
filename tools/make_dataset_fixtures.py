"""Writes tiny dummy datasets in the real on-disk layouts of the dataset builders.

    python tools/make_dataset_fixtures.py OUT_DIR [--height 16 --width 20]

The layouts and label patterns are described in `keras_mtcl.testing.datasets`.
"""

from keras_mtcl.testing.datasets import main

if __name__ == "__main__":
    main()
