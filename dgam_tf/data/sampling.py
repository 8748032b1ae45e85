"""Segment sampling rules of docs/method.md §1, as graph-safe TF ops."""
import tensorflow as tf


def random_perturb_indices(num_segments, n, seed):
    """Training-time "random perturb" sampling of exactly `n` segment indices.

    Anchor i covers [floor(i*T/n), floor((i+1)*T/n)] (the last one up to T-1);
    one index is drawn uniformly from each, both ends included. Short videos
    repeat segments.

    Args:
      num_segments: scalar int, the video's T >= 1.
      n: Python int, segments to draw.
      seed: stateless seed, int tensor of shape [2].

    Returns:
      int32 [n] indices in [0, T-1], non-decreasing.
    """
    t = tf.cast(num_segments, tf.int64)
    i = tf.range(n, dtype=tf.int64)
    lo = i * t // n                                               # [n]
    hi = tf.concat([lo[1:], tf.reshape(t - 1, [1])], axis=0)      # [n]
    u = tf.random.stateless_uniform([n], seed=seed, dtype=tf.float64)
    # lo + floor(u * (hi - lo + 1)) is uniform on [lo, hi]; u < 1 keeps it <= hi.
    idx = lo + tf.cast(tf.floor(u * tf.cast(hi - lo + 1, tf.float64)), tf.int64)
    return tf.cast(tf.minimum(idx, hi), tf.int32)


def uniform_indices(num_segments, n):
    """Test-time uniform sampling: idx_i = floor(i*T/n), int32 [n]."""
    t = tf.cast(num_segments, tf.int64)
    n = tf.cast(n, tf.int64)
    return tf.cast(tf.range(n, dtype=tf.int64) * t // n, tf.int32)


def test_sample_count(num_segments, min_segments, max_segments):
    """n = clip(T, min, max) segments at test time."""
    return tf.clip_by_value(tf.cast(num_segments, tf.int32), min_segments, max_segments)


def test_indices(num_segments, min_segments, max_segments):
    """The test-time sample of a video of T segments: uniform_indices of
    test_sample_count(T, min, max) segments, int32 [n]."""
    return uniform_indices(num_segments,
                           test_sample_count(num_segments, min_segments, max_segments))
