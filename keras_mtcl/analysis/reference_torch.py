"""A plain-PyTorch reference of the multi-task HRNet baseline: network, losses, optimiser and a timed training run.

The yardstick for `keras_mtcl.analysis.train_bench`: the same network,
losses, optimiser and synthetic batch, written the way a PyTorch user would
write it, so that the two benchmarks' JSON lines compare side by side
(`tools/bench_reference_torch.py`; `tools/gpu_bench.py` runs both).
Needs the `torch` extra; timm for the HRNets.

Network (`ReferenceNet`): a timm HRNet with random weights,
`timm.create_model(model, pretrained=False, features_only=True,
feature_location="", out_indices=(1, 2, 3, 4))`, i.e. the raw outputs of
the four branches (18/36/72/144 channels at strides 4/8/16/32 for
`hrnet_w18` and `hrnet_w18_small_v2`, 48/96/192/384 for `hrnet_w48`); the
branches are upsampled bilinearly to the stride-4 map and concatenated;
each task has a head conv1x1 (no bias) - BN - ReLU - conv1x1 with as many
hidden channels as the concatenation (MTL-PyTorch's HRNet head, and
`keras_mtcl.decoders.baseline` with its defaults); each prediction is
resized bilinearly (float32) to the input size. `"tiny"` is a small
timm-free multi-branch network with the same four-stride interface, for
tests on machines without timm.

Tasks, channels and loss weights come from `keras_mtcl.tasks.task_set`
(which imports neither Keras nor TensorFlow); the losses re-implement
`keras_mtcl/losses.py` in torch: cross-entropy over valid class ids (255
ignored), L1 over valid depth, L1 between the L2-normalised prediction and
valid normals (summed over channels, per valid pixel), BCE with positives
weighted `pos_weight` (0.95) and negatives 1 - `pos_weight` for edges; each
is a float32 mean over valid pixels, 0 when none is valid. The batch is
`keras_mtcl.analysis.train_bench.make_batch` (same seed, same arrays),
moved to the device once. Optimiser: AdamW with Keras's defaults as the
Keras benchmark uses them (lr 1e-4, weight decay 0.004, eps 1e-7; the fused
CUDA kernel on a GPU).

Modes (`MODES`, `run_mode`):

- `fp32`: eager, float32, NCHW (PyTorch's defaults, so cuDNN convolutions
  may use TF32; the record says `cudnn_allow_tf32`).
- `bf16`: eager, `torch.autocast(bfloat16)`, model and input channels_last.
- `compile`: `bf16` with the forward pass and the losses in one
  `torch.compile`d function (the backward is compiled with it).

On CUDA, `torch.backends.cudnn.benchmark` is on unless
`ReferenceSetup.cudnn_benchmark` is False (the input size is fixed).

Timing: warm-up steps (compilation, cuDNN autotuning), then timed steps,
each synchronised (`torch.cuda.synchronize` on CUDA) and timed on the host
clock, as the Keras benchmark times its steps. Each mode's record has the
Keras benchmark's keys where they overlap: `step_ms` (mean of the timed
steps), `step_ms_median`, `images_per_s` (batch x steps / elapsed),
`peak_memory_mb` (`torch.cuda.max_memory_allocated` since the mode started;
on the CPU the process's peak RSS, which includes earlier modes),
`parameters` (trainable weights plus batch-norm statistics, as Keras's
`count_params` counts them), and `losses`, the total loss of every timed step.

Example:
>>> net = ReferenceNet(TinyMultiBranch(), [8, 16, 32, 64], task_lib.task_set("nyud"))
>>> {name: tuple(y.shape) for name, y in net(torch.zeros(1, 3, 64, 64)).items()}["normals"]
(1, 3, 64, 64)
"""

from __future__ import annotations

import dataclasses
import gc
import math
import time
from typing import Callable, Sequence

from keras_mtcl import optional
from keras_mtcl.analysis.gpu_bench import REFERENCE_MODES
from keras_mtcl import tasks as task_lib  # plain data: no Keras, no TensorFlow

torch = optional.import_optional("torch", "torch", "The PyTorch reference (keras_mtcl.analysis.reference_torch)")
F = optional.import_optional("torch.nn.functional", "torch", "The PyTorch reference")
nn = torch.nn

MODES = REFERENCE_MODES
TIMM_MODELS = ("hrnet_w18_small_v2", "hrnet_w18", "hrnet_w48")


def _timm(purpose: str):
    try:
        import timm
    except ImportError as error:
        raise ImportError(
            f"{purpose} needs timm (pip install timm, with a torchvision that matches torch); the timm-free "
            f"network is 'tiny'. Import failed: {error}"
        ) from None
    return timm


# ----------------------------------------------------------------------------- network


class _ConvBNReLU(nn.Sequential):
    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__(
            nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)
        )


class TinyMultiBranch(nn.Module):
    """A small timm-free stand-in for HRNet's features: four maps at strides 4, 8, 16, 32.

    A stride-4 stem, three stride-2 conv-BN-ReLU blocks for the coarser
    branches, then one exchange: each branch adds the projected, upsampled
    next coarser branch.

    Args:
        widths: channels of the four branches.

    Input shape: (B, 3, H, W). Output: list of (B, widths[i], H / 4 / 2^i, W / 4 / 2^i).
    """

    def __init__(self, widths: Sequence[int] = (8, 16, 32, 64)):
        super().__init__()
        if len(widths) != 4 or min(widths) < 1:
            raise ValueError(f"`widths` must be four positive channel counts. Received: widths={tuple(widths)}")
        self.channels = [int(w) for w in widths]
        first = self.channels[0]
        self.stem = nn.Sequential(_ConvBNReLU(3, first, 2), _ConvBNReLU(first, first, 2))
        pairs = list(zip(self.channels[:-1], self.channels[1:]))
        self.downs = nn.ModuleList(_ConvBNReLU(a, b, 2) for a, b in pairs)
        self.exchange = nn.ModuleList(nn.Conv2d(b, a, 1, bias=False) for a, b in pairs)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        branches = [self.stem(x)]
        for down in self.downs:
            branches.append(down(branches[-1]))
        fused = [
            branch + F.interpolate(proj(coarse), size=branch.shape[-2:], mode="bilinear", align_corners=False)
            for branch, coarse, proj in zip(branches[:-1], branches[1:], self.exchange)
        ]
        return fused + [branches[-1]]


def build_backbone(name: str) -> tuple[nn.Module, list[int]]:
    """The backbone `name` (a timm HRNet name, or `"tiny"`) and the channels of its four maps, finest first.

    Raises:
        ImportError: a timm network without timm installed.
        ValueError: a timm network whose branches do not have strides 4, 8, 16, 32.
    """
    if name == "tiny":
        net = TinyMultiBranch()
        return net, list(net.channels)
    timm = _timm(f"The reference network {name!r}")
    net = timm.create_model(name, pretrained=False, features_only=True, feature_location="", out_indices=(1, 2, 3, 4))
    channels = list(net.feature_info.channels())
    reductions = list(net.feature_info.reduction())
    if reductions != [4, 8, 16, 32]:
        raise ValueError(f"`model` must have branch strides [4, 8, 16, 32]. Received: model={name!r} with {reductions}")
    return net, channels


class ReferenceNet(nn.Module):
    """Backbone, branches upsampled to the finest map and concatenated, one conv1x1-BN-ReLU-conv1x1 head per task.

    Args:
        backbone: module returning a list of (B, C_i, H_i, W_i) maps, finest first.
        channels: C_i of those maps.
        specs: the `TaskSpec`s (name, channels).

    Input shape: (B, 3, H, W). Output: {task: (B, C_task, H, W) float32}.
    """

    def __init__(self, backbone: nn.Module, channels: Sequence[int], specs):
        super().__init__()
        self.backbone = backbone
        total = int(sum(channels))
        self.heads = nn.ModuleDict(
            {
                t.name: nn.Sequential(
                    nn.Conv2d(total, total, 1, bias=False),
                    nn.BatchNorm2d(total),
                    nn.ReLU(inplace=True),
                    nn.Conv2d(total, t.channels, 1),
                )
                for t in specs
            }
        )

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        features = self.backbone(x)
        size = features[0].shape[-2:]
        concat = torch.cat(
            [features[0]] + [F.interpolate(f, size=size, mode="bilinear", align_corners=False) for f in features[1:]],
            dim=1,
        )
        return {
            name: F.interpolate(head(concat).float(), size=x.shape[-2:], mode="bilinear", align_corners=False)
            for name, head in self.heads.items()
        }


def count_parameters(model: nn.Module) -> int:
    """Trainable parameters plus batch-norm running statistics (what Keras's `count_params` counts)."""
    params = sum(p.numel() for p in model.parameters())
    stats = sum(b.numel() for n, b in model.named_buffers() if n.endswith(("running_mean", "running_var")))
    return int(params + stats)


# ----------------------------------------------------------------------------- losses (keras_mtcl/losses.py in torch)


def _safe_mean(total: torch.Tensor, count: torch.Tensor) -> torch.Tensor:
    return total / count.clamp(min=1.0)


def cross_entropy(labels: torch.Tensor, logits: torch.Tensor, ignore_value: int = 255) -> torch.Tensor:
    """labels (B, 1, H, W) class ids (any dtype), logits (B, C, H, W): mean over labels in 0..C-1."""
    del ignore_value  # like losses.py: anything outside 0..C-1, 255 included, is ignored
    labels = labels[:, 0].long()
    valid = (labels >= 0) & (labels < logits.shape[1])
    target = torch.where(valid, labels, torch.full_like(labels, -100))
    total = F.cross_entropy(logits.float(), target, ignore_index=-100, reduction="sum")
    return _safe_mean(total, valid.sum().float())


def depth_l1(labels: torch.Tensor, prediction: torch.Tensor, ignore_value: int = 255) -> torch.Tensor:
    """labels, prediction (B, 1, H, W): mean |prediction - label| where label > 0 and != ignore."""
    valid = (labels > 0) & (labels != ignore_value)
    error = torch.where(valid, (prediction.float() - labels).abs(), torch.zeros_like(labels))
    return _safe_mean(error.sum(), valid.sum().float())


def normals_l1(labels: torch.Tensor, prediction: torch.Tensor, ignore_value: int = 255) -> torch.Tensor:
    """labels, prediction (B, 3, H, W): L1 to the normalised prediction, summed over channels, per valid pixel."""
    prediction = F.normalize(prediction.float(), dim=1, eps=1e-12)
    valid = (labels != ignore_value).all(dim=1) & (labels != 0).any(dim=1)
    safe = torch.where(valid[:, None], labels, torch.zeros_like(labels))
    error = torch.where(valid, (prediction - safe).abs().sum(dim=1), torch.zeros_like(labels[:, 0]))
    return _safe_mean(error.sum(), valid.sum().float())


def _binary_terms(labels, logits, ignore_value):
    logits = logits.float()
    valid = ((labels != ignore_value) & (labels >= 0)).float()
    target = (labels > 0.5).float() * valid
    positive_nll = F.softplus(-logits) * target * valid
    negative_nll = F.softplus(logits) * (1.0 - target) * valid
    return target, valid, positive_nll, negative_nll


def weighted_bce(labels: torch.Tensor, logits: torch.Tensor, pos_weight: float = 0.95, ignore_value: int = 255):
    """labels, logits (B, 1, H, W): BCE, positives weighted `pos_weight`, negatives 1 - `pos_weight`."""
    _, valid, positive_nll, negative_nll = _binary_terms(labels, logits, ignore_value)
    total = pos_weight * positive_nll.sum() + (1.0 - pos_weight) * negative_nll.sum()
    return _safe_mean(total, valid.sum())


def balanced_bce(labels: torch.Tensor, logits: torch.Tensor, ignore_value: int = 255) -> torch.Tensor:
    """labels, logits (B, 1, H, W): BCE with positives weighted by the batch's fraction of negatives."""
    target, valid, positive_nll, negative_nll = _binary_terms(labels, logits, ignore_value)
    count = valid.sum()
    weight = _safe_mean(((1.0 - target) * valid).sum(), count).detach()
    return _safe_mean(weight * positive_nll.sum() + (1.0 - weight) * negative_nll.sum(), count)


# Keyed like `keras_mtcl.losses.LOSSES`: each function has the name of the loss it re-implements.
LOSSES: dict[str, Callable] = {f.__name__: f for f in (cross_entropy, depth_l1, normals_l1, weighted_bce, balanced_bce)}


def total_loss(specs, labels: dict[str, torch.Tensor], predictions: dict[str, torch.Tensor]) -> torch.Tensor:
    """Sum over tasks of `loss_weight` x the task's loss (float32 scalar)."""
    total = torch.zeros((), device=next(iter(predictions.values())).device)
    for t in specs:
        if t.loss not in LOSSES:
            raise ValueError(f"Task {t.name!r}: no torch loss {t.loss!r}. Expected one of {sorted(LOSSES)}.")
        loss = LOSSES[t.loss](labels[t.name], predictions[t.name], ignore_value=t.ignore_value, **t.loss_options)
        total = total + t.loss_weight * loss
    return total


# ----------------------------------------------------------------------------- a timed run


@dataclasses.dataclass(frozen=True)
class ReferenceSetup:
    """One reference benchmark.

    Args:
        model: a timm HRNet name (`TIMM_MODELS`) or "tiny".
        dataset: task set of `keras_mtcl.tasks`: "nyud" or "pascal".
        size: (height, width), multiples of 32 (the coarsest branch has stride 32).
        batch: images per step.
        steps: timed steps.
        warmup: untimed steps first.
        lr: AdamW learning rate.
        seed: seed of the weights (the batch is always `make_batch`'s seed 0).
        cudnn_benchmark: `torch.backends.cudnn.benchmark` on CUDA.
    """

    model: str = "hrnet_w18"
    dataset: str = "nyud"
    size: tuple[int, int] = (448, 576)
    batch: int = 8
    steps: int = 20
    warmup: int = 5
    lr: float = 1e-4
    seed: int = 0
    cudnn_benchmark: bool = True

    def __post_init__(self):
        if self.steps < 1 or self.warmup < 0 or self.batch < 1:
            raise ValueError(
                "`steps` and `batch` must be >= 1 and `warmup` >= 0. "
                f"Received: steps={self.steps}, batch={self.batch}, warmup={self.warmup}"
            )
        if min(self.size) < 32 or any(s % 32 for s in self.size):
            raise ValueError(f"`size` must be multiples of 32 (the coarsest branch has stride 32). Received: size={self.size}")


def make_torch_batch(specs, batch: int, height: int, width: int, device, channels_last: bool):
    """`keras_mtcl.analysis.train_bench.make_batch` as NCHW torch tensors on `device`.

    Returns: image (B, 3, H, W) float32 and {task: label}: (B, C, H, W)
    float32 for every kind (the losses read class ids back as integers).
    """
    from keras_mtcl.analysis.train_bench import make_batch

    x, y = make_batch(specs, batch, height, width)
    image = torch.from_numpy(x).permute(0, 3, 1, 2).contiguous().to(device)
    if channels_last:
        image = image.contiguous(memory_format=torch.channels_last)
    labels = {t.name: torch.from_numpy(y[t.name]).float().permute(0, 3, 1, 2).contiguous().to(device) for t in specs}
    return image, labels


def resolve_device(name: str):
    """The torch device of "auto" (CUDA if torch sees one, else the CPU), "cuda" or "cpu"."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("`device` 'cuda': torch sees no CUDA device. Use 'cpu' or 'auto'. Received: device='cuda'")
    return torch.device(name)


def _sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_mode(setup: ReferenceSetup, mode: str, device) -> dict:
    """Builds the network for `mode`, runs warm-up and timed steps, returns the record (module docstring)."""
    from keras_mtcl.analysis import timing

    if mode not in MODES:
        raise ValueError(f"Unknown mode. Expected one of {MODES}. Received: mode={mode!r}")
    specs = task_lib.task_set(setup.dataset)
    bf16 = mode in ("bf16", "compile")
    torch.manual_seed(setup.seed)
    backbone, channels = build_backbone(setup.model)
    model = ReferenceNet(backbone, channels, specs).to(device)
    if bf16:
        model = model.to(memory_format=torch.channels_last)
    model.train()
    image, labels = make_torch_batch(specs, setup.batch, *setup.size, device=device, channels_last=bf16)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=setup.lr, weight_decay=0.004, eps=1e-7, fused=device.type == "cuda"
    )

    def forward_loss(x, y):
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            predictions = model(x)
        return total_loss(specs, y, predictions)

    if mode == "compile":
        forward_loss = torch.compile(forward_loss)

    def step():
        optimizer.zero_grad(set_to_none=True)
        loss = forward_loss(image, labels)
        loss.backward()
        optimizer.step()
        return loss.detach()

    if device.type == "cuda":
        torch.backends.cudnn.benchmark = setup.cudnn_benchmark
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    for _ in range(setup.warmup):
        step()
    _sync(device)
    warmup_s = time.perf_counter() - start
    times, losses = [], []
    for _ in range(setup.steps):
        start = time.perf_counter()
        losses.append(step())
        _sync(device)
        times.append(time.perf_counter() - start)
    loss_values = [float(v) for v in torch.stack(losses).cpu()]
    cuda = device.type == "cuda"
    record = {
        "backend": "torch-reference",
        "backbone": setup.model,
        "framework": "baseline",
        "dataset": setup.dataset,
        "size": list(setup.size),
        "batch": setup.batch,
        "precision": "bf16" if bf16 else "fp32",
        "mode": mode,
        "compiled": mode == "compile",
        "channels_last": bf16,
        "regularizer": False,
        **timing.step_statistics(times, setup.batch),
        "warmup_s": warmup_s,
        "peak_memory_mb": torch.cuda.max_memory_allocated(device) / 2**20 if cuda else timing.rss_peak_mb(),
        "parameters": count_parameters(model),
        "losses": loss_values,
        "device": torch.cuda.get_device_name(device) if cuda else "cpu",
        "torch": torch.__version__,
        "cudnn_allow_tf32": bool(torch.backends.cudnn.allow_tf32) if cuda else None,
        "cudnn_benchmark": setup.cudnn_benchmark if cuda else None,
    }
    if setup.model != "tiny":
        record["timm"] = _timm("The record's timm version").__version__
    if not all(math.isfinite(v) for v in loss_values):
        record["error"] = "non-finite loss"
    return record


def release(device) -> None:
    """Frees a finished mode's network, optimiser state and compiled graphs before the next one."""
    torch._dynamo.reset()
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


__all__ = ["LOSSES", "MODES", "TIMM_MODELS", "ReferenceNet", "ReferenceSetup", "TinyMultiBranch", "balanced_bce",
           "build_backbone", "count_parameters", "cross_entropy", "depth_l1", "make_torch_batch", "normals_l1",
           "release", "resolve_device", "run_mode", "total_loss", "weighted_bce"]
