"""Test-time localization of one video from the outputs of the stream models.

Implements docs/method.md §5: class prediction, the signals u (proposals) and
v (scores) built from attention and T-CAM, 20x upsampling, thresholding,
outer-inner scoring, conversion to seconds and the two-stream fusion with
NMS; plus the ActivityNet result JSON for many videos.
"""
import dataclasses
from typing import NamedTuple

import numpy as np

from dgam_tf.config import SECONDS_PER_SEGMENT, LocalizationConfig
from dgam_tf.localization import proposals

@dataclasses.dataclass(frozen=True)
class StreamOutput:
    """What one stream's model says about one uniformly sampled video.

    Attributes:
      attention: [n] attention lambda of each sampled segment.
      class_probs: [C] softmax over C + 1 classes with background dropped.
      tcam: [n, C] T-CAM x W^T (no bias), background column dropped.
    """
    attention: np.ndarray
    class_probs: np.ndarray
    tcam: np.ndarray

    def __post_init__(self):
        n, num_classes = np.shape(self.attention), np.shape(self.class_probs)
        if (len(n) != 1 or len(num_classes) != 1 or n[0] == 0
                or np.shape(self.tcam) != n + num_classes):
            raise ValueError(
                f"StreamOutput shapes disagree: attention {n}, class_probs "
                f"{num_classes}, tcam {np.shape(self.tcam)}; expected [n], "
                "[C], [n, C] with n > 0")

    @classmethod
    def random(cls, n, num_classes, rng, dtype=np.float64):
        """A plausible output drawn with numpy Generator `rng`, for tests and
        benchmarks: smooth attention (a random walk through a sigmoid), a few
        likely classes, a T-CAM that follows the attention."""
        walk = np.cumsum(rng.normal(0, 0.5, n))
        attention = 1 / (1 + np.exp(-(walk - walk.mean())))
        logits = rng.normal(0, 2, num_classes + 1)
        probs = np.exp(logits - logits.max())
        probs = (probs / probs.sum())[:num_classes]
        tcam = rng.normal(0, 1, (n, num_classes)) + 3 * (attention[:, None] - 0.5)
        return cls(attention.astype(dtype), probs.astype(dtype), tcam.astype(dtype))


class Detection(NamedTuple):
    """One localized action instance; start and end are in seconds."""
    class_id: int
    score: float
    start: float
    end: float


def predict_classes(class_probs, threshold):
    """Classes with probability above `threshold`, else the argmax alone.

    Args:
      class_probs: [C] class probabilities.
      threshold: probability threshold.

    Returns:
      int array [k], k >= 1, ascending.
    """
    class_probs = np.asarray(class_probs)
    classes = np.flatnonzero(class_probs > threshold)
    return classes if classes.size else np.array([np.argmax(class_probs)])


def _sigmoid(x):
    return np.exp(-np.logaddexp(0.0, -x))


def stream_proposals(stream, classes, num_segments, threshold, config,
                     other_tcam=None, alpha=1.0,
                     seconds_per_segment=SECONDS_PER_SEGMENT):
    """Proposals of one stream for its predicted classes (§5 steps 3-8).

    Args:
      stream: the stream's `StreamOutput` (n sampled segments).
      classes: int array [k] of predicted classes.
      num_segments: T, the video's segment count before sampling.
      threshold: the stream's proposal threshold.
      config: `LocalizationConfig`.
      other_tcam: [n, C] T-CAM of the other stream, or None for v = u.
      alpha: weight of this stream's T-CAM in v when `other_tcam` is given.
      seconds_per_segment: seconds covered by one of the T segments.

    Returns:
      list of `Detection`, by class (in `classes` order) then start time.
    """
    attention = np.asarray(stream.attention, dtype=np.float64)  # [n]
    tcam = np.asarray(stream.tcam, dtype=np.float64)
    u = attention * _sigmoid(tcam[:, classes].T)  # [k, n]
    if other_tcam is None:
        v = u
    else:
        u_other = attention * _sigmoid(
            np.asarray(other_tcam, dtype=np.float64)[:, classes].T)
        v = attention * (alpha * u + (1.0 - alpha) * u_other)  # [k, n]
    u_up = proposals.upsample_linear(u, config.upsample)  # [k, N]
    v_up = proposals.upsample_linear(v, config.upsample)
    attention_up = proposals.upsample_linear(attention, config.upsample)  # [N]
    actionness = ((1.0 - config.attention_weight) * u_up
                  + config.attention_weight * attention_up**2)  # [k, N]
    if config.smooth_sigma > 0:
        actionness = proposals.gaussian_smooth(actionness, config.smooth_sigma)
    rows, starts, ends = proposals.group_runs(actionness > threshold)
    scores = proposals.outer_inner_scores(v_up, rows, starts, ends,
                                          config.outer_weight)
    seconds_per_position = (seconds_per_segment * num_segments
                            / (config.upsample * attention.shape[0]))
    return [Detection(int(classes[r]), float(score),
                      float(s * seconds_per_position),
                      float((e + 1) * seconds_per_position))
            for r, score, s, e in zip(rows, scores, starts, ends)]


def fuse_streams(first, first_classes, second, second_classes, nms_iou):
    """Two-stream fusion (§5 step 9).

    A class predicted by both streams gets the union of their proposals
    (exact duplicates once), sorted by descending score and filtered by NMS;
    a class predicted by one stream keeps that stream's proposals unchanged.

    Args:
      first, second: lists of `Detection` of each stream.
      first_classes, second_classes: the classes each stream predicted.
      nms_iou: NMS IoU threshold.

    Returns:
      list of `Detection`, by class id.
    """
    first_classes, second_classes = set(first_classes), set(second_classes)
    fused = []
    for class_id in sorted(first_classes | second_classes):
        union = [d for d in first + second if d.class_id == class_id]
        if class_id in first_classes and class_id in second_classes:
            union = list(dict.fromkeys(union))  # exact duplicates once
            if union:
                table = np.array([(d.start, d.end, d.score) for d in union])
                kept = proposals.nms_1d(table[:, 0], table[:, 1], table[:, 2],
                                        nms_iou)
                union = [union[i] for i in kept]
        fused.extend(union)
    return fused


def localize_video(streams, num_segments, config=None,
                   seconds_per_segment=SECONDS_PER_SEGMENT):
    """Localizes actions in one video from one or two streams (§5).

    Args:
      streams: mapping from stream name ("rgb", "flow") to `StreamOutput`;
        one or two streams, sampled at the same n positions.
      num_segments: T, the video's segment count before sampling.
      config: `LocalizationConfig`; None = THUMOS14 defaults.
      seconds_per_segment: seconds covered by one of the T segments.

    Returns:
      list of `Detection`, by class id.

    Raises:
      ValueError: not one or two streams, streams of different shapes, or a
        stream name missing from the config.
    """
    config = config or LocalizationConfig()
    names = list(streams)
    if len(names) not in (1, 2):
        raise ValueError(f"expected one or two streams, got {names}")
    if len({np.shape(s.tcam) for s in streams.values()}) != 1:
        raise ValueError("the streams' T-CAMs have different shapes: "
                         f"{[np.shape(s.tcam) for s in streams.values()]}")
    missing = [n for n in names if n not in config.proposal_threshold
               or (len(names) == 2 and n not in config.fusion_alpha)]
    if missing:
        raise ValueError(f"no localization settings for stream(s) {missing}")
    results = []
    for name in names:
        stream = streams[name]
        other = [streams[n] for n in names if n != name]
        classes = predict_classes(stream.class_probs, config.class_threshold)
        detections = stream_proposals(
            stream, classes, num_segments, config.proposal_threshold[name],
            config, other_tcam=other[0].tcam if other else None,
            alpha=config.fusion_alpha.get(name, 1.0),
            seconds_per_segment=seconds_per_segment)
        results.append((detections, classes))
    if len(results) == 1:
        return results[0][0]
    (first, first_classes), (second, second_classes) = results
    return fuse_streams(first, first_classes, second, second_classes,
                        config.nms_iou)


def results_json(detections_by_video, class_names):
    """Detections of many videos as an ActivityNet result JSON object.

    Args:
      detections_by_video: mapping video id -> sequence of `Detection`.
      class_names: sequence [C] naming each class id.

    Returns:
      dict {"version", "results": {video: [{"label", "score", "segment"}]},
      "external_data"}, ready for json.dump.
    """
    return {
        "version": "dgam-tf",
        "results": {
            video: [{"label": class_names[d.class_id], "score": float(d.score),
                     "segment": [float(d.start), float(d.end)]}
                    for d in detections]
            for video, detections in detections_by_video.items()},
        "external_data": {"used": True, "details": "I3D features"},
    }
