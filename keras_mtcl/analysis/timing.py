"""Timing helpers shared by the benchmarks: alternating blocks, step statistics, CPU-seconds, peak memory.

On a shared machine, a slow spell hits whatever runs at that moment; the
benchmarks therefore time the things they compare in alternating blocks
(`alternating`: A B, then B A, ...), report medians next to means
(`step_statistics`), and measure compilation in CPU-seconds (`cpu_and_wall`:
the process's user + system time over all threads, steadier than wall time).
Nothing here imports TensorFlow, JAX or PyTorch at import time.

Example:
>>> [order for order in alternating(["baseline", "regularizer"], rounds=3)]
[['baseline', 'regularizer'], ['regularizer', 'baseline'], ['baseline', 'regularizer']]
>>> step_statistics([0.1, 0.2, 0.4], batch=8)  # doctest: +ELLIPSIS
{'steps': 3, 'step_ms': 233.3..., 'step_ms_median': 200.0, 'images_per_s': 34.28...}
"""

from __future__ import annotations

import math
import resource
import statistics
import time
from typing import Any, Callable, Iterator, Sequence, TypeVar

T = TypeVar("T")


def alternating(names: Sequence[T], rounds: int) -> Iterator[list[T]]:
    """The order of each of `rounds` rounds: `names`, then reversed, then `names` again, ..."""
    for round_index in range(rounds):
        yield list(names) if round_index % 2 == 0 else list(names)[::-1]


def step_statistics(times: Sequence[float], batch: int, elapsed: float | None = None) -> dict[str, float]:
    """Numbers of timed training steps.

    Args:
        times: seconds of each step.
        batch: images per step.
        elapsed: wall seconds of all steps together (default: the sum of `times`).

    Returns:
        {"steps", "step_ms" (mean, from `elapsed`), "step_ms_median",
        "images_per_s" (batch x steps / elapsed)}.
    """
    if not times:
        raise ValueError(f"`times` must hold at least one step. Received: times={list(times)}")
    elapsed = float(sum(times)) if elapsed is None else elapsed
    steps = len(times)
    return {
        "steps": steps,
        "step_ms": 1000 * elapsed / steps,
        "step_ms_median": 1000 * statistics.median(times),
        "images_per_s": batch * steps / elapsed,
    }


def cpu_and_wall(fn: Callable[[], Any]) -> tuple[Any, float, float]:
    """(fn(), CPU-seconds of the process while it ran (user + system, all threads), wall seconds)."""
    start_cpu, start = time.process_time(), time.perf_counter()
    result = fn()
    return result, time.process_time() - start_cpu, time.perf_counter() - start


def rss_peak_mb() -> float:
    """The process's peak resident memory so far, MiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def peak_memory_mb() -> float:
    """Peak accelerator memory of the Keras backend where it reports one, else `rss_peak_mb()`.

    PyTorch: `torch.cuda.max_memory_allocated` (since its last reset); JAX:
    the first device's `peak_bytes_in_use`; TensorFlow: the first GPU's
    peak. These are best effort: any failure falls back to the process RSS.
    """
    import keras

    from keras_mtcl import optional

    backend = keras.backend.backend()
    purpose = "Peak memory of the backend"
    try:
        if backend == "jax":
            jax = optional.import_optional("jax", "jax", purpose)
            stats = jax.devices()[0].memory_stats() or {}
            if "peak_bytes_in_use" in stats:
                return stats["peak_bytes_in_use"] / 2**20
        if backend == "torch":
            torch = optional.import_optional("torch", "torch", purpose)
            if torch.cuda.is_available():
                return torch.cuda.max_memory_allocated() / 2**20
        if backend == "tensorflow":
            import tensorflow as tf

            if tf.config.list_physical_devices("GPU"):
                return tf.config.experimental.get_memory_info("GPU:0")["peak"] / 2**20
    except Exception:  # memory statistics are best effort; fall back to the process RSS
        pass
    return rss_peak_mb()


def make_step_timer():
    """A `keras.callbacks.Callback` that records the wall time of every training step.

    A step counts as ended when its loss is on the host: Keras converts a
    step's logs (loss, metrics) to Python floats before it calls a callback
    that defines `on_train_batch_end`, which waits for the step's device work
    (on JAX the loss is an output of the same executable as the updated
    weights; on PyTorch the copy waits for every kernel queued before it,
    the optimizer's included). Should a Keras version hand over the logs
    unconverted, the callback reads the smallest trainable weight instead.
    The callback's `times` holds the seconds between consecutive step ends,
    the first measured from the start of step 0; `weight_reads` counts the
    steps that needed the weight read.
    """
    import keras

    class StepTimer(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.times: list[float] = []
            self.weight_reads = 0  # steps whose logs were not on the host
            self._last = None
            self._index = 0

        def on_train_begin(self, logs=None):
            self.times, self._last = [], None
            sizes = [math.prod(w.shape) for w in self.model.trainable_weights]
            self._index = sizes.index(min(sizes))

        def on_train_batch_begin(self, batch, logs=None):
            if self._last is None:
                self._last = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            if not isinstance((logs or {}).get("loss"), float):
                # `self.model` attaches the JAX training state to the variables (a cost per variable).
                keras.ops.convert_to_numpy(self.model.trainable_weights[self._index])
                self.weight_reads += 1
            now = time.perf_counter()
            self.times.append(now - self._last)
            self._last = now

    return StepTimer()


__all__ = ["alternating", "cpu_and_wall", "make_step_timer", "peak_memory_mb", "rss_peak_mb", "step_statistics"]
