"""Writes HRNet parity fixtures with timm: a random-init state dict, an input and timm's four feature maps.

Run in an environment with timm, torch and torchvision (not needed by keras_mtcl itself), e.g.

    python3 -m venv /tmp/timm_venv && /tmp/timm_venv/bin/pip install torch torchvision timm numpy
    /tmp/timm_venv/bin/python tools/make_hrnet_fixtures.py --variant hrnet_w18_small_v2 --out tests/fixtures/hrnet

(the committed fixtures were made with timm 1.0.31, torch 2.14.1, torchvision 0.29.1; a few seconds on CPU).

The timm model is `timm.create_model(variant, features_only=True, feature_location="",
out_indices=(1, 2, 3, 4))`: the raw branch outputs at strides 4, 8, 16, 32. Its weights are random
(seeded) and so are its batch-norm parameters and running statistics, so inference-mode batch norm is
part of the comparison: running statistics are first measured on random batches (train mode,
cumulative average), then perturbed. Batch-norm scales drawn in [0.2, 0.6] keep the outputs of order
one (largest about 8 for W18-small-v2), so float32 rounding stays well below the tests' 1e-4.

Every floating-point tensor of the state dict is rounded to `--significant-bits` significant bits and
stored as float16 (exactly representable), which lets the compressed file stay small; timm computes the
reference outputs from exactly these values, in float64 (stored as float32), so a float32 model can be
compared with the exact result rather than with another float32 rounding of it.

Writes two files to `--out`:
    {variant}_state_dict.npz: timm's parameter names -> float16 arrays (no `num_batches_tracked`).
    {variant}_io.npz: "input" (B, H, W, 3) float32 and "branch0".."branch3" (B, H/s, W/s, C) float32,
        channels last, plus "meta", a JSON string (variant, seed, versions).

`mtcl-convert-hrnet --reference {variant}_io.npz` checks a Keras model against the second file.
"""

from __future__ import annotations

import argparse
import json
import pathlib

import numpy as np
import timm
import torch


def round_significant(values: np.ndarray, bits: int) -> np.ndarray:
    """Rounds float32 values to float16 keeping `bits` significant bits (1 implicit + bits - 1 stored)."""
    half = values.astype(np.float16)
    drop = 11 - bits  # float16 stores 10 mantissa bits after the implicit one
    if drop == 0:
        return half
    raw = half.view(np.uint16)
    # Round to nearest by adding half a unit of the last kept bit before truncating.
    rounded = ((raw.astype(np.uint32) + (1 << (drop - 1))) & ~np.uint32((1 << drop) - 1)).astype(np.uint16)
    out = rounded.view(np.float16)
    return np.where(np.isfinite(out), out, half)


@torch.no_grad()
def randomize(model: torch.nn.Module, generator: torch.Generator, height: int, width: int) -> None:
    """Random batch-norm affine parameters and running statistics, measured then perturbed."""
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for bn in norms:
        bn.weight.copy_(torch.empty_like(bn.weight).uniform_(0.2, 0.6, generator=generator))
        bn.bias.copy_(torch.empty_like(bn.bias).normal_(0.0, 0.1, generator=generator))
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average over the calibration batches
    model.train()
    for _ in range(4):
        model(torch.randn(4, 3, height, width, generator=generator))
    for bn in norms:
        std = bn.running_var.sqrt()
        bn.running_mean.add_(torch.empty_like(std).normal_(0.0, 0.2, generator=generator) * std)
        bn.running_var.mul_(torch.empty_like(std).uniform_(0.5, 2.0, generator=generator))
        bn.momentum = 0.1
    model.eval()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variant", default="hrnet_w18_small_v2", help="timm HRNet name, e.g. hrnet_w18.")
    parser.add_argument("--out", default="tests/fixtures/hrnet", help="output folder.")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--height", type=int, default=64, help="input height, a multiple of 32 (timm needs it).")
    parser.add_argument("--width", type=int, default=96, help="input width, a multiple of 32.")
    parser.add_argument("--significant-bits", type=int, default=4, help="kept significant bits of each weight, 1..11.")
    args = parser.parse_args(argv)
    if not 1 <= args.significant_bits <= 11:
        parser.error(f"--significant-bits must be in 1..11. Received: {args.significant_bits}")
    if args.height % 32 or args.width % 32:
        parser.error(f"--height and --width must be multiples of 32. Received: {args.height}x{args.width}")

    torch.manual_seed(args.seed)
    generator = torch.Generator().manual_seed(args.seed)
    model = timm.create_model(
        args.variant, pretrained=False, features_only=True, feature_location="", out_indices=(1, 2, 3, 4)
    )
    randomize(model, generator, args.height, args.width)

    state = {}
    with torch.no_grad():
        for key, tensor in model.state_dict().items():
            if key.endswith("num_batches_tracked"):
                continue
            stored = round_significant(tensor.numpy().astype(np.float32), args.significant_bits)
            tensor.copy_(torch.from_numpy(stored.astype(np.float32)))
            state[key] = stored
        images = torch.randn(args.batch, 3, args.height, args.width, generator=generator)
        # float64 so the stored outputs carry no float32 rounding of their own.
        outputs = [y.float() for y in model.double()(images.double())]

    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out / f"{args.variant}_state_dict.npz", **state)
    meta = dict(
        variant=args.variant,
        seed=args.seed,
        significant_bits=args.significant_bits,
        timm=timm.__version__,
        torch=torch.__version__,
        model='timm.create_model(variant, features_only=True, feature_location="", out_indices=(1, 2, 3, 4))',
    )
    arrays = {"input": images.permute(0, 2, 3, 1).numpy(), "meta": np.array(json.dumps(meta))}
    for i, y in enumerate(outputs):
        arrays[f"branch{i}"] = y.permute(0, 2, 3, 1).numpy()
    np.savez_compressed(out / f"{args.variant}_io.npz", **arrays)
    for i, y in enumerate(outputs):
        shape = tuple(arrays[f"branch{i}"].shape)
        print(f"branch{i}: shape {shape}, mean |y| {y.abs().mean():.3f}, max |y| {y.abs().max():.3f}")
    for path in (out / f"{args.variant}_state_dict.npz", out / f"{args.variant}_io.npz"):
        print(f"{path}: {path.stat().st_size / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
