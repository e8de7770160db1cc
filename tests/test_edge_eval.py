"""Python boundary benchmark (SEISM protocol) on crafted maps with hand-counted matches."""

import math

import numpy as np
import pytest
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import maximum_bipartite_matching
from scipy.spatial import cKDTree

from keras_mtcl import edge_eval
from keras_mtcl.testing import boundaries

pytestmark = pytest.mark.backend_independent


def _show(mask):
    return ["".join("#" if v else "." for v in row) for row in mask]


# ------------------------------------------------------------------ label boundaries


# The crafted NYUD edge label of the reading tests: a 3-pixel vertical line and a line on the last
# row that runs into the right border.
_NYUD_LABEL = [
    ".......",
    "..#....",
    "..#....",
    "..#....",
    ".......",
    "....###",
]


def _parse(rows):
    return np.array([[c == "#" for c in row] for row in rows])


def test_seg2bmap_marks_right_lower_and_lower_right_changes_with_the_border_rules():
    # Interior: a pixel is marked when its right, lower or lower-right neighbour differs.
    #   (0,1): lower-right (1,2) is 1. (0,2): lower (1,2) is 1. Rows 1-3: (r,1) right is 1, (r,2)
    #   right is 0. (4,3): lower-right (5,4) is 1; (4,4), (4,5): lower is 1.
    # Last column: only the lower neighbour: (4,6) above (5,6) = 1 is marked; (3,6) is not.
    # Last row: only the right neighbour: (5,3) before (5,4) is marked; (5,4), (5,5) are not
    # (their right neighbours are 1 too), and the corner (5,6) never is.
    expected = [
        ".##....",
        ".##....",
        ".##....",
        ".##....",
        "...####",
        "...#...",
    ]
    label = _parse(_NYUD_LABEL).astype(np.uint8)
    np.testing.assert_array_equal(edge_eval.seg2bmap(label), _parse(expected))
    # The same map as a {0, 255} PNG and as the builder's {0, 1} labels give the same boundaries.
    np.testing.assert_array_equal(edge_eval.seg2bmap(label * 255), _parse(expected))
    with pytest.raises(ValueError, match=r"non-empty \(H, W\) map. Received: segmentation.shape=\(2, 2, 2\)"):
        edge_eval.seg2bmap(np.zeros((2, 2, 2)))


def test_nyud_label_reading_is_seg2bmap_then_thinning_worked_by_hand():
    # Thinning the seg2bmap map above (x1..x8 = E, NE, N, NW, W, SW, S, SE; a pixel goes when it
    # has one 0->1 crossing, 2 <= min(n1, n2) <= 3, and the subiteration's G3 holds):
    # iteration 1, subiteration 1 removes (0,1) (x = E, S, SE: n1 = n2 = 2, G3 since NE = N = 0 and
    #   SE = 1), (0,2), (1,2) and (2,2) (x1 = 0 satisfies G3); (1,1), (2,1) fail G3 (x1 = x2 = 1),
    #   (3,1) fails G3, (3,2), (4,3), (4,4), (4,5) have two crossings, (4,6) and (5,3) are ends
    #   (min(n1, n2) = 1).
    # subiteration 2 removes (3,1) (x = E, N: n1 = n2 = 2, G3' since W = 0); (2,1) now has two
    #   crossings (N and SE), (1,1) is an end.
    # iteration 2 changes nothing: 8 pixels remain.
    expected = [
        ".......",
        ".#.....",
        ".#.....",
        "..#....",
        "...####",
        "...#...",
    ]
    label = _parse(_NYUD_LABEL).astype(np.uint8)
    np.testing.assert_array_equal(edge_eval.nyud_boundaries(label), _parse(expected))
    np.testing.assert_array_equal(edge_eval.nyud_boundaries(label[..., None]), _parse(expected))
    # evaluate_boundaries(dataset="nyud") matches against these 8 pixels, not the 6 label pixels:
    # a prediction on exactly them scores 100; the label read as given counts sumR = 6.
    prediction = _parse(expected).astype(np.float32)
    scores = edge_eval.evaluate_boundaries(
        [prediction], [label], dataset="nyud", nms=False, workers=0, progress=False, return_counts=True
    )
    assert scores["label_reading"] == "seg2bmap" and scores["threshold_rule"] == "strict"
    assert (scores["counts"][0, :, 1] == 8).all() and scores["ods_f"] == pytest.approx(100.0)
    given = edge_eval.evaluate_boundaries(
        [prediction], [label], dataset="nyud", label_reading="given", nms=False, workers=0, progress=False,
        return_counts=True,
    )
    assert (given["counts"][0, :, 1] == 6).all()
    # PASCAL's protocol uses the builder's label as it is.
    pascal = edge_eval.evaluate_boundaries(
        [prediction], [label], dataset="pascal", nms=False, workers=0, progress=False, return_counts=True
    )
    assert pascal["label_reading"] == "given" and (pascal["counts"][0, :, 1] == 6).all()


def test_nyud_reading_of_ignored_pixels():
    # Ignored pixels count as 0 in the integer map and are never boundaries: a line whose lower
    # half is ignored reads like the upper half alone.
    label = np.zeros((8, 7), np.uint8)
    label[1:7, 3] = 1
    ignored = label.copy()
    ignored[4:7, 3] = 255
    upper = np.zeros((8, 7), np.uint8)
    upper[1:4, 3] = 1
    np.testing.assert_array_equal(edge_eval.nyud_boundaries(ignored), edge_eval.nyud_boundaries(upper))


def test_pascal_reading_relabelling_cannot_change_the_boundaries():
    # SEISM relabels the 4-connected regions of the LabelMap before seg2bmap. Class 5 here forms
    # two regions that touch only diagonally (at (2,2)-(3,3)); relabelling them 5 and 6 gives the
    # same boundary map, which is thin(seg2bmap(.)).
    label_map = np.zeros((6, 6), np.int64)
    label_map[:3, :3] = 5
    label_map[3:, 3:] = 5
    relabelled = label_map.copy()
    relabelled[3:, 3:] = 6
    expected = edge_eval.thin(edge_eval.seg2bmap(label_map))
    np.testing.assert_array_equal(edge_eval.pascal_boundaries(label_map), expected)
    np.testing.assert_array_equal(edge_eval.pascal_boundaries(relabelled), expected)
    assert expected[2, 2] and expected.sum() >= 5
    with pytest.raises(ValueError, match=r"\(H, W\) map. Received: label_map.shape=\(6,\)"):
        edge_eval.pascal_boundaries(np.zeros(6))


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


def test_thin_is_correct_for_any_memory_layout():
    # A 3-pixel-thick bar thins to one row whatever the array's layout: C order, Fortran order (as
    # scipy.io.loadmat returns), a transposed view and a strided view give the same pixels.
    bar = np.zeros((9, 14), bool)
    bar[3:6, 2:12] = True
    expected = edge_eval.thin(bar)
    assert 0 < expected.sum() < bar.sum() and set(np.nonzero(expected)[0].tolist()) == {4}
    np.testing.assert_array_equal(edge_eval.thin(np.asfortranarray(bar)), expected)
    np.testing.assert_array_equal(edge_eval.thin(np.ascontiguousarray(bar.T).T), expected)
    np.testing.assert_array_equal(edge_eval.thin(bar.T), expected.T)
    wide = np.zeros((9, 28), bool)
    wide[:, ::2] = bar
    np.testing.assert_array_equal(edge_eval.thin(wide[:, ::2]), expected)
    # Unthinned Fortran-ordered maps inflated the predicted pixels (nms=False): the counts of a
    # transposed map are the transposes' counts.
    prediction = np.zeros((14, 9), np.float32)
    prediction[2:12, 3:6] = 0.8
    label = np.zeros((14, 9), np.uint8)
    label[2:12, 4] = 1
    as_given = edge_eval.image_counts(prediction, label, 0.05, thresholds=[0.5], nms=False)
    transposed = edge_eval.image_counts(prediction.T.copy(order="C").T, label, 0.05, thresholds=[0.5], nms=False)
    np.testing.assert_array_equal(as_given, transposed)
    assert as_given[0, 3] == edge_eval.thin(prediction > 0.5).sum() < 30


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


def _maximum_matching_size(predicted, truth, max_dist):
    """Size of a maximum matching by scipy's Hopcroft-Karp, an independent solver."""
    h, w = predicted.shape
    p_xy, t_xy = np.argwhere(predicted).astype(float), np.argwhere(truth).astype(float)
    if not len(p_xy) or not len(t_xy):
        return 0
    pairs = cKDTree(p_xy).sparse_distance_matrix(cKDTree(t_xy), max_dist * math.hypot(h, w), output_type="ndarray")
    i, j = pairs["i"], pairs["j"]
    graph = csr_matrix((np.ones(len(i)), (i, j)), shape=(len(p_xy), len(t_xy)))
    return int((maximum_bipartite_matching(graph, perm_type="column") >= 0).sum())


@pytest.mark.parametrize("threshold_rule", ["strict", "inclusive"])
def test_counts_equal_the_min_cost_assignment_on_random_maps(threshold_rule):
    # The per-threshold counts (maximum matching, repaired threshold to threshold) equal two
    # independent solvers: scipy's LAPJVsp on the assignment with "unmatched" options, and scipy's
    # Hopcroft-Karp. The binary map is the rule's: strict, E > t on the 8-bit map (E = round(255 p)
    # / 255 in float32); inclusive, E >= t on the map as given.
    rng = np.random.default_rng(3)
    for trial in range(6):
        h, w = rng.integers(24, 48, size=2)
        prediction = (rng.random((h, w)) ** 3).astype(np.float32)
        label = (rng.random((h, w)) < 0.12).astype(np.uint8)
        nms = bool(trial % 2)
        thresholds = [0.05, 0.2, 0.5, 0.8]
        counts = edge_eval.image_counts(
            prediction, label, 0.03, thresholds=thresholds, nms=nms, threshold_rule=threshold_rule
        )
        if threshold_rule == "strict":
            values = (np.floor(prediction.astype(np.float64) * 255 + 0.5) / 255).astype(np.float32)
        else:
            values = prediction
        edges = edge_eval.edge_nms(values) if nms else values
        for k, t in enumerate(thresholds):
            if threshold_rule == "strict":
                binary = edge_eval.thin(edges > np.float32(t))
            else:
                binary = edge_eval.thin(edges >= np.float32(t))
            match_p, match_t = edge_eval.correspond_pixels(binary, label == 1, 0.03)
            expected = [(match_t >= 0).sum(), label.sum(), (match_p >= 0).sum(), binary.sum()]
            np.testing.assert_array_equal(counts[k], expected)
            assert counts[k, 0] == _maximum_matching_size(binary, label == 1, 0.03)


def test_counts_on_a_nyud_sized_map_equal_independent_solvers():
    # 240 x 320 map of the benchmark tool (NMS, 101 thresholds, tolerance 0.011 x 400 = 4.4 px):
    # every 10th threshold checked against scipy's Hopcroft-Karp on the thinned map.
    prediction, label = boundaries.synthetic_pair((240, 320), np.random.default_rng(1))
    counts = edge_eval.image_counts(prediction, label, 0.011, label_reading="seg2bmap")
    truth = edge_eval.nyud_boundaries(label)
    values = (np.floor(prediction.astype(np.float64) * 255 + 0.5) / 255).astype(np.float32)
    edges = edge_eval.edge_nms(values)
    for k in range(0, 101, 10):
        binary = edge_eval.thin(edges > np.float32(edge_eval.THRESHOLDS[k]))
        assert counts[k, 1] == truth.sum() and counts[k, 3] == binary.sum()
        assert counts[k, 0] == counts[k, 2] == _maximum_matching_size(binary, truth, 0.011)


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
    # Neither: the split's curve (gather_measure) applies "no prediction" last, R = 0, P = 1; the
    # per-image rule (eval_cont, general_ois) applies "no label boundary" first, R = 1, P = 0.
    scores = edge_eval.summarize(np.array([[[0, 0, 0, 0]]]), [0.5])
    assert (scores["recall"], scores["precision"]) == ([0.0], [100.0])
    assert (scores["ois_recall"], scores["ois_precision"]) == (100.0, 0.0)


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
    # (Labels as given and E >= t: with NYUD's seg2bmap reading the label line moves one column left,
    # beyond the 0.011 x 80 = 0.88 px tolerance of a 48 x 64 image.)
    predictions, labels = _two_image_split()
    scores = edge_eval.evaluate_boundaries(
        predictions, labels, dataset="nyud", label_reading="given", threshold_rule="inclusive", workers=0,
        progress=False,
    )
    assert scores["ods_f"] == pytest.approx(200 / 3)
    assert scores["ods_threshold"] == 0.001
    assert scores["ois_f"] == pytest.approx(80.0)
    f = dict(zip(scores["thresholds"], scores["f"]))
    assert (f[0.18], f[0.4], f[0.8], f[0.95]) == pytest.approx((40.0, 50.0, 200 / 3, 0.0))


def test_parallel_workers_give_the_same_scores_and_report_progress(capsys):
    # The options (NYUD's label reading, a 0.03 x 80 = 2.4 px tolerance) reach the workers.
    predictions, labels = _two_image_split()
    options = {"max_dist": 0.03, "label_reading": "seg2bmap"}
    serial = edge_eval.evaluate_boundaries(predictions, labels, workers=0, progress=False, **options)
    parallel = edge_eval.evaluate_boundaries(
        iter(predictions), iter(labels), workers=2, progress=True, return_counts=True, **options
    )
    assert parallel["counts"].shape == (2, 101, 4) and serial["ods_f"] > 50
    for key in ("ods_f", "ois_f", "ap", "f"):
        assert parallel[key] == serial[key]
    out = capsys.readouterr().out
    assert "Boundary evaluation:" in out and "2/Unknown" in out


def test_progress_bar_waits_for_a_few_images_before_estimating(capsys):
    # Keras' bar, silent until `warmup` images are done (the first ones include starting the
    # workers and arrive together), then showing count and time left; the last image always shows.
    bar = edge_eval._Progress(True, 10, warmup=3)
    bar.step()
    bar.step()
    assert capsys.readouterr().out == "Boundary evaluation of 10 images:\n"
    bar.step()
    assert "3/10" in capsys.readouterr().out
    short = edge_eval._Progress(True, 2, warmup=3)
    short.step()
    short.step()
    assert "2/2" in capsys.readouterr().out
    silent = edge_eval._Progress(False, 2, warmup=1)
    silent.step()
    silent.close()
    assert capsys.readouterr().out == ""


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


def test_threshold_rule_strict_on_8_bits_in_float32_and_inclusive_as_option():
    # A label line matched by a line of exactly 153/255 (float32 0.6000000238..., the same number as
    # float32(0.6)); thresholds .59, .60, .61 without NMS.
    # strict (SEISM: E > t in float32): a boundary at .59 only. In float64 against t = 0.6 the same
    # float32 pixel would pass (0.6000000238 > 0.59999999999999998), so the comparison must be float32.
    # inclusive (E >= t): a boundary at .59 and .60.
    label = np.zeros((40, 50), np.uint8)
    label[10:30, 20] = 1
    line = np.zeros((40, 50), np.uint8)
    line[10:30, 20] = 153
    thresholds = [0.59, 0.6, 0.61]
    strict = edge_eval.image_counts(line, label, 0.02, thresholds=thresholds, nms=False)
    inclusive = edge_eval.image_counts(line, label, 0.02, thresholds=thresholds, nms=False, threshold_rule="inclusive")
    np.testing.assert_array_equal(strict[:, 3], [20, 0, 0])
    np.testing.assert_array_equal(inclusive[:, 3], [20, 20, 0])
    # Float maps are quantised to 8 bits first under the strict rule: 0.6004 -> round(153.1) = 153 is
    # no boundary at .60, while the inclusive rule reads 0.6004 as it is.
    floats = line.astype(np.float32) / 255 + np.float32(0.0004) * (line > 0)
    np.testing.assert_array_equal(edge_eval.image_counts(floats, label, 0.02, thresholds, nms=False)[:, 3], [20, 0, 0])
    np.testing.assert_array_equal(
        edge_eval.image_counts(floats, label, 0.02, thresholds, nms=False, threshold_rule="inclusive")[:, 3],
        [20, 20, 0],
    )
    # The best threshold moves from .60 (inclusive) to .59 (strict) when a spurious line sits at
    # 152/255 (.596): strict keeps both lines at .59 (F = 2 x 20 / 60 = 66.7) and none at .60; inclusive
    # keeps the true line alone at .60 (F = 100).
    spurious = line.copy()
    spurious[10:30, 40] = 152
    scores = {
        rule: edge_eval.evaluate_boundaries(
            [spurious], [label], max_dist=0.02, thresholds=thresholds, nms=False, threshold_rule=rule, workers=0,
            progress=False,
        )
        for rule in ("strict", "inclusive")
    }
    assert scores["inclusive"]["ods_threshold"] == 0.6 and scores["inclusive"]["ods_f"] == pytest.approx(100.0)
    assert scores["strict"]["ods_threshold"] == 0.59 and scores["strict"]["ods_f"] == pytest.approx(200 / 3)


def test_average_precision_is_seisms_general_ap_on_a_hand_worked_curve():
    # One image, four thresholds, counts (cntR, sumR, cntP, sumP) chosen for P and R directly:
    #   t1: R .8, P .3;  t2: R .5, P .6;  t3: R .5, P .7 (a duplicate recall: t2's precision is kept);
    #   t4: R .2, P .9.
    # interp1 over recall [.2, .5, .8] -> precision [.9, .6, .3] is P = 1.1 - R on [.2, .8] and NaN
    # outside: the 61 grid points .20, .21, ..., .80 sum to 61 x 1.1 - (.20 + ... + .80) = 67.1 - 30.5
    # = 36.6, / 100 = .366 -> AP 36.6 (the endpoints .2 and .8 are grid points of 0:0.01:1).
    counts = np.array([[[80, 100, 30, 100], [50, 100, 60, 100], [50, 100, 70, 100], [20, 100, 90, 100]]])
    assert edge_eval.summarize(counts, [0.2, 0.4, 0.6, 0.8])["ap"] == pytest.approx(36.6, abs=1e-9)
    assert edge_eval.average_precision([0.3, 0.6, 0.7, 0.9], [0.8, 0.5, 0.5, 0.2]) == pytest.approx(0.366, abs=1e-12)
    # Not extrapolated: the same curve cut to recall [.5, .8] sums the 31 points .50 .. .80 of
    # 1.1 - R: 31 x 1.1 - 20.15 = 13.95 -> .1395; a curve of one recall has AP 0.
    assert edge_eval.average_precision([0.3, 0.6], [0.8, 0.5]) == pytest.approx(0.1395, abs=1e-12)
    assert edge_eval.average_precision([0.5, 0.7], [0.4, 0.4]) == 0.0
    # The grid is MATLAB's 0:0.01:1 (up from 0 to the middle, down from 1 after it).
    assert edge_eval._AP_GRID[57] == 1.0 - 43 * 0.01 and edge_eval._AP_GRID[7] == 7 * 0.01
    with pytest.raises(ValueError, match=r"1-D and of one length. Received: precision.shape=\(2,\), recall.shape=\(3,\)"):
        edge_eval.average_precision([0.1, 0.2], [0.1, 0.2, 0.3])


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
    message = r"`threshold_rule` must be one of \['strict', 'inclusive'\]. Received: threshold_rule='>='"
    with pytest.raises(ValueError, match=message):
        edge_eval.evaluate_boundaries(maps, labels, dataset="nyud", threshold_rule=">=")
    message = r"`label_reading` must be one of \['given', 'seg2bmap'\]. Received: label_reading='bsds'"
    with pytest.raises(ValueError, match=message):
        edge_eval.image_counts(maps[0], labels[0], 0.011, label_reading="bsds")


def test_thresholds_are_the_benchmark_ones():
    assert len(edge_eval.THRESHOLDS) == 101
    assert edge_eval.THRESHOLDS[:3] == (0.001, 0.01, 0.02) and edge_eval.THRESHOLDS[-2:] == (0.99, 0.999)
    assert math.isclose(edge_eval.MAX_DIST["nyud"], 0.011) and math.isclose(edge_eval.MAX_DIST["pascal"], 0.0075)


# ------------------------------------------------------------------ pyEdgeEval


def test_parity_with_pyedgeeval_configured_to_the_same_protocol():
    # pyEdgeEval (the BSDS/SEISM port with the randomized CSA matcher) configured to this protocol:
    # the same 8-bit maps, NYUD's label reading, SEISM's unsmoothed NMS, the strict threshold and
    # maxDist 0.011 (its defaults are BSDS's). Stage by stage:
    # - NMS: its kernel (float64) keeps the same pixels as `edge_nms` (float32) given the same
    #   orientation, values equal to float32 rounding (2^-24 relative, < 1e-7 on [0, 1]; a value on a
    #   threshold, e.g. a border pixel 0.4 x 51/255 = 0.08, can fall on either side of it);
    # - thinning: its `bwmorph_thin` (MATLAB's tables) equals `thin` at every threshold, so given the
    #   same NMS map sumP and sumR agree everywhere (its default `binary_thin` does not: it keeps
    #   L-shaped corners that bwmorph removes);
    # - matching: the exact matcher never matches fewer pixels than CSA's approximation;
    # - ODS and OIS agree within 0.5 points (0.005), also with its own NMS and orientation.
    pytest.importorskip("cv2", reason="pyEdgeEval imports OpenCV")
    pytest.importorskip("pyEdgeEval", reason="pyEdgeEval (PyPI `pyedgeeval`) is not installed")
    corner = np.zeros((6, 7), bool)
    corner[2, 3] = corner[3, 3] = corner[3, 4] = True
    assert edge_eval.thin(corner).sum() == boundaries.pyedgeeval_thin(corner).sum() == 2
    assert boundaries.pyedgeeval_thin(corner, "binary").sum() == 3
    rng = np.random.default_rng(7)
    ours, same_nms, own_nms = [], [], []
    for _ in range(2):
        prediction, label = boundaries.synthetic_pair((96, 128), rng)
        values = (np.floor(prediction.astype(np.float64) * 255 + 0.5) / 255).astype(np.float32)
        edges = edge_eval.edge_nms(values)
        theirs = boundaries.pyedgeeval_nms(values, edge_eval.edge_orientation(values))
        np.testing.assert_allclose(theirs, edges, atol=1e-7)
        np.testing.assert_array_equal(theirs > 0, edges > 0)
        truth = edge_eval.nyud_boundaries(label)
        ours.append(edge_eval.image_counts(prediction, label, 0.011, label_reading="seg2bmap"))
        same_nms.append(boundaries.pyedgeeval_counts(prediction, truth, 0.011, edges=edges))
        own_nms.append(boundaries.pyedgeeval_counts(prediction, truth, 0.011))
    ours, same_nms, own_nms = np.stack(ours), np.stack(same_nms), np.stack(own_nms)
    np.testing.assert_array_equal(ours[..., [1, 3]], same_nms[..., [1, 3]])
    assert (ours[..., 0] >= same_nms[..., 0]).all() and (ours[..., 0] == ours[..., 2]).all()
    for theirs in (same_nms, own_nms):
        a, b = edge_eval.summarize(ours), edge_eval.summarize(theirs)
        assert abs(a["ods_f"] - b["ods_f"]) <= 0.5 and abs(a["ois_f"] - b["ois_f"]) <= 0.5
