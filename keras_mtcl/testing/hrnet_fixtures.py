"""HRNet parity fixtures made with timm: a random-init state dict, an input and timm's four feature maps.

The timm model is `timm.create_model(variant, features_only=True, feature_location="",
out_indices=(1, 2, 3, 4))`: the raw branch outputs at strides 4, 8, 16, 32. Its weights are random
(seeded) and so are its batch-norm parameters and running statistics, so inference-mode batch norm is
part of the comparison: running statistics are first measured on random batches (train mode,
cumulative average), then perturbed (`randomize`). Batch-norm scales drawn in [0.2, 0.6] keep the
outputs of order one (largest about 8 for W18-small-v2), so float32 rounding stays well below the
tests' 1e-4.

Every floating-point tensor of the state dict is rounded to `significant_bits` significant bits and
stored as float16 (exactly representable, `round_significant`), which lets the compressed file stay
small; timm computes the reference outputs from exactly these values, in float64 (stored as float32),
so a float32 model can be compared with the exact result rather than with another float32 rounding of it.

`write_fixtures` writes two files:
    {variant}_state_dict.npz: timm's parameter names -> float16 arrays (no `num_batches_tracked`).
    {variant}_io.npz: "input" (B, H, W, 3) float32 and "branch0".."branch3" (B, H/s, W/s, C) float32,
        channels last, plus "meta", a JSON string (variant, seed, versions).

`mtcl-convert-hrnet --reference {variant}_io.npz` checks a Keras model against the second file;
`tools/make_hrnet_fixtures.py` is the command. Needs torch and timm (timm is not needed by keras_mtcl
itself), imported when a fixture is made.

Example:
>>> import numpy as np
>>> round_significant(np.array([1.0, 1.1, 0.3], np.float32), bits=4).tolist()
[1.0, 1.125, 0.3125]
"""

from __future__ import annotations

import json
import pathlib

import numpy as np


def round_significant(values: np.ndarray, bits: int) -> np.ndarray:
    """Rounds float32 values to float16 keeping `bits` significant bits (1 implicit + bits - 1 stored)."""
    if not 1 <= bits <= 11:
        raise ValueError(f"`bits` must be in 1..11. Received: bits={bits}")
    half = values.astype(np.float16)
    drop = 11 - bits  # float16 stores 10 mantissa bits after the implicit one
    if drop == 0:
        return half
    raw = half.view(np.uint16)
    # Round to nearest by adding half a unit of the last kept bit before truncating.
    rounded = ((raw.astype(np.uint32) + (1 << (drop - 1))) & ~np.uint32((1 << drop) - 1)).astype(np.uint16)
    out = rounded.view(np.float16)
    return np.where(np.isfinite(out), out, half)


def _torch():
    from keras_mtcl import optional

    return optional.import_optional("torch", "torch", "Making HRNet parity fixtures")


def randomize(model, generator, height: int, width: int) -> None:
    """Random batch-norm affine parameters and running statistics of a torch `model`, measured then perturbed."""
    torch = _torch()
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    with torch.no_grad():
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


def write_fixtures(
    out: str | pathlib.Path,
    variant: str = "hrnet_w18_small_v2",
    seed: int = 0,
    batch: int = 2,
    height: int = 64,
    width: int = 96,
    significant_bits: int = 4,
) -> dict[str, pathlib.Path | list[tuple]]:
    """Writes `{variant}_state_dict.npz` and `{variant}_io.npz` to `out` (module docstring).

    Args:
        out: output folder (created).
        variant: timm HRNet name, e.g. "hrnet_w18".
        seed: seed of the weights, the statistics and the input.
        batch: images of the input.
        height, width: input size, multiples of 32 (timm needs it).
        significant_bits: kept significant bits of each weight, 1..11.

    Returns:
        {"state_dict": path, "io": path, "branches": [(shape, mean |y|, max |y|) per branch]}.

    Raises:
        ValueError: a size that is not a multiple of 32, or bits outside 1..11.
        ImportError: torch or timm is not installed.
    """
    if height % 32 or width % 32 or not 1 <= significant_bits <= 11:
        raise ValueError(
            "`height` and `width` must be multiples of 32 and `significant_bits` in 1..11. "
            f"Received: height={height}, width={width}, significant_bits={significant_bits}"
        )
    torch = _torch()
    try:
        import timm  # not an extra of keras_mtcl: only the fixtures need it
    except ImportError as error:
        raise ImportError(f"Making HRNet parity fixtures needs timm (pip install timm torchvision). Failed: {error}") from None

    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    model = timm.create_model(variant, pretrained=False, features_only=True, feature_location="", out_indices=(1, 2, 3, 4))
    randomize(model, generator, height, width)
    state = {}
    with torch.no_grad():
        for key, tensor in model.state_dict().items():
            if key.endswith("num_batches_tracked"):
                continue
            stored = round_significant(tensor.numpy().astype(np.float32), significant_bits)
            tensor.copy_(torch.from_numpy(stored.astype(np.float32)))
            state[key] = stored
        images = torch.randn(batch, 3, height, width, generator=generator)
        # float64 so the stored outputs carry no float32 rounding of their own.
        outputs = [y.float() for y in model.double()(images.double())]
    out = pathlib.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"state_dict": out / f"{variant}_state_dict.npz", "io": out / f"{variant}_io.npz"}
    np.savez_compressed(paths["state_dict"], **state)
    meta = dict(
        variant=variant,
        seed=seed,
        significant_bits=significant_bits,
        timm=timm.__version__,
        torch=torch.__version__,
        model='timm.create_model(variant, features_only=True, feature_location="", out_indices=(1, 2, 3, 4))',
    )
    arrays = {"input": images.permute(0, 2, 3, 1).numpy(), "meta": np.array(json.dumps(meta))}
    for i, y in enumerate(outputs):
        arrays[f"branch{i}"] = y.permute(0, 2, 3, 1).numpy()
    np.savez_compressed(paths["io"], **arrays)
    branches = [(tuple(arrays[f"branch{i}"].shape), float(y.abs().mean()), float(y.abs().max()))
                for i, y in enumerate(outputs)]
    return {**paths, "branches": branches}


__all__ = ["randomize", "round_significant", "write_fixtures"]
