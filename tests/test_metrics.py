"""Streaming metrics and delta_m against values computed by hand (arithmetic in each comment)."""

import doctest
import math

import keras
import numpy as np
import pytest
from keras import ops

from keras_mtcl import metrics, tasks
from tests.harness import assert_round_trip


def _value(x):
    return np.asarray(ops.convert_to_numpy(x), np.float64)


def _one_hot_logits(classes, num_classes):
    """(B, H, W) class ids -> (B, H, W, C) logits whose argmax is that class."""
    return np.eye(num_classes, dtype="float32")[np.asarray(classes)] * 4.0


def _logit(p):
    p = np.asarray(p, np.float64)
    return np.log(p / (1 - p)).astype("float32")


# ------------------------------------------------------------------ mIoU


def _miou_case():
    # Pixels (label, prediction): (0,0) (0,0) (0,1) (1,1) (1,1) and three ignored (255; predicted 1, 1, 0).
    # Confusion (rows labels): class 0 [2, 1, 0]; class 1 [0, 2, 0]; class 2 [0, 0, 0].
    # IoU0 = 2 / (2 + 0 + 1) = 2/3; IoU1 = 2 / (2 + 1 + 0) = 2/3 (if the ignored pixels predicted 1 were
    # false positives it would be 2/5); class 2 is absent and counts 0: mIoU = (4/3) / 3 = 4/9.
    labels = np.array([[[0, 0, 0, 1], [1, 255, 255, 255]]], "int32")[..., None]
    predicted = np.array([[[0, 0, 1, 1], [1, 1, 1, 0]]])
    return labels, _one_hot_logits(predicted, 3)


def test_mean_iou_absent_class_counts_zero_and_ignore_is_never_a_false_positive():
    labels, logits = _miou_case()
    metric = metrics.MeanIoU(num_classes=3)
    metric.update_state(labels[:, :, :3], logits[:, :, :3])
    metric.update_state(labels[:, :, 3:], logits[:, :, 3:])  # streaming: split across two batches
    np.testing.assert_allclose(_value(metric.per_class_iou()), [200 / 3, 200 / 3, 0.0], rtol=1e-6)
    assert float(_value(metric.result())) == pytest.approx(400 / 9, rel=1e-6)
    np.testing.assert_array_equal(_value(metric.confusion_matrix), [[2, 1, 0], [0, 2, 0], [0, 0, 0]])
    metric.reset_state()
    assert float(_value(metric.result())) == 0.0


def test_pixel_accuracy_counts_valid_pixels_only():
    # 4 of the 5 valid pixels are right: 80 %; a rank-3 label gives the same.
    labels, logits = _miou_case()
    metric = metrics.PixelAccuracy(num_classes=3)
    metric.update_state(labels[..., 0], logits)
    assert float(_value(metric.result())) == pytest.approx(80.0, rel=1e-6)


# ------------------------------------------------------------------ depth


def test_depth_rmse_is_pixel_wise_over_the_split_not_per_image():
    # Image A: one valid pixel, gt 3, prediction -5 clamped to ~0: squared error 9 (gt 0 and 255 ignored).
    # Image B: three valid pixels with error 1 each. Pixel-wise: sqrt((9 + 1 + 1 + 1) / 4) = sqrt(3).
    # Per image it would be mean(3, 1) = 2 (or sqrt(mean(9, 1)) = sqrt(5)).
    gt_a = np.array([[[3.0, 0.0, 255.0, 0.0]]], "float32")[..., None]
    pred_a = np.array([[[-5.0, 7.0, 1.0, 2.0]]], "float32")[..., None]
    gt_b = np.array([[[1.0, 2.0, 4.0, 0.0]]], "float32")[..., None]
    pred_b = np.array([[[2.0, 3.0, 5.0, 9.0]]], "float32")[..., None]
    metric = metrics.DepthMetric("rmse")
    metric.update_state(gt_a, pred_a)
    metric.update_state(gt_b, pred_b)
    assert float(_value(metric.result())) == pytest.approx(math.sqrt(3.0), rel=1e-6)
    assert float(_value(metric.result())) != pytest.approx(2.0, rel=1e-3)


@pytest.mark.parametrize(
    "statistic, expected",
    [
        # gt [1, 2, 4] (0 ignored), prediction [2, 2, 1].
        ("rmse", math.sqrt((1 + 0 + 9) / 3)),
        # log errors -ln 2, 0, 2 ln 2: sqrt(5 ln^2 2 / 3).
        ("log_rmse", math.log(2) * math.sqrt(5 / 3)),
        # |1-2|/1 = 1, 0, |4-1|/4 = 0.75: mean 1.75 / 3.
        ("abs_rel", 1.75 / 3),
        # max ratios 2, 1, 4: only the second is < 1.25: 1/3 = 33.3 %.
        ("delta1", 100 / 3),
    ],
)
def test_depth_statistics(statistic, expected):
    gt = np.array([[[1.0, 2.0], [4.0, 0.0]]], "float32")[..., None]
    pred = np.array([[[2.0, 2.0], [1.0, 5.0]]], "float32")[..., None]
    metric = metrics.DepthMetric(statistic)
    metric.update_state(gt, pred)
    assert float(_value(metric.result())) == pytest.approx(expected, rel=1e-5)


# ------------------------------------------------------------------ normals


def _normals_case():
    # Valid pixels: (0,0,1) vs (0,0,2): 0 deg; (0,0,1) vs (1,0,1): 45 deg; (1,0,0) vs (0,5,0): 90 deg;
    # (0,0,1) vs (0, sin 10, cos 10): 10 deg. Ignored: a zero label and a 255 label.
    s, c = math.sin(math.radians(10)), math.cos(math.radians(10))
    labels = np.array([[[[0, 0, 1], [0, 0, 1], [1, 0, 0]], [[0, 0, 1], [0, 0, 0], [255, 255, 255]]]], "float32")
    pred = np.array([[[[0, 0, 2], [1, 0, 1], [0, 5, 0]], [[0, s, c], [1, 1, 1], [0, 1, 0]]]], "float32")
    return labels, pred


@pytest.mark.parametrize(
    "statistic, expected, tolerance",
    [
        ("mean_angle", (0 + 45 + 90 + 10) / 4, 1e-3),
        # Sorted [0, 10, 45, 90]: (10 + 45) / 2; the histogram is exact to half a bin.
        ("median_angle", 27.5, metrics.MEDIAN_BIN_DEGREES / 2 + 1e-4),
        ("rmse_angle", math.sqrt((0 + 45**2 + 90**2 + 10**2) / 4), 1e-3),
        ("within_11.25", 50.0, 1e-4),  # 0 and 10 degrees
        ("within_22.5", 50.0, 1e-4),
        ("within_30", 50.0, 1e-4),
    ],
)
def test_normals_angles_of_known_vectors(statistic, expected, tolerance):
    labels, pred = _normals_case()
    metric = metrics.NormalsMetric(statistic)
    metric.update_state(labels, pred)
    assert float(_value(metric.result())) == pytest.approx(expected, abs=tolerance)


def test_normals_median_of_an_odd_count_and_zero_prediction_is_90_degrees():
    # Angles 0 (equal vectors), 90 (zero prediction vector, as the reference's normalisation gives)
    # and 45: median 45, mean 45.
    labels = np.array([[[[0, 0, 1], [0, 0, 1], [0, 0, 1]]]], "float32")
    pred = np.array([[[[0, 0, 3], [0, 0, 0], [0, 1, 1]]]], "float32")
    median = metrics.NormalsMetric("median_angle")
    mean = metrics.NormalsMetric("mean_angle")
    median.update_state(labels, pred)
    mean.update_state(labels, pred)
    assert float(_value(median.result())) == pytest.approx(45.0, abs=metrics.MEDIAN_BIN_DEGREES / 2 + 1e-4)
    assert float(_value(mean.result())) == pytest.approx(45.0, abs=1e-3)


# ------------------------------------------------------------------ saliency, edge proxy


def _saliency_case():
    # Labels [1, 1, 0, 0] and one ignored pixel; probabilities [0.92, 0.33, 0.62, 0.12] (0.99 ignored).
    labels = np.array([[[1, 1], [0, 0], [255, 255]]], "float32")[..., None]
    logits = _logit([[[0.92, 0.33], [0.62, 0.12], [0.99, 0.99]]])[..., None]
    return labels, logits


def test_saliency_maxf_on_a_tiny_known_map():
    # Positives at t (p >= t): t <= .12: all 4, TP 2, P 1/2, R 1: F = 1.3 * .5 / (.15 + 1) = .5652;
    # .12 < t <= .33: 3, TP 2, P 2/3, R 1: F = 1.3 * 2/3 / 1.2 = .7222;
    # .33 < t <= .62: 2, TP 1: P = R = .5: F = .5; .62 < t <= .92: 1, TP 1, P 1, R .5: F = .65 / .8 = .8125;
    # t > .92: none: F 0. maxF = 81.25.
    labels, logits = _saliency_case()
    metric = metrics.SaliencyMaxF()
    metric.update_state(labels, logits)
    assert float(_value(metric.result())) == pytest.approx(81.25, rel=1e-5)
    f = _value(metric.f_scores())
    thresholds = np.array(metrics.SALIENCY_THRESHOLDS)
    np.testing.assert_allclose(f[thresholds == 0.3], [1.3 * 2 / 3 / 1.2 * 100], rtol=1e-5)
    np.testing.assert_allclose(f[thresholds == 0.95], [0.0])


def test_saliency_double_sigmoid_is_only_an_option():
    # Labels [1, 0], probabilities [0.2, 0.1]: at t = 0.15 and 0.2 only the positive is predicted: F = 100.
    # A second sigmoid maps them to 0.5498 and 0.5250: no threshold separates them (0.5 takes both,
    # P .5, R 1: F = .65 / 1.15 = 56.52; 0.55 takes none).
    labels = np.array([[[1, 0]]], "float32")[..., None]
    logits = _logit([[[0.2, 0.1]]])[..., None]
    plain, quirk = metrics.SaliencyMaxF(), metrics.SaliencyMaxF(double_sigmoid=True)
    plain.update_state(labels, logits)
    quirk.update_state(labels, logits)
    assert float(_value(plain.result())) == pytest.approx(100.0, rel=1e-5)
    assert float(_value(quirk.result())) == pytest.approx(100 * 0.65 / 1.15, rel=1e-5)


def test_binary_miou_at_half():
    # Predicted foreground at p >= .5: [1, 0, 1, 0] for labels [1, 1, 0, 0] (ignored pixel skipped):
    # background row [1, 1], foreground row [1, 1]: IoU 1/3 each, mIoU 33.3.
    labels, logits = _saliency_case()
    metric = metrics.BinaryMeanIoU()
    metric.update_state(labels, logits)
    assert float(_value(metric.result())) == pytest.approx(100 / 3, rel=1e-5)


def test_edge_loss_proxy_is_the_weighted_bce_per_valid_pixel_over_batches():
    # Batch 1: labels 1 (logit 2), 0 (0), 0 (0), 255 ignored: .95 softplus(-2) + .05 * 2 log 2.
    # Batch 2: label 1 (logit 0): .95 log 2. Sum over the 4 valid pixels / 4.
    metric = metrics.EdgeLossProxy()
    labels = np.array([[[1, 0], [0, 255]]], "float32")[..., None]
    logits = np.array([[[2.0, 0.0], [0.0, 9.0]]], "float32")[..., None]
    metric.update_state(labels, logits)
    metric.update_state(np.ones((1, 1, 1, 1), "float32"), np.zeros((1, 1, 1, 1), "float32"))
    expected = (0.95 * math.log1p(math.exp(-2.0)) + 0.05 * 2 * math.log(2.0) + 0.95 * math.log(2.0)) / 4
    assert float(_value(metric.result())) == pytest.approx(expected, rel=1e-5)


# ------------------------------------------------------------------ inside model.evaluate


def test_metrics_inside_model_evaluate_compiled():
    """One compiled evaluate over two batches gives the hand values above, on every backend."""
    miou_labels, miou_logits = _miou_case()
    normals_labels, normals_pred = _normals_case()
    sal_labels, sal_logits = _saliency_case()
    depth_gt = np.array([[[3.0, 0.0, 255.0, 0.0]], [[1.0, 2.0, 4.0, 0.0]]], "float32")[..., None]
    depth_pred = np.array([[[-5.0, 7.0, 1.0, 2.0]], [[2.0, 3.0, 5.0, 9.0]]], "float32")[..., None]

    def pair(x):  # two identical images, so the expected ratios do not change
        return np.concatenate([x, x])

    x = {
        "in_semseg": pair(miou_logits),
        "in_depth": depth_pred,
        "in_normals": pair(normals_pred),
        "in_saliency": pair(sal_logits),
    }
    y = {
        "semseg": pair(miou_labels),
        "depth": depth_gt,
        "normals": pair(normals_labels),
        "saliency": pair(sal_labels),
    }
    inputs = {k: keras.Input(v.shape[1:], name=k) for k, v in x.items()}
    outputs = {k: keras.layers.Identity(name=k)(inputs[f"in_{k}"]) for k in y}
    model = keras.Model(inputs, outputs)
    model.compile(
        loss={"depth": "mae"},
        metrics={
            "semseg": metrics.task_metrics(tasks.semseg(num_classes=3), prefix=False),
            "depth": [metrics.DepthMetric("rmse", name="rmse")],
            "normals": [metrics.NormalsMetric("median_angle", name="median_angle")],
            "saliency": metrics.task_metrics(tasks.saliency(), prefix=False),
        },
        jit_compile=keras.backend.backend() != "torch",
    )
    result = model.evaluate(x, y, batch_size=1, verbose=0, return_dict=True)
    assert result["semseg_miou"] == pytest.approx(400 / 9, rel=1e-5)
    assert result["semseg_pixel_accuracy"] == pytest.approx(80.0, rel=1e-5)
    assert result["depth_rmse"] == pytest.approx(math.sqrt(3.0), rel=1e-5)
    assert result["normals_median_angle"] == pytest.approx(27.5, abs=metrics.MEDIAN_BIN_DEGREES / 2 + 1e-4)
    assert result["saliency_maxf"] == pytest.approx(81.25, rel=1e-5)
    assert result["saliency_miou"] == pytest.approx(100 / 3, rel=1e-5)


# ------------------------------------------------------------------ factory, config, errors


def test_task_metrics_names_and_kinds():
    assert [m.name for m in metrics.task_metrics(tasks.semseg(21))] == ["semseg_miou", "semseg_pixel_accuracy"]
    assert metrics.task_metrics(tasks.semseg(21))[0].num_classes == 21
    assert [m.name for m in metrics.task_metrics(tasks.normals())] == [
        "normals_mean_angle",
        "normals_median_angle",
        "normals_within_11.25",
        "normals_within_22.5",
        "normals_within_30",
    ]
    # odsf is the Python boundary benchmark's (keras_mtcl.edge_eval), not a streaming metric.
    (edge,) = metrics.task_metrics(tasks.edge(pos_weight=0.9))
    assert (edge.name, type(edge), edge.pos_weight) == ("edge_weighted_bce", metrics.EdgeLossProxy, 0.9)
    assert [m.name for m in metrics.task_metrics(tasks.saliency(), prefix=False)] == ["maxf", "miou"]
    with pytest.raises(ValueError, match=r"Unknown metric for task 'depth'.*Received: metric='miou'"):
        metrics.task_metrics(tasks.depth().replace(metrics=("miou",)))
    # The boundary benchmark's names belong to binary tasks only.
    with pytest.raises(ValueError, match=r"of kind 'depth'. Expected one of \['rmse'.*Received: metric='odsf'"):
        metrics.task_metrics(tasks.depth().replace(metrics=("odsf",)))


def test_a_custom_named_task_gets_the_metrics_of_its_kind():
    spec = tasks.TaskSpec("segmentation", "classes", channels=5)
    built = metrics.task_metrics(spec)
    assert [m.name for m in built] == ["segmentation_miou", "segmentation_pixel_accuracy"]
    assert isinstance(built[0], metrics.MeanIoU) and built[0].num_classes == 5
    contour = tasks.TaskSpec("contour", "binary", metrics=("odsf", "weighted_bce"), loss_options={"pos_weight": 0.8})
    (proxy,) = metrics.task_metrics(contour)
    assert (proxy.name, proxy.pos_weight) == ("contour_weighted_bce", 0.8)


@pytest.mark.parametrize(
    "metric, changed",
    [
        (metrics.MeanIoU(5, ignore_index=0, name="m"), {"num_classes": 5, "ignore_index": 0}),
        (metrics.PixelAccuracy(4), {"num_classes": 4}),
        (metrics.BinaryMeanIoU(threshold=0.3, double_sigmoid=True), {"threshold": 0.3, "double_sigmoid": True}),
        (metrics.DepthMetric("abs_rel", ignore_value=-1), {"statistic": "abs_rel", "ignore_value": -1}),
        (metrics.NormalsMetric("within_30"), {"statistic": "within_30"}),
        (
            metrics.SaliencyMaxF(thresholds=[0.25, 0.5], beta_squared=1.0, double_sigmoid=True),
            {"thresholds": [0.25, 0.5], "beta_squared": 1.0, "double_sigmoid": True},
        ),
        (metrics.EdgeLossProxy(pos_weight=0.8, double_sigmoid=True), {"pos_weight": 0.8, "double_sigmoid": True}),
    ],
)
def test_config_round_trip(metric, changed):
    restored = assert_round_trip(metric, **changed)
    assert restored.name == metric.name


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda: metrics.MeanIoU(1), r"`num_classes` must be an integer >= 2. Received: num_classes=1"),
        (lambda: metrics.DepthMetric("mae"), r"`statistic` must be one of .*Received: statistic='mae'"),
        (lambda: metrics.NormalsMetric("mean"), r"`statistic` must be one of .*Received: statistic='mean'"),
        (lambda: metrics.SaliencyMaxF(thresholds=[0.5, 0.2]), r"increasing values in \(0, 1\). Received: thresholds"),
        (lambda: metrics.SaliencyMaxF(beta_squared=0), r"`beta_squared` must be > 0. Received: beta_squared=0"),
        (lambda: metrics.BinaryMeanIoU(threshold=1.0), r"`threshold` must be in \(0, 1\). Received: threshold=1.0"),
        (lambda: metrics.EdgeLossProxy(pos_weight=2), r"`pos_weight` must be in \[0, 1\]. Received: pos_weight=2"),
    ],
)
def test_constructor_errors(build, message):
    with pytest.raises(ValueError, match=message):
        build()


def test_update_errors():
    miou = metrics.MeanIoU(3)
    with pytest.raises(ValueError, match=r"label's spatial size.*Received: y_true spatial size \(2, 4\)"):
        miou.update_state(np.zeros((1, 2, 4, 1)), np.zeros((1, 2, 3, 3), "float32"))
    with pytest.raises(ValueError, match=r"expects y_pred with 3 channel\(s\). Received: y_pred.shape"):
        miou.update_state(np.zeros((1, 2, 4, 1)), np.zeros((1, 2, 4, 2), "float32"))
    with pytest.raises(ValueError, match=r"does not take sample weights.*Received: sample_weight is not None"):
        miou.update_state(np.zeros((1, 2, 4, 1)), np.zeros((1, 2, 4, 3), "float32"), sample_weight=np.ones(1))
    with pytest.raises(ValueError, match=r"one channel.*Received: y_true.shape"):
        miou.update_state(np.zeros((1, 2, 4, 2)), np.zeros((1, 2, 4, 3), "float32"))
    with pytest.raises(ValueError, match=r"NormalsMetric expects y_true of shape \(B, H, W, 3\). Received"):
        metrics.NormalsMetric().update_state(np.zeros((1, 2, 4, 1)), np.zeros((1, 2, 4, 3), "float32"))
    with pytest.raises(ValueError, match=r"expects y_pred of shape \(B, H, W, C\). Received: y_pred.shape"):
        metrics.DepthMetric().update_state(np.zeros((1, 2, 4, 1)), np.zeros((1, 2, 4), "float32"))


def test_module_examples():
    assert doctest.testmod(metrics).failed == 0


# ------------------------------------------------------------------ delta_m


@pytest.mark.backend_independent
def test_delta_m_signs_follow_the_direction_table():
    # semseg mIoU 44 vs 40: +10 %; depth RMSE 0.45 vs 0.50 (lower is better): +10 %;
    # normals mean angle 24 vs 20 (lower is better): -20 %; edge odsF 70 vs 70: 0. Mean (10+10-20+0)/4 = 0.
    results = {"semseg_miou": 44.0, "depth_rmse": 0.45, "normals_mean_angle": 24.0, "edge_odsf": 70.0, "extra": 1.0}
    baselines = {"semseg_miou": 40.0, "depth_rmse": 0.5, "normals_mean_angle": 20.0, "edge_odsf": 70.0}
    out = metrics.delta_m(results, baselines)
    per_task = {t: v["delta"] for t, v in out["per_task"].items()}
    assert per_task == pytest.approx({"semseg": 10.0, "depth": 10.0, "normals": -20.0, "edge": 0.0})
    assert out["delta_m"] == pytest.approx(0.0, abs=1e-9)
    assert out["per_task"]["depth"]["higher_is_better"] is False
    # Choosing another metric per task: depth abs-rel 0.2 vs 0.1 is 100 % worse.
    only_depth = metrics.delta_m({"depth_abs_rel": 0.2}, {"depth_abs_rel": 0.1}, metrics={"depth": "abs_rel"})
    assert only_depth["delta_m"] == pytest.approx(-100.0)


@pytest.mark.backend_independent
def test_delta_m_reads_the_main_metric_of_each_given_task():
    # A custom-named classes task (main metric mIoU) and depth: mIoU 30 vs 40 is -25 %, RMSE 0.4 vs 0.5 is
    # +20 %: mean -2.5 %. Without `tasks`, "segmentation" is no standard task and is left out.
    specs = [tasks.TaskSpec("segmentation", "classes", channels=5), tasks.depth()]
    results = {"segmentation_miou": 30.0, "depth_rmse": 0.4}
    baselines = {"segmentation_miou": 40.0, "depth_rmse": 0.5}
    out = metrics.delta_m(results, baselines, tasks=specs)
    assert {t: v["delta"] for t, v in out["per_task"].items()} == pytest.approx({"segmentation": -25.0, "depth": 20.0})
    assert out["delta_m"] == pytest.approx(-2.5)
    assert set(metrics.delta_m(results, baselines)["per_task"]) == {"depth"}
    # A task whose metrics start elsewhere, and an explicit override of one task's metric.
    specs[0] = specs[0].replace(metrics=("pixel_accuracy", "miou"))
    accuracy = metrics.delta_m({"segmentation_pixel_accuracy": 88.0}, {"segmentation_pixel_accuracy": 80.0}, tasks=specs)
    assert accuracy["per_task"]["segmentation"]["metric"] == "pixel_accuracy" and accuracy["delta_m"] == pytest.approx(10.0)
    override = metrics.delta_m(results, baselines, tasks=specs, metrics={"segmentation": "miou"})
    assert override["delta_m"] == pytest.approx(-2.5)
    # The standard tasks' table agrees with their specs.
    assert dict(metrics.MAIN_METRICS) == {name: tasks.get_task(name).main_metric for name in tasks.TASK_BUILDERS}


@pytest.mark.backend_independent
def test_delta_m_errors():
    with pytest.raises(ValueError, match=r"No baseline for 'depth_rmse'.*Received: baselines keys=\['semseg_miou'\]"):
        metrics.delta_m({"depth_rmse": 0.5}, {"semseg_miou": 1.0})
    with pytest.raises(ValueError, match=r"must be finite and non-zero. Received: baselines\['semseg_miou'\]=0.0"):
        metrics.delta_m({"semseg_miou": 1.0}, {"semseg_miou": 0.0})
    with pytest.raises(ValueError, match=r"No task metric to compare.*Received: results keys=\['foo'\]"):
        metrics.delta_m({"foo": 1.0}, {"foo": 1.0})
    with pytest.raises(ValueError, match=r"direction of metric 'accuracy' is unknown.*Received: metrics\['x'\]"):
        metrics.delta_m({"x_accuracy": 1.0}, {"x_accuracy": 1.0}, metrics={"x": "accuracy"})
