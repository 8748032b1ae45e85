"""Test-time localization of one video as TensorFlow ops (docs/method.md §5).

The graph twin of `dgam_tf.localization.localize.localize_video`, for the
exported SavedModel: only TF ops (no numpy, no `py_function`), so TF Serving
can run it. It follows the numpy reference step by step and computes in
float64 like it does, so both give the same detections (times and scores
agree to float rounding).

Signals of all K predicted classes of a stream are handled at once as [K, n]
tensors; proposals are flat tensors of length P.

NMS is our own (`nms_1d`, a `tf.while_loop`, per class) rather than
`tf.image.non_max_suppression` on boxes [0, start, 1, end]: that op has the
same rules (descending score, ties by input order, a box is dropped when its
IoU with a kept box is > the threshold) but accepts only float32/float16
boxes, so its IoU would be computed on other values than the float64 seconds
of the reference and could flip a decision at the threshold.
"""
from typing import NamedTuple

import tensorflow as tf

from dgam_tf.config import SECONDS_PER_SEGMENT, LocalizationConfig
from dgam_tf.localization import proposals


class StreamTensors(NamedTuple):
    """`localize.StreamOutput` as tensors (attention [n], class_probs [C],
    tcam [n, C])."""
    attention: tf.Tensor
    class_probs: tf.Tensor
    tcam: tf.Tensor


class Proposals(NamedTuple):
    """Flat detections: class_id int64 [P]; score, start, end float64 [P]."""
    class_id: tf.Tensor
    score: tf.Tensor
    start: tf.Tensor
    end: tf.Tensor

    def gather(self, index):
        return Proposals(*(tf.gather(t, index) for t in self))

    def mask(self, keep):
        return Proposals(*(tf.boolean_mask(t, keep) for t in self))


def predicted_classes(class_probs, threshold):
    """Classes with probability above `threshold`, else the argmax alone.

    Args:
      class_probs: [C] class probabilities.
      threshold: Python float.

    Returns:
      bool [C], at least one True.
    """
    above = class_probs > tf.cast(threshold, class_probs.dtype)  # [C]
    top = tf.equal(tf.range(tf.size(class_probs, out_type=tf.int64)),
                   tf.argmax(class_probs))
    return above | (top & ~tf.reduce_any(above))


def upsample_linear(signal, factor):
    """Linear interpolation with extrapolation, like `proposals.upsample_linear`.

    Samples sit at 0, ..., n-1 and are read at j / factor, j < factor * n;
    the tail beyond n - 1 is extrapolated from the last two samples, a single
    sample is held constant.

    Args:
      signal: float64 [..., n].
      factor: Python int.

    Returns:
      float64 [..., factor * n].
    """
    n = tf.shape(signal)[-1]
    index = tf.range(factor * n)
    left = tf.maximum(tf.minimum(index // factor, n - 2), 0)
    right = tf.minimum(left + 1, n - 1)
    fraction = (tf.cast(index, tf.float64) / factor
                - tf.cast(left, tf.float64))  # in [0, 1) inside, up to 2 at the tail
    low = tf.gather(signal, left, axis=-1)
    high = tf.gather(signal, right, axis=-1)
    return low + (high - low) * fraction


def gaussian_smooth(signal, sigma, truncate=4.0, axis=-1):
    """Gaussian smoothing along `axis`, like scipy's gaussian_filter1d.

    The kernel of `proposals.gaussian_kernel` (radius `int(truncate * sigma +
    0.5)`) in the signal's dtype; 'reflect' borders (d c b a | a b c d |
    d c b a), repeated when the radius exceeds the signal length.

    Args:
      signal: float tensor, e.g. float64 [K, N] (localization) or float32
        [B, T, K] along axis 1 (L_guide).
      sigma: Python float > 0, in samples.
      truncate: radius in standard deviations.
      axis: -1 or a non-negative axis.

    Returns:
      A tensor of the signal's shape and dtype.
    """
    weights = proposals.gaussian_kernel(sigma, truncate).astype(signal.dtype.as_numpy_dtype)
    radius = len(weights) // 2
    n = tf.shape(signal)[axis]
    # Reflection is periodic with period 2N: position p reads p mod 2N,
    # mirrored in the second half (any N >= 1).
    period = tf.math.floormod(tf.range(-radius, n + radius), 2 * n)
    padded = tf.gather(signal, tf.where(period < n, period, 2 * n - 1 - period),
                       axis=axis)  # N + 2 radius along axis
    lead = (Ellipsis,) if axis == -1 else (slice(None),) * axis
    return tf.add_n([w * padded[lead + (slice(k, k + n),)] for k, w in enumerate(weights)])


def group_runs(keep):
    """Runs of consecutive kept positions in every row.

    Args:
      keep: bool [K, N].

    Returns:
      (rows, starts, ends) int64 [P], sorted by row then start; a run covers
      starts..ends, both included.
    """
    edges = tf.pad(tf.cast(keep, tf.int32), [[0, 0], [1, 1]])
    steps = edges[:, 1:] - edges[:, :-1]  # [K, N + 1]: +1 where a run starts
    starts = tf.where(steps > 0)  # [P, 2] (row, position), row-major order
    stops = tf.where(steps < 0)  # one past each run, same order
    return starts[:, 0], starts[:, 1], stops[:, 1] - 1


def outer_inner_scores(score, rows, starts, ends, outer_weight):
    """inner - outer_weight (outer-left + outer-right) of each run (§5 step 7).

    For a run [s, e] of length L: inner = mean over [s, e], outer-left = mean
    over [max(0, s - L//4 - 1), s), outer-right = mean over
    (e, min(N, e + L//4 + 2)); an empty outer range counts as 0.

    Args:
      score: float64 [K, N], the signal v.
      rows, starts, ends: int64 [P] from `group_runs`.
      outer_weight: Python float.

    Returns:
      float64 [P].
    """
    num_positions = tf.shape(score, out_type=tf.int64)[1]
    cumulative = tf.pad(tf.cumsum(score, axis=1), [[0, 0], [1, 0]])  # [K, N + 1]

    def range_means(low, high):  # means over [low, high)
        total = (tf.gather_nd(cumulative, tf.stack([rows, high], axis=1))
                 - tf.gather_nd(cumulative, tf.stack([rows, low], axis=1)))
        return total / tf.cast(tf.maximum(high - low, 1), tf.float64)

    quarter = (ends - starts + 1) // 4
    inner = range_means(starts, ends + 1)
    left = range_means(tf.maximum(starts - quarter - 1, 0), starts)
    right = range_means(ends + 1, tf.minimum(ends + quarter + 2, num_positions))
    return inner - outer_weight * (left + right)


def stream_proposals(stream, predicted, num_segments, threshold, config,
                     seconds_per_segment, other_tcam=None, alpha=1.0):
    """Proposals of one stream for its predicted classes (§5 steps 3-8).

    Args:
      stream: `StreamTensors` of n sampled segments.
      predicted: bool [C] from `predicted_classes`.
      num_segments: int scalar T, the video's segment count before sampling.
      threshold: Python float, the stream's proposal threshold.
      config: `LocalizationConfig`.
      seconds_per_segment: float64 scalar.
      other_tcam: [n, C] T-CAM of the other stream, or None for v = u.
      alpha: weight of this stream's T-CAM in v when `other_tcam` is given.

    Returns:
      `Proposals`, by class then start.
    """
    classes = tf.where(predicted)[:, 0]  # [K]
    attention = tf.cast(stream.attention, tf.float64)  # [n]

    def signal(tcam):  # [K, n]
        logits = tf.gather(tf.cast(tcam, tf.float64), classes, axis=1)
        return attention * tf.sigmoid(tf.transpose(logits))

    u = signal(stream.tcam)
    v = u if other_tcam is None else attention * (
        alpha * u + (1.0 - alpha) * signal(other_tcam))
    u_up = upsample_linear(u, config.upsample)  # [K, N]
    v_up = upsample_linear(v, config.upsample)
    attention_up = upsample_linear(attention, config.upsample)  # [N]
    actionness = ((1.0 - config.attention_weight) * u_up
                  + config.attention_weight * tf.square(attention_up))
    if config.smooth_sigma > 0:
        actionness = gaussian_smooth(actionness, config.smooth_sigma)
    rows, starts, ends = group_runs(actionness > threshold)
    scores = outer_inner_scores(v_up, rows, starts, ends, config.outer_weight)
    n = tf.shape(attention)[0]
    seconds_per_position = (seconds_per_segment * tf.cast(num_segments, tf.float64)
                            / tf.cast(config.upsample * n, tf.float64))
    return Proposals(tf.gather(classes, rows), scores,
                     tf.cast(starts, tf.float64) * seconds_per_position,
                     tf.cast(ends + 1, tf.float64) * seconds_per_position)


def _lexsort(keys):
    """Indices that sort by keys[0], then keys[1], ...; ties keep input order.

    Args:
      keys: list of [P] tensors.

    Returns:
      int32 [P].
    """
    order = tf.range(tf.size(keys[0]))
    for key in reversed(keys):
        order = tf.gather(order, tf.argsort(tf.gather(key, order), stable=True))
    return order


def nms_1d(starts, ends, scores, iou_threshold, groups=None):
    """Greedy 1-D non-maximum suppression, like `proposals.nms_1d`.

    Segments are visited by descending score (ties keep their input order);
    a segment is dropped when its IoU with a kept segment of the same group
    is above `iou_threshold`.

    Args:
      starts, ends: float64 [P], ends > starts.
      scores: float [P].
      iou_threshold: Python float.
      groups: int [P]; only segments of equal group suppress each other.
        None = one group.

    Returns:
      int32 [P'] kept indices, by descending score.
    """
    size = tf.size(scores)
    groups = tf.zeros([size], tf.int64) if groups is None else tf.cast(groups, tf.int64)
    # Each group becomes a row of a [G, M] block (M = largest group), so the
    # pairwise work is sum(P_g^2), not P^2; within a row, descending score.
    order = _lexsort([groups, -scores])  # [P]
    row = tf.unique(tf.gather(groups, order)).idx  # [P], non-decreasing
    column = tf.range(size) - tf.gather(tf.math.segment_min(tf.range(size), row), row)
    index = tf.stack([row, column], axis=1)
    shape = tf.stack([tf.reduce_max(tf.pad(row + 1, [[0, 1]])),
                      tf.reduce_max(tf.pad(column + 1, [[0, 1]]))])

    def blocks(values, padding):  # [P] -> [G, M]
        return tf.tensor_scatter_nd_update(tf.fill(shape, padding), index, values)

    block_starts = blocks(tf.gather(starts, order), tf.constant(0.0, tf.float64))
    block_ends = blocks(tf.gather(ends, order), tf.constant(0.0, tf.float64))
    valid = blocks(tf.ones([size], tf.bool), False)
    intersection = tf.maximum(
        tf.minimum(block_ends[:, :, None], block_ends[:, None, :])
        - tf.maximum(block_starts[:, :, None], block_starts[:, None, :]), 0.0)
    lengths = block_ends - block_starts
    # (Padding has length 0; its 0/0 becomes 0 and it is masked anyway.)
    iou = tf.math.divide_no_nan(
        intersection, lengths[:, :, None] + lengths[:, None, :] - intersection)
    rank = tf.range(shape[1])
    # suppresses[g, i, j]: i comes before j in group g and drops j if kept.
    suppresses = ((iou > iou_threshold) & (rank[:, None] < rank[None, :])
                  & valid[:, :, None] & valid[:, None, :])

    # Greedy NMS is the fixed point of keep[j] = not any(keep[i] and
    # suppresses[i, j]); suppression only flows to later ranks, so iterating
    # from all-kept settles rank r by iteration r + 1 (usually far sooner).
    def body(keep, _):
        new = ~tf.reduce_any(suppresses & keep[:, :, None], axis=1)
        return new, tf.reduce_any(new != keep)

    keep, _ = tf.while_loop(lambda keep, changed: changed, body,
                            (valid, tf.constant(True)), maximum_iterations=shape[1] + 1)
    kept = tf.gather(tf.gather_nd(keep, index), tf.math.invert_permutation(order))  # [P]
    by_score = tf.argsort(-scores, stable=True)
    return tf.boolean_mask(by_score, tf.gather(kept, by_score))


def fuse_streams(first, first_predicted, second, second_predicted, nms_iou):
    """Two-stream fusion (§5 step 9).

    A class predicted by both streams gets the union of their proposals
    (exact duplicates once) filtered by NMS; a class predicted by one stream
    keeps its proposals unchanged.

    Args:
      first, second: `Proposals` of each stream.
      first_predicted, second_predicted: bool [C], the streams' classes.
      nms_iou: Python float.

    Returns:
      `Proposals`, unordered.
    """
    union = Proposals(*(tf.concat(pair, axis=0) for pair in zip(first, second)))
    # Equal proposals are adjacent in lexicographic order; the stable sort
    # keeps the first stream's copy first.
    order = _lexsort(list(union))
    ordered = union.gather(order)
    same = tf.reduce_all(tf.stack([tf.equal(t, tf.roll(t, 1, axis=0)) for t in ordered]),
                         axis=0) & (tf.range(tf.size(order)) > 0)
    union = union.mask(~tf.gather(same, tf.math.invert_permutation(order)))
    both = tf.gather(first_predicted & second_predicted, union.class_id)
    shared = union.mask(both)
    shared = shared.gather(nms_1d(shared.start, shared.end, shared.score, nms_iou,
                                  shared.class_id))
    return Proposals(*(tf.concat(pair, axis=0) for pair in zip(union.mask(~both), shared)))


def localize_video(streams, num_segments, class_names, config=None,
                   seconds_per_segment=SECONDS_PER_SEGMENT):
    """Localizes actions in one video from one or two streams (§5).

    Args:
      streams: mapping stream name ("rgb", "flow") -> `StreamTensors`; one or
        two streams, sampled at the same n positions.
      num_segments: int scalar T, the video's segment count before sampling.
      class_names: sequence of C class names.
      config: `LocalizationConfig`; None = THUMOS14 defaults.
      seconds_per_segment: scalar, seconds covered by one of the T segments.

    Returns:
      dict of [K] tensors, by class id then descending score: "start", "end"
      (seconds), "score" (float32), "class_id" (int32), "label" (string).

    Raises:
      ValueError: not one or two streams, or a stream missing from the config.
    """
    config = config or LocalizationConfig()
    names = list(streams)
    if len(names) not in (1, 2):
        raise ValueError(f"expected one or two streams, got {names}")
    missing = [n for n in names if n not in config.proposal_threshold
               or (len(names) == 2 and n not in config.fusion_alpha)]
    if missing:
        raise ValueError(f"no localization settings for stream(s) {missing}")
    seconds_per_segment = tf.cast(seconds_per_segment, tf.float64)
    results = []
    for name in names:
        stream = streams[name]
        other = [streams[n].tcam for n in names if n != name]
        predicted = predicted_classes(stream.class_probs, config.class_threshold)
        detections = stream_proposals(
            stream, predicted, num_segments, config.proposal_threshold[name],
            config, seconds_per_segment, other_tcam=other[0] if other else None,
            alpha=config.fusion_alpha.get(name, 1.0))
        results.append((detections, predicted))
    if len(results) == 1:
        detections = results[0][0]
    else:
        (first, first_predicted), (second, second_predicted) = results
        detections = fuse_streams(first, first_predicted, second,
                                  second_predicted, config.nms_iou)
    detections = detections.gather(tf.argsort(-detections.score, stable=True))
    detections = detections.gather(tf.argsort(detections.class_id, stable=True))
    class_id = tf.cast(detections.class_id, tf.int32)
    return {"start": tf.cast(detections.start, tf.float32),
            "end": tf.cast(detections.end, tf.float32),
            "score": tf.cast(detections.score, tf.float32),
            "class_id": class_id,
            "label": tf.gather(tf.constant(list(class_names)), class_id)}
