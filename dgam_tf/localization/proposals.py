"""Numpy building blocks of test-time localization (docs/method.md §5, steps 5-9).

Every function works on all predicted classes of a video at once: a signal is
an array of shape [K, n] (K predicted classes, n samples along time) and the
temporal proposals of all classes are flat arrays (`rows`, `starts`, `ends`)
where `rows` says which of the K classes a proposal belongs to.
"""
import numpy as np


def upsample_linear(signal, factor):
    """Upsamples a signal by linear interpolation with extrapolation.

    The samples sit at positions 0, 1, ..., n-1 and are read at positions
    j / factor for j = 0, ..., factor * n - 1. The last factor - 1 positions
    lie beyond n - 1 and are extrapolated from the last two samples, like
    scipy's `interp1d(..., fill_value="extrapolate")`. A single sample
    (n == 1) is held constant.

    Args:
      signal: float array [..., n], interpolated along the last axis.
      factor: positive integer upsampling factor.

    Returns:
      float64 array [..., factor * n].
    """
    signal = np.asarray(signal, dtype=np.float64)
    n = signal.shape[-1]
    if n == 1:
        return np.repeat(signal, factor, axis=-1)
    index = np.arange(factor * n)
    left = np.minimum(index // factor, n - 2)  # [factor * n]
    fraction = index / factor - left  # in [0, 1) inside, up to 2 at the tail
    low = signal[..., left]
    high = signal[..., left + 1]
    return low + (high - low) * fraction


def gaussian_kernel(sigma, truncate=4.0):
    """scipy.ndimage.gaussian_filter1d's kernel: float64 [2 r + 1], r =
    int(truncate * sigma + 0.5), normalised to sum 1."""
    radius = int(truncate * sigma + 0.5)
    weights = np.exp(-0.5 * np.arange(-radius, radius + 1) ** 2 / sigma**2)
    return weights / weights.sum()


def gaussian_smooth(signal, sigma, truncate=4.0):
    """Smooths a signal with a normalised Gaussian along its last axis.

    Matches `scipy.ndimage.gaussian_filter1d(signal, sigma, axis=-1)` with its
    defaults: the kernel of `gaussian_kernel`, and the signal extended by
    mirror reflection that repeats the edge sample (scipy mode 'reflect',
    numpy pad mode 'symmetric': d c b a | a b c d | d c b a), repeatedly when
    the radius exceeds the signal length.

    Args:
      signal: float array [..., N].
      sigma: standard deviation of the Gaussian in samples, > 0.
      truncate: radius of the kernel in standard deviations.

    Returns:
      float64 array [..., N].
    """
    signal = np.asarray(signal, dtype=np.float64)
    weights = gaussian_kernel(sigma, truncate)
    radius = len(weights) // 2
    pad = [(0, 0)] * (signal.ndim - 1) + [(radius, radius)]
    padded = np.pad(signal, pad, mode="symmetric")  # [..., N + 2 radius]
    windows = np.lib.stride_tricks.sliding_window_view(
        padded, 2 * radius + 1, axis=-1)  # [..., N, 2 radius + 1]
    return windows @ weights


def group_runs(keep):
    """Finds the runs of consecutive kept positions in every row.

    Args:
      keep: bool array [K, N].

    Returns:
      (rows, starts, ends): int arrays [P], one entry per run, sorted by row
      then start; a run covers positions starts..ends of its row, both ends
      included.
    """
    keep = np.asarray(keep, dtype=bool)
    edges = np.zeros((keep.shape[0], keep.shape[1] + 2), dtype=np.int8)
    edges[:, 1:-1] = keep
    steps = np.diff(edges, axis=1)  # [K, N + 1]: +1 where a run starts
    rows, starts = np.nonzero(steps == 1)
    _, stops = np.nonzero(steps == -1)  # one past each run, same order
    return rows, starts, stops - 1


def _range_means(cumulative, rows, low, high):
    """Means over [low, high) of each row from its cumulative sum; 0 if empty."""
    total = cumulative[rows, high] - cumulative[rows, low]
    return total / np.maximum(high - low, 1)


def outer_inner_scores(score, rows, starts, ends, outer_weight):
    """Outer-inner contrast score of each proposal (docs/method.md §5 step 7).

    For a run [s, e] of length L: inner = mean of `score` over [s, e];
    outer-left = mean over [max(0, s - L//4 - 1), s); outer-right = mean over
    (e, min(N, e + L//4 + 2)); an empty outer range (s == 0, e == N - 1)
    counts as 0. Score = inner - outer_weight * (outer-left + outer-right).

    Args:
      score: float array [K, N], the per-position score signal `v`.
      rows, starts, ends: int arrays [P] from `group_runs`.
      outer_weight: weight of the outer means (0.3).

    Returns:
      float64 array [P].
    """
    score = np.asarray(score, dtype=np.float64)
    num_positions = score.shape[1]
    cumulative = np.zeros((score.shape[0], num_positions + 1))
    np.cumsum(score, axis=1, out=cumulative[:, 1:])
    quarter = (ends - starts + 1) // 4
    inner = _range_means(cumulative, rows, starts, ends + 1)
    left = _range_means(cumulative, rows, np.maximum(0, starts - quarter - 1),
                        starts)
    right = _range_means(cumulative, rows, ends + 1,
                         np.minimum(num_positions, ends + quarter + 2))
    return inner - outer_weight * (left + right)


def nms_1d(starts, ends, scores, iou_threshold):
    """Greedy non-maximum suppression of temporal segments.

    Segments are visited by descending score (ties keep their input order);
    a segment is dropped when its IoU with an already kept one is above
    `iou_threshold` (torchvision's `nms` rule, which the release uses).

    Args:
      starts, ends: float arrays [P], segment bounds with ends > starts.
      scores: float array [P].
      iou_threshold: IoU above which the lower-scored segment is dropped.

    Returns:
      int array of kept indices, by descending score.
    """
    starts, ends = np.asarray(starts, float), np.asarray(ends, float)
    order = np.argsort(-np.asarray(scores, float), kind="stable")
    starts, ends = starts[order], ends[order]
    intersection = np.clip(np.minimum(ends[:, None], ends[None, :])
                           - np.maximum(starts[:, None], starts[None, :]),
                           0.0, None)  # [P, P]
    lengths = ends - starts
    iou = intersection / (lengths[:, None] + lengths[None, :] - intersection)
    alive = np.ones(len(order), dtype=bool)
    kept = []
    for i in range(len(order)):
        if alive[i]:
            kept.append(i)
            alive &= iou[i] <= iou_threshold
    return order[np.asarray(kept, dtype=np.intp)]
