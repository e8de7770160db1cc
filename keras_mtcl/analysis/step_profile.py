"""Where a training step's time goes: the backend's own profiler over a few `fit` steps, summed per operation.

The step is `keras_mtcl.analysis.train_bench`'s (same model, batch,
optimiser, warm-up), profiled by the backend's profiler:

- JAX: `jax.profiler.trace` writes a Perfetto trace; every event that names
  an XLA instruction (`args.hlo_op`) counts, summed per instruction kind (the
  name without its `.N` suffix: `convolution`, `loop_fusion`, ...).
- PyTorch: `torch.profiler.profile` on the CPU (and CUDA when present);
  each operator's self time (`aten::mkldnn_convolution`, ...).
- TensorFlow: not profiled here (TensorBoard's profiler reads its traces).

Times add up over every thread, so on a CPU with several threads the sum of
the operations can exceed the step's wall time; `op_ms_per_step` beside
`wall_ms_per_step` shows how much of the step the operations fill. What the
profiler itself adds is in both.

Example:
>>> kind_of("loop_fusion.12"), kind_of("convolution"), kind_of("aten::add_")
('loop_fusion', 'convolution', 'aten::add_')
"""

from __future__ import annotations

import collections
import gzip
import json
import re
import tempfile
from pathlib import Path
from typing import Callable

from keras_mtcl import optional
from keras_mtcl.analysis import train_bench

PROFILED_BACKENDS = ("jax", "torch")


def kind_of(op: str) -> str:
    """An XLA instruction's kind (its name without the `.N` suffix); other names as they are."""
    return re.sub(r"\.\d+$", "", op)


def _jax_ops(run: Callable[[], None]) -> dict[str, float]:
    profiler = optional.import_optional("jax.profiler", "jax", "Profiling a JAX training step")

    with tempfile.TemporaryDirectory() as folder:
        with profiler.trace(folder, create_perfetto_trace=True):
            run()
        trace = next(Path(folder).rglob("perfetto_trace.json.gz"))
        with gzip.open(trace, "rt") as stream:
            events = json.load(stream)["traceEvents"]
    totals: dict[str, float] = collections.Counter()
    for event in events:
        op = event.get("args", {}).get("hlo_op")
        if event.get("ph") == "X" and op:
            totals[kind_of(op)] += event["dur"] / 1000.0  # microseconds
    return totals


def _torch_ops(run: Callable[[], None]) -> dict[str, float]:
    torch = optional.import_optional("torch", "torch", "Profiling a PyTorch training step")
    profiler_module = optional.import_optional("torch.profiler", "torch", "Profiling a PyTorch training step")
    ProfilerActivity, profile = profiler_module.ProfilerActivity, profiler_module.profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.cuda.is_available() else [])
    with profile(activities=activities) as profiler:
        run()
    totals: dict[str, float] = collections.Counter()
    for event in profiler.key_averages():
        device_us = getattr(event, "self_device_time_total", 0) or 0
        totals[event.key] += (event.self_cpu_time_total + device_us) / 1000.0
    return totals


def profile_step(setup: train_bench.BenchSetup, regularized: bool = False, steps: int = 3, top: int = 15) -> dict:
    """Profiles `steps` training steps of one configuration, after `setup.warmup` untimed ones.

    Args:
        setup: the benchmark (backbone, decoder, tasks, size, batch, precision, warm-up).
        regularized: with the contrastive regularizer.
        steps: profiled steps.
        top: operations listed, the most time first.

    Returns:
        {"backend", "regularizer", "steps", "wall_ms_per_step" (profiled steps),
        "op_ms_per_step" (all operations), "ops": [{"op", "ms_per_step",
        "share"} ...]}, `share` the operation's part of all operations' time.

    Raises:
        ValueError: on a backend other than JAX and PyTorch.
    """
    import keras

    backend = keras.backend.backend()
    if backend not in PROFILED_BACKENDS:
        raise ValueError(
            f"Profiles steps on {list(PROFILED_BACKENDS)}; on TensorFlow use TensorBoard's profiler. "
            f"Received: backend={backend!r}"
        )
    if steps < 1 or top < 1:
        raise ValueError(f"`steps` and `top` must be >= 1. Received: steps={steps}, top={top}")
    trainer, data, _ = train_bench.build_trainer(setup, regularized)
    elapsed = []

    def run() -> None:
        elapsed.append(train_bench.timed_fit(trainer, data, steps)[1])

    totals = (_jax_ops if backend == "jax" else _torch_ops)(run)
    return {
        "backend": backend,
        "backbone": setup.backbone,
        "framework": setup.framework,
        "size": list(setup.size),
        "batch": setup.batch,
        "precision": setup.precision,
        "regularizer": regularized,
        "steps": steps,
        "wall_ms_per_step": elapsed[0] * 1000.0 / steps,
        "op_ms_per_step": sum(totals.values()) / steps,
        "ops": ranked_ops(totals, steps, top),
    }


def ranked_ops(totals: dict[str, float], steps: int, top: int) -> list[dict]:
    """The `top` operations of profiled `steps`, the most time first, with each one's share of all operations.

    Example:
    >>> ranked_ops({"conv": 30.0, "add": 10.0, "mul": 60.0}, steps=2, top=2)
    [{'op': 'mul', 'ms_per_step': 30.0, 'share': 0.6}, {'op': 'conv', 'ms_per_step': 15.0, 'share': 0.3}]
    """
    everything = sum(totals.values())
    ranked = sorted(totals.items(), key=lambda item: -item[1])[:top]
    return [{"op": op, "ms_per_step": ms / steps, "share": ms / everything if everything else 0.0} for op, ms in ranked]


def table(profile: dict) -> str:
    """`profile_step`'s operations as a fixed-width table."""
    rows = [("op", "ms/step", "share")]
    rows += [(o["op"], f"{o['ms_per_step']:.1f}", f"{100 * o['share']:.1f} %") for o in profile["ops"]]
    width = max(len(r[0]) for r in rows)
    lines = [f"{r[0].ljust(width)}  {r[1]:>9}  {r[2]:>8}" for r in rows]
    head = (f"{profile['backend']}: {profile['wall_ms_per_step']:.1f} ms per step (wall), "
            f"{profile['op_ms_per_step']:.1f} ms of operations per step")
    return "\n".join([head, *lines])


__all__ = ["PROFILED_BACKENDS", "kind_of", "profile_step", "ranked_ops", "table"]
