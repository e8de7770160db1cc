"""Predict every task on your own images with a `.keras` model or an exported SavedModel; write pictures and arrays.

    mtcl-predict runs/quickstart/model.keras photo.jpg more_photos/ --out predictions/
    mtcl-predict exported/mtcl my_photos/ --out predictions/ --save-arrays

The model is a `.keras` file (run by Keras on the current backend) or a
SavedModel written by mtcl-export: its version folder
(`<serving root>/<name>/<version>/`) or its model folder (`<serving
root>/<name>/`, the highest version is used), run by TensorFlow through its
`serving_default` signature (the signature pads by itself, so
`--pad-multiple` applies to `.keras` models only).

For each image `<stem>.<ext>`, writes `<out>/<stem>.png` (`<stem>_<ext>.png`
where two inputs share a stem, e.g. `a.jpg` and `a.png`): the image
followed by one picture per task (classes as colours, depth near=bright,
normals as RGB, boundary and saliency probabilities as grey). With
`--save-arrays`, also one `.npy` file per output in `<out>/<stem>/`, named
and computed as the SavedModel's outputs, at the image's size and without
the batch axis: `<task>_classes.npy` (H, W) int32 and
`<task>_probabilities.npy` (H, W, C) for semseg / human_parts, `depth.npy`
(H, W, 1) metres, `normals.npy` (H, W, 3) unit vectors,
`<task>_probability.npy` (H, W, 1) for edge / saliency. `--out` may not be a
folder that holds input images (they would be overwritten).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


from keras_mtcl.cli import add_verbose_flag, quiet_tensorflow
from keras_mtcl.errors import ConfigError, reports_user_errors, require_positive

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")


def collect_images(paths: list[str]) -> list[Path]:
    """Image files named directly or found (not recursively) in named folders, sorted."""
    found = []
    for item in paths:
        path = Path(item)
        if path.is_dir():
            found += sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        elif path.is_file():
            found.append(path)
        else:
            raise FileNotFoundError(f"No image or folder at {path}.")
    if not found:
        raise FileNotFoundError(f"No images ({', '.join(IMAGE_SUFFIXES)}) in {paths}.")
    return found


def output_stems(files: list[Path]) -> list[str]:
    """A distinct output name per image: its stem, or `<stem>_<ext>` (then `_2`, `_3`, ...) where stems collide.

    `a.jpg` and `a.png` in one folder write `a_jpg.png` and `a_png.png`, never the same files.
    """
    counts: dict[str, int] = {}
    for path in files:
        counts[path.stem] = counts.get(path.stem, 0) + 1
    names, taken = [], set()
    for path in files:
        name = path.stem if counts[path.stem] == 1 else f"{path.stem}_{path.suffix.lstrip('.').lower()}"
        unique, number = name, 2
        while unique in taken or (unique != path.stem and unique in counts):
            unique, number = f"{name}_{number}", number + 1
        taken.add(unique)
        names.append(unique)
    return names


def check_output_folder(out: Path, files: list[Path]) -> None:
    """Refuses an output folder that holds input images: the panels (`<stem>.png`) could overwrite them."""
    resolved = out.resolve()
    for path in files:
        if path.resolve().parent == resolved:
            raise ValueError(
                f"--out {out} holds the input image {path}: predictions would be written beside (and could overwrite) "
                "the inputs; pass another --out folder."
            )


def load_predictor(model_path: Path, pad_multiple: int):
    """(predict one (H, W, 3) uint8 image -> {output name: array}, task specs, description) for either model kind.

    `pad_multiple` applies to a `.keras` model; a SavedModel pads as it was exported.
    """
    if model_path.is_dir():
        from keras_mtcl import export

        serve, specs, version_dir = export.load_saved_model(model_path)

        def predict_saved(image):
            return {name: value[0] for name, value in serve(image[None]).items()}

        return predict_saved, specs, f"SavedModel {version_dir}"

    from keras_mtcl.export import ServingConfig
    from keras_mtcl.inference import predict_image, serving_outputs
    from keras_mtcl.model import load_model

    model = load_model(model_path, compile=False)
    specs = list(model.task_specs)
    serving = ServingConfig(pad_multiple=pad_multiple)

    def predict_keras(image):
        return serving_outputs(specs, predict_image(model, image, serving))

    return predict_keras, specs, f"Keras model {model_path}"


@reports_user_errors
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="a .keras model file, or a SavedModel (version or model folder) from mtcl-export")
    parser.add_argument("images", nargs="+", help="image files or folders of images")
    parser.add_argument("--out", default="predictions", help="output folder")
    parser.add_argument("--save-arrays", action="store_true", help="also write each output as <out>/<stem>/<output>.npy")
    parser.add_argument("--pad-multiple", type=int, default=32, help="pad to a multiple of this (.keras models only)")
    add_verbose_flag(parser)
    args = parser.parse_args(argv)
    quiet_tensorflow(args.verbose)
    require_positive(pad_multiple=args.pad_multiple)
    files = collect_images(args.images)
    try:
        check_output_folder(Path(args.out), files)
    except ValueError as error:
        raise ConfigError(str(error)) from None
    import numpy as np
    from PIL import Image

    from keras_mtcl.data.decode import read_rgb
    from keras_mtcl.data.errors import CorruptFileError
    from keras_mtcl.inference import panel_maps
    from keras_mtcl.visualize import prediction_panel

    predict, specs, description = load_predictor(Path(args.model), args.pad_multiple)
    print(f"Model: {description}; tasks {[t.name for t in specs]}", flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)  # an unwritable --out fails here, before any image is predicted
    skipped = []
    for index, (path, stem) in enumerate(zip(files, output_stems(files)), 1):
        try:
            image = read_rgb(path)
        except CorruptFileError as error:
            # One unreadable file among many: say so and go on with the others.
            print(f"warning: skipped {path}: {' '.join(str(error).split())}", file=sys.stderr, flush=True)
            skipped.append(path)
            continue
        outputs = predict(image)
        Image.fromarray(prediction_panel(image, specs, panel_maps(specs, outputs))).save(out / f"{stem}.png")
        if args.save_arrays:
            (out / stem).mkdir(exist_ok=True)
            for name, value in outputs.items():
                np.save(out / stem / f"{name}.npy", value)
        print(f"[{index}/{len(files)}] {path} -> {out / (stem + '.png')}", flush=True)
    if len(skipped) == len(files):
        raise ConfigError(f"none of the {len(files)} images could be read (see the warnings above); pass readable images.")
    if skipped:
        print(f"Skipped {len(skipped)} unreadable image(s) of {len(files)}.", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
