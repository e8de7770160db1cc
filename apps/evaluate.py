"""`mtcl-evaluate` from a checkout: see keras_mtcl/cli/evaluate.py."""

if __name__ == "__main__":
    import sys

    from keras_mtcl.cli.evaluate import main

    sys.exit(main())
