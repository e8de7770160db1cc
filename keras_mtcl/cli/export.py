"""Export a trained `.keras` model for TF Serving (SavedModel), as an inference-only `.keras`, and optionally ONNX.

    mtcl-export runs/quickstart/model.keras --serving-root exported --name mtcl
    # -> exported/mtcl/1/ (SavedModel), exported/models.config, exported/mtcl.keras
    mtcl-export runs/quickstart/model.keras --serving-root exported --name mtcl --base-path /models/mtcl
    # -> models.config points at /models/mtcl, where the printed `docker run` line mounts it
    mtcl-export runs/quickstart/model.keras --serving-root exported --name mtcl --onnx
    # -> also exported/mtcl.onnx (needs `pip install keras_mtcl[onnx]`)

The model may come from any backend; export always runs on the TensorFlow
backend (the command sets KERAS_BACKEND=tensorflow for itself; called in a
process whose Keras already runs another backend, it exports in a child process). After
writing, the SavedModel is loaded back by TensorFlow (and the ONNX file run
by onnxruntime) and its outputs are compared with the Keras model's on a
test image. It ends by printing the `docker run` line that serves the root
with the `tensorflow/serving` image of the TensorFlow version that exported.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from keras_mtcl.cli import add_verbose_flag, quiet_tensorflow
from keras_mtcl.errors import reports_user_errors, require_positive


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="a .keras file written by mtcl-train (any backend)")
    parser.add_argument("--serving-root", default="exported", help="TF Serving model root folder")
    parser.add_argument("--name", default="mtcl", help="model name in TF Serving")
    parser.add_argument("--version", type=int, default=1, help="version folder (positive integer)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing version folder")
    parser.add_argument("--base-path", help="base_path written to models.config (default: absolute path)")
    parser.add_argument("--pad-multiple", type=int, default=32, help="pad inputs to a multiple of this size")
    parser.add_argument("--onnx", action="store_true", help="also write <serving-root>/<name>.onnx (tf2onnx)")
    add_verbose_flag(parser)
    parser.add_argument("--no-verify", action="store_true", help="skip loading the exports back")
    return parser.parse_args(argv)


@reports_user_errors
def main(argv=None) -> int:
    args = parse_args(argv)
    # A SavedModel is written from the TensorFlow backend, which Keras fixes when it is first imported.
    os.environ["KERAS_BACKEND"] = "tensorflow"
    if "keras" in sys.modules and sys.modules["keras"].backend.backend() != "tensorflow":
        import subprocess

        return subprocess.run([sys.executable, "-m", "keras_mtcl.cli.export", *(sys.argv[1:] if argv is None else argv)]).returncode
    quiet_tensorflow(args.verbose)
    require_positive(pad_multiple=args.pad_multiple, version=args.version)
    model_path = Path(args.model)

    print(f"Loading {model_path} (TensorFlow backend) ...", flush=True)
    from keras_mtcl import export
    from keras_mtcl.model import load_model

    # A missing or wrong model file, or a refused export, is a user error: `reports_user_errors` prints it.
    model = load_model(model_path, compile=False)
    serving_root = Path(args.serving_root)
    serving_root.mkdir(parents=True, exist_ok=True)  # an unwritable --serving-root fails before the export
    print(f"Tracing the serving signatures and writing the SavedModel to {serving_root / args.name} ...", flush=True)
    serving = export.ServingConfig(pad_multiple=args.pad_multiple)
    version_dir = export.export_for_serving(
        model, serving_root, args.name, version=args.version, overwrite=args.overwrite, base_path=args.base_path,
        serving=serving,
    )
    keras_path = serving_root / f"{args.name}.keras"
    export.inference_model(model).save(keras_path)
    print(f"SavedModel: {version_dir}")
    print(f"TF Serving config: {serving_root / 'models.config'}")
    print(f"Inference-only Keras model: {keras_path}")
    print(f"Outputs: {', '.join(export.output_names(model))}")
    if not args.no_verify:
        print("Verifying: loading the SavedModel back and comparing its outputs with the Keras model's ...", flush=True)
        difference = export.verify_saved_model(model, version_dir, serving=serving)
        print(
            f"Verified: SavedModel ({' and '.join(export.SIGNATURES)}) loaded back by TensorFlow, "
            f"max |difference| to Keras = {difference:.2e}"
        )
    if args.onnx:
        print(f"Converting to ONNX ({serving_root / f'{args.name}.onnx'}) ...", flush=True)
        onnx_path = export.export_onnx(model, serving_root / f"{args.name}.onnx", serving)
        print(f"ONNX model: {onnx_path}")
        if not args.no_verify:
            difference = export.verify_onnx(model, onnx_path, serving=serving)
            print(f"Verified: ONNX model run by onnxruntime, max |difference| to Keras = {difference:.2e}")
    try:
        print(f"Serve with TF Serving: {export.docker_command(serving_root)}")
    except export.ExportError as error:  # a --base-path no single mount fits: the export itself is fine
        print(f"No docker command: {error}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
