"""Data-parallel training on the engines that exist: Keras distribution (JAX), tf.distribute (TensorFlow).

`data_parallel()` returns a context manager; build the model and its
trainer, compile and call `fit` inside it:

    with distribute.data_parallel() as replicas:
        model = MultiTaskModel(...)  # or training.build_model(config, specs)
        trainer = MultiTaskTrainer(model, regularizer=...)  # or training.build_trainer(config, model)
        trainer.compile(...)
        trainer.fit(dataset)  # global batch, split over `replicas` devices
    model.save("model.keras")  # the trained inference model

- JAX: `keras.distribution.DataParallel` over every local device (GPUs, or
  CPU devices made with `XLA_FLAGS=--xla_force_host_platform_device_count=N`).
  Several hosts: set `KERAS_DISTRIBUTION_JOB_ADDRESSES`,
  `KERAS_DISTRIBUTION_NUM_PROCESSES` and `KERAS_DISTRIBUTION_PROCESS_ID` on each
  host (`data_parallel` then calls `keras.distribution.initialize()`), or call
  `keras.distribution.initialize(...)` yourself first; the devices of all hosts
  then form one data-parallel mesh.
- TensorFlow: `tf.distribute.MirroredStrategy` over the local GPUs (or
  logical CPU devices). Several hosts: set `TF_CONFIG` on each worker and
  pass `multi_worker=True` (`MultiWorkerMirroredStrategy`).
- PyTorch: Keras 3.15 has no distribution support for the torch backend;
  asking for it raises an error rather than silently training on one device.

Batch normalisation: JAX's DataParallel computes batch statistics over the
global batch (one SPMD program); MirroredStrategy computes them per replica,
as PyTorch's DataParallel does without SyncBatchNorm.
"""

from __future__ import annotations

import contextlib
import os
from typing import Iterator

import keras

_initialized: list[bool] = []  # keras.distribution.initialize() may run once per process


class DistributionError(RuntimeError):
    """Distributed training was asked for on a backend or setup that cannot do it."""


@contextlib.contextmanager
def data_parallel(devices: list[str] | None = None, multi_worker: bool = False) -> Iterator[int]:
    """Context in which models built, compiled and fitted train data-parallel.

    Args:
        devices: devices to use (default: every local accelerator; on a
            machine without one, JAX's CPU devices or TensorFlow's GPUs,
            i.e. one CPU). JAX names look like `"cpu:0"`, TensorFlow's like
            `"/cpu:0"`.
        multi_worker: TensorFlow only: use `MultiWorkerMirroredStrategy`
            (configured by the `TF_CONFIG` environment variable).

    Yields:
        The number of replicas the global batch is split over.

    Raises:
        DistributionError: on the torch backend.
    """
    backend = keras.backend.backend()
    if backend == "jax":
        if os.environ.get("KERAS_DISTRIBUTION_JOB_ADDRESSES") and not _initialized:
            # Several hosts: join the job described by the KERAS_DISTRIBUTION_* variables.
            keras.distribution.initialize()
            _initialized.append(True)
        devices = devices or keras.distribution.list_devices()
        previous = keras.distribution.distribution()
        keras.distribution.set_distribution(keras.distribution.DataParallel(devices=devices))
        try:
            yield len(devices)
        finally:
            keras.distribution.set_distribution(previous)
    elif backend == "tensorflow":
        import tensorflow as tf

        if multi_worker:
            strategy = tf.distribute.MultiWorkerMirroredStrategy()
        else:
            strategy = tf.distribute.MirroredStrategy(devices=devices)
        with strategy.scope():
            yield strategy.num_replicas_in_sync
    else:
        raise DistributionError(
            "Distributed training runs on the JAX backend (keras.distribution) or the TensorFlow backend "
            "(tf.distribute); Keras 3.15 has none for torch. Start with KERAS_BACKEND=jax or tensorflow, or "
            f"train without --distribute. Received: backend={backend!r}"
        )
