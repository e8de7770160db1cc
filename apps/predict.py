"""Predict every task on your own images and write pictures (and optionally raw arrays).

    python apps/predict.py runs/quickstart/model.keras photo.jpg more_photos/ --out predictions/

For each image, writes `<out>/<name>.png`: the image followed by one picture
per task (classes as colours, depth near=bright, normals as RGB, boundary and
saliency probabilities as grey). With `--save-arrays`, also
`<out>/<name>.npz` with the raw outputs at the image's size.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

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


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="a .keras model file")
    parser.add_argument("images", nargs="+", help="image files or folders of images")
    parser.add_argument("--out", default="predictions", help="output folder")
    parser.add_argument("--save-arrays", action="store_true", help="also write raw outputs as .npz")
    parser.add_argument("--pad-multiple", type=int, default=32)
    args = parser.parse_args(argv)
    try:
        files = collect_images(args.images)
    except FileNotFoundError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    import numpy as np
    from PIL import Image

    from keras_mtcl.inference import predict_image
    from keras_mtcl.model import load_model
    from keras_mtcl.visualize import prediction_panel

    try:
        model = load_model(args.model, compile=False)
    except FileNotFoundError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for index, path in enumerate(files, 1):
        image = np.asarray(Image.open(path).convert("RGB"))
        predictions = predict_image(model, image, pad_multiple=args.pad_multiple)
        Image.fromarray(prediction_panel(image, list(model.task_specs), predictions)).save(out / f"{path.stem}.png")
        if args.save_arrays:
            np.savez_compressed(out / f"{path.stem}.npz", **predictions)
        print(f"[{index}/{len(files)}] {path} -> {out / (path.stem + '.png')}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
