"""Converts a timm HRNet checkpoint into weights for `keras_mtcl.backbones.hrnet`.

    mtcl-convert-hrnet --variant hrnet_w18 --input hrnet_w18.pth --output hrnet_w18.weights.h5
    mtcl-convert-hrnet --variant hrnet_w18 --input model.safetensors --output hrnet_w18.npz

`--input` takes a PyTorch state dict (`.pth`/`.pt`, read with torch), a `.safetensors` file
(read with numpy) or an `.npz` of arrays; a full classification checkpoint is fine
(its head is dropped), and `--prefix` selects the backbone of a larger model ("backbone."). The
state dict is loaded into the Keras model with `load_timm_state_dict`, which fails on any missing,
unused or misshapen tensor, and written as a Keras `.weights.h5` or as an `.npz` of timm-named arrays;
both load with `get_backbone(variant, weights=path)`.

`--reference IO.npz` (from `tools/make_hrnet_fixtures.py`, made from the same state dict) runs the
converted model on the stored input and prints the largest absolute difference per branch; the
command fails when one exceeds `--tolerance` times max(1, largest |output| of that branch), since
float32 rounding grows with the size of the activations.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

import numpy as np


VARIANTS = ("hrnet_w18_small_v2", "hrnet_w18", "hrnet_w48")


_SAFETENSORS_DTYPES = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "I64": "<i8", "I32": "<i4", "U8": "u1"}


def read_safetensors(path: str | pathlib.Path) -> dict[str, np.ndarray]:
    """Reads a .safetensors file with numpy: u64 header size, JSON header, then raw little-endian tensors."""
    data = pathlib.Path(path).read_bytes()
    header_size = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + header_size])
    body = memoryview(data)[8 + header_size :]
    out = {}
    for key, info in header.items():
        if key == "__metadata__":
            continue
        start, end = info["data_offsets"]
        if info["dtype"] == "BF16":  # bfloat16 is the top half of a float32
            raw = np.frombuffer(body[start:end], "<u2").astype(np.uint32) << 16
            array = raw.view(np.float32)
        elif info["dtype"] in _SAFETENSORS_DTYPES:
            array = np.frombuffer(body[start:end], _SAFETENSORS_DTYPES[info["dtype"]])
        else:
            raise ValueError(f"{path}: tensor {key} has dtype {info['dtype']}, which this reader does not know.")
        out[key] = array.reshape(info["shape"]).copy()
    return out


def read_state_dict(path: str | pathlib.Path) -> dict[str, np.ndarray]:
    """Reads a state dict: .safetensors here, .npz/.pth/.pt with `keras_mtcl.backbones.weights.read_state_dict`."""
    path = pathlib.Path(path)
    if path.suffix == ".safetensors":
        if not path.is_file():
            raise FileNotFoundError(f"No checkpoint at {path}. Received: input={str(path)!r}")
        return read_safetensors(path)
    from keras_mtcl.backbones.weights import read_state_dict as read_npz_or_torch

    return read_npz_or_torch(path)


def convert(
    state_dict: dict[str, np.ndarray], variant: str, output: str | pathlib.Path | None = None, prefix: str = ""
):
    """Builds the Keras `variant`, loads `state_dict` into it and writes it to `output` (.weights.h5 or .npz).

    `state_dict` maps timm names to arrays; a timm model's `state_dict()` (CPU tensors) works as it is.
    """
    from keras_mtcl.backbones import hrnet
    from keras_mtcl.backbones.weights import save_state_dict

    if output is not None and not str(output).endswith((".weights.h5", ".npz")):
        raise ValueError(f"`output` must end in .weights.h5 or .npz. Received: output={str(output)!r}")
    model = getattr(hrnet, variant)()
    hrnet.load_timm_state_dict(model, state_dict, prefix=prefix)
    if output is not None:
        output = pathlib.Path(output)
        output.parent.mkdir(parents=True, exist_ok=True)
        if output.name.endswith(".weights.h5"):
            model.save_weights(output)
        else:
            save_state_dict(hrnet.timm_backbone_tensors(state_dict, prefix), output)
    return model


def compare(model, reference: str | pathlib.Path) -> list[tuple[float, float]]:
    """(max |keras - timm|, max |timm|) per branch, between `model` and a fixture's stored outputs."""
    with np.load(reference, allow_pickle=False) as data:
        outputs = model.predict(data["input"], verbose=0)
        expected = [data[f"branch{i}"] for i in range(len(outputs))]
    return [(float(np.max(np.abs(np.asarray(y) - e))), float(np.max(np.abs(e)))) for y, e in zip(outputs, expected)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variant", required=True, choices=VARIANTS)
    parser.add_argument("--input", required=True, help="checkpoint: .pth/.pt (torch), .safetensors or .npz.")
    parser.add_argument("--prefix", default="", help="only keys with this prefix are read, without it.")
    parser.add_argument("--output", help="where to write: *.weights.h5 (Keras) or *.npz (timm names).")
    parser.add_argument("--reference", help="fixture io.npz to compare the converted model with.")
    parser.add_argument(
        "--tolerance", type=float, default=1e-4, help="accepted difference per unit of output size above 1."
    )
    args = parser.parse_args(argv)

    state = read_state_dict(args.input)
    model = convert(state, args.variant, args.output, prefix=args.prefix)
    print(f"{args.variant}: {model.count_params():,} parameters (running statistics included)")
    if args.output:
        print(f"wrote {args.output}")
    if args.reference:
        failed = False
        for i, (error, scale) in enumerate(compare(model, args.reference)):
            # float32 rounding grows with the activations' size: the bound scales with it above 1.
            bound = args.tolerance * max(1.0, scale)
            failed |= error > bound
            print(
                f"branch{i} (stride {4 * 2**i}): max |keras - timm| = {error:.3g} "
                f"(max |timm| = {scale:.3g}, bound {bound:.3g})"
            )
        if failed:
            print("FAILED: a difference is above its bound")
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
