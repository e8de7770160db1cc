"""Datasets and tf.data pipelines.

Modules are imported on demand (`from keras_mtcl.data import synthetic`), so
importing the package never pulls in TensorFlow or tensorflow-datasets.

Every dataset yields examples in one format: a dict with `"image"` (H, W, 3)
uint8 RGB, `"id"` (string) and one entry per task it carries, in the label
conventions of `keras_mtcl.tasks`.
"""
