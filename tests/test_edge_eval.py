"""Python boundary benchmark (SEISM protocol) on crafted maps with hand-counted matches."""

import doctest
import math

import numpy as np
import pytest

from keras_mtcl import edge_eval

pytestmark = pytest.mark.backend_independent


def _show(mask):
    return ["".join("#" if v else "." for v in row) for row in mask]


# ------------------------------------------------------------------ thinning


def test_thin_keeps_one_pixel_lines_and_thins_thick_ones():
    line = np.zeros((9, 12), bool)
    line[4, 2:10] = True
    np.testing.assert_array_equal(edge_eval.thin(line), line)
    # The example of Lam, Lee & Suen's algorithm documented by scikit-image (which matches MATLAB).
    square = np.zeros((7, 7), bool)
    square[1:-1, 2:-2] = True
    square[0, 1] = True
    expected = np.zeros((7, 7), bool)
    expected[[0, 1, 2, 3, 4], [1, 2, 3, 3, 3]] = True
    np.testing.assert_array_equal(edge_eval.thin(square), expected)
    # A 3-pixel-thick bar becomes a single run on its middle row.
    bar = np.zeros((7, 11), bool)
    bar[2:5, 1:10] = True
    thinned = edge_eval.thin(bar)
    rows, cols = np.nonzero(thinned)
    assert set(rows.tolist()) == {3}
    assert cols.tolist() == list(range(cols.min(), cols.max() + 1)) and len(cols) >= 5
    # A ring keeps its hole (thinning preserves topology).
    ring = np.zeros((9, 12), bool)
    ring[2:7, 2:10] = True
    ring[4, 4:8] = False
    thinned = edge_eval.thin(ring)
    assert not thinned[4, 4:8].any() and thinned.sum() >= 8
    assert _show(thinned)[4].count("#") == 2


def test_edge_nms_keeps_the_ridge_and_ramps_the_border():
    # A vertical ridge 0.5 / 1.0 / 0.5 over columns 9..11: only the centre survives; rows within 5
    # pixels of the top and bottom are scaled by their distance to the border / 5.
    edges = np.zeros((20, 20), np.float32)
    edges[:, 9], edges[:, 10], edges[:, 11] = 0.5, 1.0, 0.5
    out = edge_eval.edge_nms(edges)
    ramp = np.minimum(np.minimum(np.arange(20), 19 - np.arange(20)), 5) / 5
    np.testing.assert_allclose(out[:, 10], ramp, rtol=1e-6)
    assert not out[:, 9].any() and not out[:, 11].any()
    # Two equal columns both survive (1.01 tolerance): the per-threshold thinning makes them one.
    flat = np.zeros((20, 20), np.float32)
    flat[:, 9:11] = 0.8
    assert (edge_eval.edge_nms(flat)[6:14, 9:11] > 0).all()


def test_triangle_filter_weights():
    # Radius 1: kernel [1, 2, 1] / 4 on each axis; an impulse spreads to the outer product / 16.
    impulse = np.zeros((5, 5), np.float32)
    impulse[2, 2] = 16
    np.testing.assert_allclose(edge_eval.triangle_filter(impulse, 1)[1:4, 1:4], [[1, 2, 1], [2, 4, 2], [1, 2, 1]])
    with pytest.raises(ValueError, match=r"`radius` must be an integer >= 1. Received: radius=0"):
        edge_eval.triangle_filter(impulse, 0)


# ------------------------------------------------------------------ matching


def test_shifted_line_matches_within_tolerance_only():
    # 100 x 100 image: tolerance 0.011 x 141.4 = 1.56 px. A copy shifted by 1 px matches all 40
    # pixels; shifted by 2 px it matches none.
    truth = np.zeros((100, 100), bool)
    truth[30:70, 50] = True
    near = np.roll(truth, 1, axis=1)
    far = np.roll(truth, 2, axis=1)
    m_near, t_near = edge_eval.correspond_pixels(near, truth, edge_eval.MAX_DIST["nyud"])
    m_far, _ = edge_eval.correspond_pixels(far, truth, edge_eval.MAX_DIST["nyud"])
    assert (m_near >= 0).sum() == 40 and (t_near >= 0).sum() == 40
    assert m_near[30, 51] == 30 * 100 + 50
    assert (m_far >= 0).sum() == 0


def test_optimal_assignment_beats_greedy_nearest_neighbour():
    # 20 x 20 image, max_dist 0.06: tolerance 0.06 x 28.28 = 1.70 px.
    # Predicted P1 (5, 11), P2 (5, 13); label G1 (5, 12), G2 (6, 10).
    # Distances: P1-G1 1, P1-G2 sqrt 2 = 1.41, P2-G1 1, P2-G2 sqrt 10 = 3.16 (too far).
    # Greedy nearest neighbour: P1 takes G1, P2 is left without partner: 1 match.
    # The optimal one-to-one assignment: P1-G2 and P2-G1: 2 matches.
    predicted = np.zeros((20, 20), bool)
    truth = np.zeros((20, 20), bool)
    predicted[5, 11] = predicted[5, 13] = True
    truth[5, 12] = truth[6, 10] = True
    match_p, match_t = edge_eval.correspond_pixels(predicted, truth, 0.06)
    assert match_p[5, 11] == 6 * 20 + 10 and match_p[5, 13] == 5 * 20 + 12
    assert match_t[6, 10] == 5 * 20 + 11
    counts = edge_eval.image_counts(
        predicted.astype(np.float32), truth.astype(np.uint8), 0.06, thresholds=[0.5], nms=False
    )
    np.testing.assert_array_equal(counts, [[2, 2, 2, 2]])


def test_assignment_minimises_distance_among_maximum_matchings():
    # Predicted (5, 5), (5, 6); label (6, 5), (6, 6). Both pairings match 2 pixels; straight down costs
    # 1 + 1 = 2, crossed sqrt 2 + sqrt 2 = 2.83: the straight one is chosen.
    predicted = np.zeros((20, 20), bool)
    truth = np.zeros((20, 20), bool)
    predicted[5, 5:7] = True
    truth[6, 5:7] = True
    match_p, _ = edge_eval.correspond_pixels(predicted, truth, 0.06)
    assert (match_p[5, 5], match_p[5, 6]) == (6 * 20 + 5, 6 * 20 + 6)


def test_doubled_edge_counts_once():
    # Label: row 20, columns 10..49 (40 px) of a 48 x 64 image; max_dist 0.02: tolerance 1.6 px.
    truth = np.zeros((48, 64), np.uint8)
    truth[20, 10:50] = 1
    # A 2-pixel-thick prediction (rows 20 and 21) is thinned to one line: every predicted pixel matches.
    thick = np.zeros((48, 64), np.float32)
    thick[20:22, 10:50] = 0.9
    ((cnt_r, sum_r, cnt_p, sum_p),) = edge_eval.image_counts(thick, truth, 0.02, thresholds=[0.5], nms=False)
    assert sum_r == 40 and cnt_p == sum_p == cnt_r and 38 <= sum_p <= 40
    # Two separate lines (on the label, and 6 rows away): each label pixel matches once, so recall
    # 40/40 and precision 40/80.
    double = np.zeros((48, 64), np.float32)
    double[20, 10:50] = double[26, 10:50] = 0.9
    counts = edge_eval.image_counts(double, truth, 0.02, thresholds=[0.5], nms=False)
    np.testing.assert_array_equal(counts, [[40, 40, 40, 80]])


def test_counts_equal_the_min_cost_assignment_on_random_maps():
    # The per-threshold counts (maximum matching, grown threshold to threshold) and an independent
    # solver (scipy's LAPJVsp on the assignment with "unmatched" options) agree.
    rng = np.random.default_rng(3)
    for trial in range(6):
        h, w = rng.integers(24, 48, size=2)
        prediction = (rng.random((h, w)) ** 3).astype(np.float32)
        label = (rng.random((h, w)) < 0.12).astype(np.uint8)
        nms = bool(trial % 2)
        thresholds = [0.05, 0.2, 0.5, 0.8]
        counts = edge_eval.image_counts(prediction, label, 0.03, thresholds=thresholds, nms=nms)
        edges = edge_eval.edge_nms(prediction) if nms else prediction
        for k, t in enumerate(thresholds):
            binary = edge_eval.thin(edges >= np.float32(t))
            match_p, match_t = edge_eval.correspond_pixels(binary, label == 1, 0.03)
            expected = [(match_t >= 0).sum(), label.sum(), (match_p >= 0).sum(), binary.sum()]
            np.testing.assert_array_equal(counts[k], expected)


# ------------------------------------------------------------------ split scores


def test_summarize_ods_ois_on_a_two_image_split():
    # Counts (cntR, sumR, cntP, sumP) at two thresholds; with cntP = cntR, F = 2 cnt / (sumP + sumR).
    # Image A: t1 (8, 10, 8, 16) F .615; t2 (5, 10, 5, 5) F .667 -> best t2.
    # Image B: t1 (6, 10, 6, 8) F .667; t2 (1, 10, 1, 1) F .182 -> best t1.
    # ODS: t1 summed (14, 20, 14, 24): F = 28/44 = 63.64; t2 (6, 20, 6, 6): F = 12/26 = 46.15.
    # OIS: A at t2 + B at t1 = (11, 20, 11, 13): F = 22/33 = 66.67.
    counts = np.array([[[8, 10, 8, 16], [5, 10, 5, 5]], [[6, 10, 6, 8], [1, 10, 1, 1]]])
    scores = edge_eval.summarize(counts, [0.3, 0.6])
    assert scores["ods_f"] == pytest.approx(100 * 28 / 44)
    assert scores["ods_threshold"] == 0.3
    assert scores["ods_precision"] == pytest.approx(100 * 14 / 24) and scores["ods_recall"] == pytest.approx(70.0)
    assert scores["ois_f"] == pytest.approx(100 * 22 / 33)
    assert scores["f"] == pytest.approx([100 * 28 / 44, 100 * 12 / 26])


def test_summarize_average_precision():
    # Recall .695 (precision 139/278 = .5) and .305 (precision 1): precision is linear in recall
    # between them; the 39 recall points .31 .. .69 average the value at .5, i.e. .75: AP = 39 x .75 / 100.
    counts = np.array([[[139, 200, 139, 278], [61, 200, 61, 61]]])
    assert edge_eval.summarize(counts, [0.2, 0.7])["ap"] == pytest.approx(29.25)
    # A single distinct recall has no curve: AP 0.
    assert edge_eval.summarize(np.array([[[1, 2, 1, 2]]]), [0.5])["ap"] == 0.0


def test_summarize_empty_cases_follow_seism():
    # No label boundary: R = 1, P = 0 -> F 0. No predicted pixel: R = 0, P = 1 -> F 0.
    scores = edge_eval.summarize(np.array([[[0, 0, 0, 5], [0, 7, 0, 0]]]), [0.3, 0.6])
    assert scores["recall"] == [100.0, 0.0] and scores["precision"] == [0.0, 100.0]
    assert scores["ods_f"] == 0.0


def _two_image_split():
    # Image 1: label line, predicted on it at 0.9, plus a spurious line at 0.2.
    # Image 2: label line, predicted on it at only 0.15, plus a spurious line at 0.6. Lines are 20 px.
    labels, predictions = [], []
    for true_p, spurious_p in ((0.9, 0.2), (0.15, 0.6)):
        label = np.zeros((48, 64), np.uint8)
        label[14:34, 20] = 1
        prediction = np.zeros((48, 64), np.float32)
        prediction[14:34, 20] = true_p
        prediction[14:34, 44] = spurious_p
        labels.append(label)
        predictions.append(prediction)
    return predictions, labels


def test_ods_and_ois_on_a_two_image_split_end_to_end():
    # Per threshold (cnt, sumR, sumP) summed over both images:
    #   t <= .15: img1 (20, 20, 40), img2 (20, 20, 40): P .5, R 1 -> F 66.67 (first maximum: t = .001)
    #   .15 < t <= .2: (20, 40, 60): F 40;  .2 < t <= .6: (20, 40, 40): F 50;  .6 < t <= .9: (20, 40, 20): F 66.67
    # OIS: image 1 is best above .2 (F 100), image 2 at or below .15 (F 66.67): (40, 40, 60) -> F 80.
    predictions, labels = _two_image_split()
    scores = edge_eval.evaluate_boundaries(predictions, labels, dataset="nyud", workers=0, progress=False)
    assert scores["ods_f"] == pytest.approx(200 / 3)
    assert scores["ods_threshold"] == 0.001
    assert scores["ois_f"] == pytest.approx(80.0)
    f = dict(zip(scores["thresholds"], scores["f"]))
    assert (f[0.18], f[0.4], f[0.8], f[0.95]) == pytest.approx((40.0, 50.0, 200 / 3, 0.0))


def test_parallel_workers_give_the_same_scores_and_report_progress(capsys):
    predictions, labels = _two_image_split()
    serial = edge_eval.evaluate_boundaries(predictions, labels, dataset="nyud", workers=0, progress=False)
    parallel = edge_eval.evaluate_boundaries(
        iter(predictions), iter(labels), dataset="nyud", workers=2, progress=True, return_counts=True
    )
    assert parallel["counts"].shape == (2, 101, 4)
    for key in ("ods_f", "ois_f", "ap", "f"):
        assert parallel[key] == serial[key]
    assert "Boundary evaluation: 2 images" in capsys.readouterr().err


def test_uint8_maps_are_read_like_pngs_and_ignored_pixels_drop_out():
    # uint8 128 -> 128/255 = .502: a boundary at t = .5, not at t = .51.
    label = np.zeros((48, 64), np.uint8)
    label[14:34, 20] = 1
    prediction = np.zeros((48, 64), np.uint8)
    prediction[14:34, 20] = 128
    prediction[14:34, 44] = 128
    counts = edge_eval.image_counts(prediction, label, 0.011, thresholds=[0.5, 0.51])
    np.testing.assert_array_equal(counts, [[20, 20, 20, 40], [0, 20, 0, 0]])
    # Ignoring the spurious line's pixels (and half of the label line) removes them from both maps.
    label[14:34, 44] = 255
    label[24:34, 20] = 255
    counts = edge_eval.image_counts(prediction, label[..., None], 0.011, thresholds=[0.5])
    np.testing.assert_array_equal(counts, [[10, 10, 10, 10]])


# ------------------------------------------------------------------ errors


def test_input_errors():
    label = np.zeros((8, 8), np.uint8)
    good = np.zeros((8, 8), np.float32)
    message = r"0, 1 or the ignore value 255. Received: label 0 with values \[2\]"
    with pytest.raises(edge_eval.BoundaryLabelError, match=message):
        edge_eval.image_counts(good, label + 2, 0.011)
    message = r"probabilities in \[0, 1\].*Received: prediction 0 with range"
    with pytest.raises(edge_eval.BoundaryLabelError, match=message):
        edge_eval.image_counts(good + 3, label, 0.011)
    with pytest.raises(ValueError, match=r"differ in size.*Received: prediction.shape=\(8, 8\), label.shape=\(8, 9\)"):
        edge_eval.image_counts(good, np.zeros((8, 9), np.uint8), 0.011)
    with pytest.raises(ValueError, match=r"\(H, W\) or \(H, W, 1\) map. Received: prediction\[0\].shape=\(8, 8, 3\)"):
        edge_eval.image_counts(np.zeros((8, 8, 3), np.float32), label, 0.011)
    with pytest.raises(ValueError, match=r"`max_dist` must be a fraction.*Received: max_dist=2"):
        edge_eval.image_counts(good, label, 2)
    with pytest.raises(ValueError, match=r"`thresholds` must be distinct increasing.*Received: thresholds=\[0.5, 0.2\]"):
        edge_eval.image_counts(good, label, 0.011, thresholds=[0.5, 0.2])
    with pytest.raises(ValueError, match=r"same shape. Received: predicted.shape=\(8, 8\), ground_truth.shape=\(4, 4\)"):
        edge_eval.correspond_pixels(good > 0, np.zeros((4, 4), bool), 0.011)
    with pytest.raises(ValueError, match=r"`counts` must be \(N, T, 4\).*Received: counts.shape=\(2, 4\)"):
        edge_eval.summarize(np.zeros((2, 4)), [0.5, 0.6])


def test_split_argument_errors():
    maps, labels = [np.zeros((8, 8), np.float32)], [np.zeros((8, 8), np.uint8)]
    with pytest.raises(ValueError, match=r"exactly one of `max_dist` and `dataset`. Received: max_dist=None, dataset=None"):
        edge_eval.evaluate_boundaries(maps, labels)
    with pytest.raises(ValueError, match=r"`dataset` must be one of \['nyud', 'pascal'\]. Received: dataset='bsds'"):
        edge_eval.evaluate_boundaries(maps, labels, dataset="bsds")
    with pytest.raises(ValueError, match=r"`workers` must be None or an integer >= 0. Received: workers=-1"):
        edge_eval.evaluate_boundaries(maps, labels, dataset="nyud", workers=-1)
    with pytest.raises(ValueError, match=r"one map per image each. Received: 1 predictions and 2 labels"):
        edge_eval.evaluate_boundaries(maps, labels * 2, dataset="nyud", workers=0, progress=False)
    with pytest.raises(ValueError, match=r"one map per image each. Received: 1 predictions and more labels"):
        edge_eval.evaluate_boundaries(iter(maps), iter(labels * 2), dataset="nyud", workers=0, progress=False)
    with pytest.raises(ValueError, match=r"one map per image each. Received: more than 1 predictions and 1 labels"):
        edge_eval.evaluate_boundaries(iter(maps * 2), iter(labels), dataset="nyud", workers=0, progress=False)
    with pytest.raises(ValueError, match=r"at least one image. Received: 0 images"):
        edge_eval.evaluate_boundaries([], [], dataset="nyud", workers=0, progress=False)


def test_module_examples():
    assert doctest.testmod(edge_eval).failed == 0


def test_thresholds_are_the_benchmark_ones():
    assert len(edge_eval.THRESHOLDS) == 101
    assert edge_eval.THRESHOLDS[:3] == (0.001, 0.01, 0.02) and edge_eval.THRESHOLDS[-2:] == (0.99, 0.999)
    assert math.isclose(edge_eval.MAX_DIST["nyud"], 0.011) and math.isclose(edge_eval.MAX_DIST["pascal"], 0.0075)
