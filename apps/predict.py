"""`mtcl-predict` from a checkout: see keras_mtcl/cli/predict.py."""

if __name__ == "__main__":
    import sys

    from keras_mtcl.cli.predict import main

    sys.exit(main())
