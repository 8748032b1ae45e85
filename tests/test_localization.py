"""Tests of test-time localization (docs/method.md §5) against hand-worked cases,
scipy, and a release-style per-group implementation written here."""
import numpy as np
import pytest
from scipy.interpolate import interp1d
from scipy.ndimage import gaussian_filter1d
from scipy.special import expit

from dgam_tf.errors import UserError
from dgam_tf.localization import localize, proposals
from dgam_tf.localization.localize import Detection, StreamOutput


def test_upsample_interpolates_and_extrapolates_the_tail():
    # Positions 0, 0.5, ..., 2.5; beyond 2 the slope 3 - 1 = 2 continues.
    np.testing.assert_allclose(proposals.upsample_linear([0.0, 1.0, 3.0], 2),
                               [0.0, 0.5, 1.0, 2.0, 3.0, 4.0])


def test_upsample_single_sample_is_constant():
    np.testing.assert_array_equal(proposals.upsample_linear([[5.0], [2.0]], 3),
                                  [[5, 5, 5], [2, 2, 2]])


def test_upsample_matches_scipy_interp1d_extrapolate():
    signal = np.random.default_rng(0).normal(size=(3, 7))
    positions = np.arange(20 * 7) / 20
    expected = interp1d(np.arange(7), signal, axis=1,
                        fill_value="extrapolate")(positions)
    np.testing.assert_allclose(proposals.upsample_linear(signal, 20), expected,
                               rtol=0, atol=1e-12)


@pytest.mark.parametrize("length,sigma", [(40, 25.0), (500, 25.0), (9, 1.0),
                                          (3, 2.5)])
def test_gaussian_smooth_matches_scipy(length, sigma):
    # Radius int(4 sigma + 0.5) may exceed the length: repeated reflection.
    signal = np.random.default_rng(1).random((2, length))
    np.testing.assert_allclose(proposals.gaussian_smooth(signal, sigma),
                               gaussian_filter1d(signal, sigma, axis=-1),
                               rtol=0, atol=1e-12)


def test_group_runs():
    keep = np.array([[1, 1, 0, 1, 0, 0, 1, 1],
                     [0, 0, 0, 0, 0, 0, 0, 0],
                     [1, 1, 1, 1, 1, 1, 1, 1]], dtype=bool)
    rows, starts, ends = proposals.group_runs(keep)
    np.testing.assert_array_equal(rows, [0, 0, 0, 2])
    np.testing.assert_array_equal(starts, [0, 3, 6, 0])
    np.testing.assert_array_equal(ends, [1, 3, 7, 7])


def test_outer_inner_scores_by_hand():
    score = np.arange(12.0)[None, :]  # v_t = t, N = 12
    starts = np.array([4, 0, 10, 1, 2])
    ends = np.array([7, 2, 11, 1, 9])
    # [4, 7]: L=4, inner 5.5, left [2, 4) -> 2.5, right [8, 10) -> 8.5.
    # [0, 2]: s=0 -> left 0; right [3, 4) -> 3; inner 1.
    # [10, 11]: e=N-1 -> right 0; left [9, 10) -> 9; inner 10.5.
    # [1, 1]: L=1, left [0, 1) -> 0, right [2, 3) -> 2, inner 1.
    # [2, 9]: L=8, left [max(0, -1), 2) -> 0.5, right [10, min(12, 13)) -> 10.5.
    expected = [5.5 - 0.3 * 11, 1 - 0.3 * 3, 10.5 - 0.3 * 9, 1 - 0.3 * 2,
                5.5 - 0.3 * 11]
    np.testing.assert_allclose(proposals.outer_inner_scores(
        score, np.zeros(5, int), starts, ends, 0.3), expected, atol=1e-12)


def test_nms_1d():
    starts = np.array([0.0, 1, 5, 20, 0, 0])
    ends = np.array([10.0, 11, 15, 30, 5, 10])
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.1, 0.05])
    # 1 overlaps 0 with IoU 9/11 -> dropped; 2 has IoU 1/3 with 0 -> kept;
    # 4 = [0, 5] has IoU exactly 0.5 with 0 -> kept (only > 0.5 drops);
    # 5 duplicates 0 -> dropped.
    np.testing.assert_array_equal(
        proposals.nms_1d(starts, ends, scores, 0.5), [0, 2, 3, 4])


def test_predict_classes():
    np.testing.assert_array_equal(
        localize.predict_classes([0.05, 0.2, 0.15], 0.1), [1, 2])
    np.testing.assert_array_equal(
        localize.predict_classes([0.08, 0.05, 0.01], 0.1), [0])


def test_class_zero_alone_is_localized_with_seconds():
    # Class 0 is the only (argmax) prediction; the release skipped it.
    # n=4, attention = sigmoid(T-CAM) = [1, 1, 0, 0] so u = lambda; upsampled
    # at j/20: 1 up to j=20, then 2 - j/20, 0 from j=40 on. Kept where
    # 0.8 u + 0.2 u^2 > 0.5, i.e. u > 0.5495: j = 0..29. Inner mean
    # (21 + 6.75) / 30 = 0.925, no left, right j = 30..37: 2.6 / 8 = 0.325.
    # T = 25 segments of 0.64 s over 80 positions: 0.2 s each.
    stream = StreamOutput(attention=np.array([1.0, 1.0, 0.0, 0.0]),
                          class_probs=np.array([0.05, 0.02]),
                          tcam=np.array([[50.0, 0], [50, 0], [-50, 0],
                                         [-50, 0]]))
    config = localize.LocalizationConfig(proposal_threshold={"rgb": 0.5})
    (detection,) = localize.localize_video({"rgb": stream}, 25, config)
    assert detection.class_id == 0
    np.testing.assert_allclose(detection[1:], [0.925 - 0.3 * 0.325, 0.0, 6.0],
                               atol=1e-12)


def test_two_stream_score_and_a_single_sampled_segment():
    # n = 1: constant signals over the whole video (T = 3 -> 1.92 s).
    # u = 0.5 * sigmoid(0) = 0.25; v = 0.5 (0.35 * 0.25 + 0.65 * 0.5 * 1).
    rgb = StreamOutput(np.array([0.5]), np.array([0.9]), np.array([[0.0]]))
    flow = StreamOutput(np.array([0.5]), np.array([0.9]), np.array([[50.0]]))
    (detection,) = localize.stream_proposals(
        rgb, np.array([0]), 3, 0.1, localize.LocalizationConfig(),
        other_tcam=flow.tcam, alpha=0.35)
    np.testing.assert_allclose(detection, [0, 0.5 * (0.35 * 0.25 + 0.65 * 0.5),
                                           0.0, 1.92], atol=1e-12)


def test_fuse_streams_union_duplicates_nms():
    a = Detection(1, 0.9, 0.0, 10.0)
    rgb = [a, Detection(1, 0.5, 20.0, 30.0), Detection(2, 0.3, 0.0, 5.0),
           Detection(2, 0.3, 1.0, 5.5), Detection(4, 0.4, 0.0, 10.0),
           Detection(4, 0.7, 0.0, 9.0)]
    flow = [a, Detection(1, 0.8, 1.0, 10.0), Detection(1, 0.6, 25.0, 35.0),
            Detection(3, 0.2, 3.0, 4.0)]
    fused = localize.fuse_streams(rgb, [1, 2, 4], flow, [1, 3, 4], 0.5)
    # Class 1: a once, (1, 10) dropped by a (IoU 0.9); class 2 (rgb only)
    # and 3 (flow only) unchanged although overlapping; class 4 is predicted
    # by both, so NMS applies to rgb's proposals alone.
    assert fused == [a, flow[2], rgb[1], rgb[2], rgb[3], flow[3], rgb[5]]


def test_identical_streams_fuse_to_either_stream():
    # Same T-CAM in both streams: v = lambda^2 sigmoid(a) whatever alpha, so
    # every proposal comes twice, exactly; runs of one class never overlap,
    # so NMS keeps all of them.
    rng = np.random.default_rng(2)
    stream = _random_stream(rng, 60, 4)
    config = localize.LocalizationConfig(
        class_threshold=0.0, proposal_threshold={"rgb": 0.2, "flow": 0.2})
    one = localize.stream_proposals(stream, np.arange(4), 200, 0.2, config,
                                    other_tcam=stream.tcam, alpha=0.35)
    both = localize.localize_video({"rgb": stream, "flow": stream}, 200, config)
    assert len(one) > 4
    assert sorted(both) == sorted(one)


def _random_stream(rng, n, num_classes):
    attention = expit(np.cumsum(rng.normal(0, 0.7, n)) - 1)
    tcam = rng.normal(0, 2, (n, num_classes))
    probs = rng.dirichlet(np.ones(num_classes + 1))[:num_classes]
    return StreamOutput(attention, probs, tcam)


def _release_style_proposals(stream, classes, num_segments, threshold, sigma,
                             other_tcam=None, alpha=1.0):
    """§5 steps 3-8 the way the release writes them (scipy, loops)."""
    n = len(stream.attention)
    positions = np.arange(20 * n) / 20

    def upsample(y):
        return interp1d(np.arange(n), y, axis=0,
                        fill_value="extrapolate")(positions)

    attention = stream.attention[:, None]
    u = attention * expit(stream.tcam[:, classes])
    v = u if other_tcam is None else attention * (
        alpha * u + (1 - alpha) * attention * expit(other_tcam[:, classes]))
    u_up, v_up, attention_up = upsample(u), upsample(v), upsample(
        stream.attention)
    seconds = 0.64 * num_segments / (20 * n)
    detections = []
    for i, class_id in enumerate(classes):
        actionness = 0.8 * u_up[:, i] + 0.2 * attention_up**2
        if sigma:
            actionness = gaussian_filter1d(actionness, sigma)
        kept = np.flatnonzero(actionness > threshold)
        if not kept.size:
            continue
        for group in np.split(kept, np.flatnonzero(np.diff(kept) != 1) + 1):
            s, e, length, end = group[0], group[-1], group.size, len(v_up)
            left = (np.mean(v_up[max(0, s - length // 4 - 1):s, i])
                    if s > 0 else 0)
            right = (np.mean(v_up[e + 1:min(end, e + length // 4 + 2), i])
                     if e < end - 1 else 0)
            detections.append((class_id, np.mean(v_up[group, i])
                               - 0.3 * (left + right), s * seconds,
                               (e + 1) * seconds))
    return detections


@pytest.mark.parametrize("n,sigma,two_streams", [
    (2, 0.0, False), (7, 0.0, True), (60, 0.0, True), (60, 25.0, False),
    (2, 25.0, True), (30, 3.0, True)])
def test_stream_proposals_match_release_style(n, sigma, two_streams):
    rng = np.random.default_rng(n + int(sigma))
    stream = _random_stream(rng, n, 5)
    other = rng.normal(0, 2, (n, 5)) if two_streams else None
    classes = np.array([0, 2, 3])
    config = localize.LocalizationConfig(smooth_sigma=sigma)
    ours = localize.stream_proposals(stream, classes, 123, 0.15, config,
                                     other_tcam=other, alpha=0.35)
    expected = _release_style_proposals(stream, classes, 123, 0.15, sigma,
                                        other_tcam=other, alpha=0.35)
    assert len(ours) == len(expected) > 0
    assert [d.class_id for d in ours] == [d[0] for d in expected]
    np.testing.assert_allclose([d[1:] for d in ours],
                               [d[1:] for d in expected], rtol=0, atol=1e-12)


def test_activitynet_settings():
    config = localize.LocalizationConfig.for_dataset("activitynet12")
    assert config.smooth_sigma == 25.0
    assert config.proposal_threshold == {"rgb": 0.01, "flow": 0.01}
    assert config.fusion_alpha == {"rgb": 0.5, "flow": 0.5}
    assert (localize.LocalizationConfig.for_dataset("thumos14")
            == localize.LocalizationConfig())
    with pytest.raises(UserError, match="kinetics"):
        localize.LocalizationConfig.for_dataset("kinetics")


def test_stream_output_shapes_are_checked():
    with pytest.raises(ValueError, match="tcam"):
        StreamOutput(np.ones(4), np.ones(3), np.ones((4, 2)))


def test_results_json():
    detections = {"v1": [Detection(1, 0.5, 0.0, 1.5)], "v2": []}
    assert localize.results_json(detections, ["a", "b"]) == {
        "version": "dgam-tf",
        "results": {"v1": [{"label": "b", "score": 0.5,
                            "segment": [0.0, 1.5]}], "v2": []},
        "external_data": {"used": True, "details": "I3D features"},
    }
