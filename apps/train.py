"""`mtcl-train` from a checkout: see keras_mtcl/cli/train.py."""

if __name__ == "__main__":
    import sys

    from keras_mtcl.cli.train import main

    sys.exit(main())
