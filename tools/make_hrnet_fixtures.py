"""Writes HRNet parity fixtures with timm: a random-init state dict, an input and timm's four feature maps.

Run in an environment with timm, torch and torchvision (not needed by keras_mtcl itself), e.g.

    python3 -m venv /tmp/timm_venv && /tmp/timm_venv/bin/pip install torch torchvision timm numpy -e .
    /tmp/timm_venv/bin/python tools/make_hrnet_fixtures.py --variant hrnet_w18_small_v2 --out tests/fixtures/hrnet

(the committed fixtures were made with timm 1.0.31, torch 2.14.1, torchvision 0.29.1; a few seconds on CPU).
Writes `{variant}_state_dict.npz` (float16 weights rounded to --significant-bits) and `{variant}_io.npz`
(input and timm's four branch outputs, computed in float64); see `keras_mtcl.testing.hrnet_fixtures`.
`mtcl-convert-hrnet --reference {variant}_io.npz` checks a Keras model against the second file.
"""

from __future__ import annotations

import argparse

from keras_mtcl.testing import hrnet_fixtures


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
    try:
        written = hrnet_fixtures.write_fixtures(args.out, args.variant, args.seed, args.batch, args.height, args.width,
                                                args.significant_bits)
    except (ValueError, ImportError) as error:
        parser.error(str(error))
    for i, (shape, mean, largest) in enumerate(written["branches"]):
        print(f"branch{i}: shape {shape}, mean |y| {mean:.3f}, max |y| {largest:.3f}")
    for path in (written["state_dict"], written["io"]):
        print(f"{path}: {path.stat().st_size / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
