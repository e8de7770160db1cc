"""Label kinds: no module branches on a kind's name, registries keyed by kind cover every kind, and one
validity rule serves the loss, the metrics, the regularizer and the augmentation."""

import re
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from harness import to_numpy
from keras_mtcl import kinds, losses, metrics, visualize
from keras_mtcl.contrastive import sample_triplets
from keras_mtcl.tasks import TaskSpec

ROOT = Path(__file__).resolve().parents[1]
KINDS = list(kinds.KINDS.values())


def spec_of(kind, name="custom"):
    """A task of `kind` with a name that no standard task has (classes: 4 classes)."""
    return TaskSpec(name, kind.name, channels=kind.output_channels or 4)


# ---------------------------------------------------------------------------
# (a) No module outside kinds.py branches on a kind's name.

_NAME = r"[\"'](?:classes|binary|depth|normals)[\"']"
# Each pattern reads one line of code (comments stripped). `dtype.kind` (numpy's type letter) is not a
# label kind; `KINDS[task.kind]` is the lookup of the kind object itself.
KIND_NAME_BRANCHES = {
    "kind compared to a string": re.compile(r"(?<!dtype\.)\bkind\s*(?:==|!=)\s*[rbuf]?[\"']"),
    "string compared to kind": re.compile(r"[\"'][\w.]*[\"']\s*(?:==|!=)\s*(?![\w.]*dtype\.kind\b)[\w.]*\bkind\b"),
    "kind in a literal collection": re.compile(r"(?<!dtype\.)\bkind\s+(?:not\s+)?in\s*[\(\[\{]"),
    "table indexed by a kind name": re.compile(r"(?<!KINDS)\[\s*(?:[\w.]*\.)?kind\s*\]"),
    "kind names as dict keys": re.compile(r"(?:^|[{,])\s*[\"'](?:classes|binary)[\"']\s*:"),
    "collection of kind names": re.compile(rf"[\(\[\{{]\s*(?:{_NAME}\s*,\s*)*[\"'](?:classes|binary)[\"']\s*,\s*{_NAME}"),
}
# Where a kind's name is data, not a branch: file formats and user configuration keyed by name.
ALLOWED = {
    # The folder manifest names each task's kind ("kind": "classes"): its schema table is the file format.
    "keras_mtcl/data/folder.py": (r"^\s*\"(classes|binary)\": _EntrySchema\(", r"_SCHEMAS\[entry\.kind\]"),
    # The regularizer's thresholds / ranking margins are configuration {kind name: value}.
    "keras_mtcl/analysis/consistency.py": (r"options\[\"(thresholds|ranking_margins)\"\]\[spec\.kind\]",),
}
# `kind` is a scene primitive ("box", "sphere", "cylinder") there, not a label kind.
EXCLUDED = {"keras_mtcl/kinds.py", "keras_mtcl/data/synthetic.py"}


def kind_name_branches(path: str, text: str) -> list[str]:
    found = []
    for number, line in enumerate(text.splitlines(), 1):
        code = line.split("#")[0]
        if any(re.search(allowed, code) for allowed in ALLOWED.get(path, ())):
            continue
        found += [f"{path}:{number}: {what}: {line.strip()}" for what, p in KIND_NAME_BRANCHES.items() if p.search(code)]
    return found


@pytest.mark.backend_independent
def test_the_kind_name_patterns_catch_branches_and_spare_the_rest():
    for line in (
        'if task.kind == "depth":',
        "elif kind != 'normals':",
        'if "binary" == spec.kind:',
        'if task.kind in ("classes", "binary"):',
        "if kind not in ['depth']:",
        "thresholds = DEFAULT_THRESHOLDS[task.kind]",
        "known = {...}[kind]",
        '    "classes": ["miou", "pixel_accuracy"],',
        'LOSS = {"binary": bce, "depth": l1}',
        '_DISCRETE_KINDS = ("classes", "binary")',
    ):
        assert kind_name_branches("x.py", line), line
    for line in (
        'if array.dtype.kind == "f":',
        "if self.kind not in KINDS:",
        "kind = KINDS[self.kind]",
        "PAINTERS[task.label_kind](task, values)",
        "(self.thresholds or {}).get(source.kind, source.label_kind.thresholds)",
        'TaskSpec(name="semseg", kind="classes", channels=40)',
        'tasks=("semseg", "depth", "normals", "edge")',
        'TaskSpec("segmentation", "classes", channels=5)',
        'if task.kind == other.kind:',
    ):
        assert not kind_name_branches("x.py", line), line


@pytest.mark.backend_independent
def test_no_module_branches_on_a_kind_name():
    files = [p for folder in ("keras_mtcl", "apps", "tools") for p in sorted((ROOT / folder).rglob("*.py"))]
    found = []
    for path in files:
        relative = path.relative_to(ROOT).as_posix()
        if relative not in EXCLUDED:
            found += kind_name_branches(relative, path.read_text())
    assert not found, "Ask the task's kind (`task.label_kind`) instead:\n" + "\n".join(found)


# ---------------------------------------------------------------------------
# (b) Registries keyed by kind cover every kind; (d) every kind's defaults exist.


@pytest.mark.parametrize("registry", [metrics.METRIC_BUILDERS, visualize.PAINTERS], ids=["METRIC_BUILDERS", "PAINTERS"])
@pytest.mark.backend_independent
def test_registries_keyed_by_kind_cover_every_kind(registry):
    assert set(registry) == set(KINDS)
    assert all(isinstance(kind, kinds.LabelKind) for kind in registry)


@pytest.mark.parametrize("kind", KINDS, ids=str)
def test_every_kind_defaults_are_buildable(kind):
    spec = spec_of(kind)
    assert spec.loss == kind.loss and kind.loss in losses.LOSSES
    assert set(kind.metrics) <= set(metrics.METRIC_BUILDERS[kind])
    built = metrics.task_metrics(spec)
    assert [m.name for m in built] == [f"custom_{m}" for m in kind.metrics if m not in metrics.NON_STREAMING_METRICS]
    # Every metric a kind knows has a direction, so any of them can be a task's main metric.
    assert set(metrics.METRIC_BUILDERS[kind]) <= set(metrics.HIGHER_IS_BETTER)
    assert isinstance(spec.higher_is_better, bool)


# ---------------------------------------------------------------------------
# (c) One validity rule everywhere.

NAN, INF = float("nan"), float("inf")
# Per kind: labels of one image row (1, 1, N, c) with valid, ignored and out-of-range pixels, and the mask.
CRAFTED = {
    kinds.CLASSES: ([[0], [3], [4], [255], [-1], [2]], [1, 1, 0, 0, 0, 1], "int32"),  # 4 classes
    kinds.BINARY: ([[0], [1], [2], [255], [-1]], [1, 1, 0, 0, 0], "int32"),
    kinds.DEPTH: ([[2.5], [5.0], [0.0], [-1.0], [NAN], [255.0], [INF]], [1, 1, 0, 0, 0, 0, 0], "float32"),
    kinds.NORMALS: (
        [[0, 0, 1], [0.6, 0, 0.8], [0, 0, 0], [255, 255, 255], [NAN, 0, 1], [INF, 0, 0], [0, 255, 0]],
        [1, 1, 0, 0, 0, 0, 0],
        "float32",
    ),
}


def crafted(kind, repeat=1):
    values, mask, dtype = CRAFTED[kind]
    labels = np.asarray(values * repeat, dtype)[None, None]
    return labels, np.asarray(mask * repeat, bool)[None, None]


@pytest.mark.backend_independent
def test_every_kind_has_a_crafted_case():
    assert set(CRAFTED) == set(KINDS)


@pytest.mark.parametrize("kind", KINDS, ids=str)
def test_valid_mask_is_the_same_in_numpy_keras_ops_and_tf_numpy(kind):
    spec = spec_of(kind)
    labels, expected = crafted(kind)
    np.testing.assert_array_equal(spec.valid_mask(labels, xp=np), expected)
    np.testing.assert_array_equal(to_numpy(spec.valid_mask(labels)), expected)
    np.testing.assert_array_equal(spec.valid_mask(labels, xp=tf.experimental.numpy).numpy(), expected)
    # The augmentation's side: inside a tf.data map.
    dataset = tf.data.Dataset.from_tensors(labels[0]).map(lambda y: spec.valid_mask(y, xp=tf.experimental.numpy))
    np.testing.assert_array_equal(next(iter(dataset)).numpy(), expected[0])


@pytest.mark.parametrize("kind", KINDS, ids=str)
def test_the_loss_sees_exactly_the_valid_pixels(kind):
    spec = spec_of(kind)
    labels, mask = crafted(kind)
    rng = np.random.default_rng(0)
    prediction = rng.normal(size=labels.shape[:3] + (spec.channels,)).astype("float32")
    loss = lambda p: float(to_numpy(losses.task_loss(spec, labels, p)))  # noqa: E731
    base = loss(prediction)
    assert np.isfinite(base)
    for pixel, valid in enumerate(mask[0, 0]):
        changed = prediction.copy()
        changed[0, 0, pixel] += rng.normal(size=spec.channels).astype("float32") + 0.5
        assert (loss(changed) != base) == valid, (pixel, valid)


def _valid_count(metric) -> int:
    """Pixels a streaming metric has counted: its confusion matrix total or its valid-pixel count."""
    for variable in ("confusion_matrix", "valid_histogram", "count"):
        if hasattr(metric, variable):
            return int(np.sum(to_numpy(getattr(metric, variable))))
    raise AssertionError(f"No pixel count in {type(metric).__name__}")


@pytest.mark.parametrize("kind", KINDS, ids=str)
def test_every_metric_counts_exactly_the_valid_pixels(kind):
    labels, mask = crafted(kind)
    prediction = np.random.default_rng(1).normal(size=labels.shape[:3] + (spec_of(kind).channels,)).astype("float32")
    spec = spec_of(kind).replace(metrics=tuple(metrics.METRIC_BUILDERS[kind]))
    built = metrics.task_metrics(spec)
    assert built
    for metric in built:
        metric.update_state(labels, prediction)
        assert _valid_count(metric) == mask.sum(), metric.name
        assert np.isfinite(float(to_numpy(metric.result()))), metric.name


@pytest.mark.parametrize("kind", KINDS, ids=str)
def test_the_regularizer_samples_exactly_the_valid_pixels(kind):
    # Every value repeated twice, so that each valid pixel has a positive and a negative; every pixel is an
    # anchor candidate: the anchors with a triplet are then exactly the valid pixels.
    spec = spec_of(kind)
    labels, mask = crafted(kind, repeat=2)
    pixels = labels.shape[2]
    u1 = keras.random.uniform((2, 1, pixels), seed=1)
    u2 = keras.random.uniform((1, 2 * pixels), seed=2)
    t = to_numpy(sample_triplets(spec, labels, (1, pixels), u1, u2, pixels, pixels, balance=False))
    used = t["weights"][0] > 0
    assert set(t["anchor"][0][used]) == set(np.flatnonzero(mask[0, 0]))
    for key in ("positive", "negative"):
        assert mask[0, 0][t[key][0][used]].all(), key
