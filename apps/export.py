"""`mtcl-export` from a checkout: see keras_mtcl/cli/export.py."""

if __name__ == "__main__":
    import sys

    from keras_mtcl.cli.export import main

    sys.exit(main())
