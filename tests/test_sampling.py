"""Sampling rules (docs/method.md §1) against a numpy reference, run both
eagerly and inside tf.data's Dataset.map."""
import numpy as np
import pytest
import tensorflow as tf

from dgam_tf.data import sampling


def reference_ranges(t, n):
    """The release's anchors with float arithmetic: allowed [lo, hi] per i."""
    p = np.floor(np.arange(n) * t / n).astype(int)
    hi = np.append(p[1:], t - 1)
    return p, hi


def perturb_in_map(t, n, seed):
    ds = tf.data.Dataset.from_tensors(tf.constant(t)).map(
        lambda tt: sampling.random_perturb_indices(tt, n, tf.constant(seed, tf.int64)))
    return next(iter(ds)).numpy()


@pytest.mark.parametrize("t,n", [(1, 8), (7, 20), (20, 20), (350, 400), (1000, 400), (2700, 400)])
@pytest.mark.parametrize("in_map", [False, True])
def test_random_perturb_stays_in_its_anchor_range(t, n, in_map):
    lo, hi = reference_ranges(t, n)
    for seed in range(3):
        if in_map:
            idx = perturb_in_map(t, n, [seed, 7])
        else:
            idx = sampling.random_perturb_indices(t, n, tf.constant([seed, 7])).numpy()
        assert idx.shape == (n,)
        assert np.all(idx >= lo) and np.all(idx <= hi)
        fixed = lo == hi
        np.testing.assert_array_equal(idx[fixed], lo[fixed])


def test_random_perturb_is_uniform_over_both_ends():
    # T=1000, n=400: every anchor range [lo, hi] holds 3 or 4 values; over 50
    # seeds each offset idx - lo must be about equally frequent, ends included.
    lo, hi = reference_ranges(1000, 400)
    draws = np.stack([sampling.random_perturb_indices(1000, 400, tf.constant([s, 0])).numpy()
                      for s in range(50)])
    for width in (3, 4):
        offsets = (draws - lo)[:, hi - lo + 1 == width].ravel()
        freq = np.bincount(offsets, minlength=width) / offsets.size
        np.testing.assert_allclose(freq, 1 / width, atol=0.03)


def test_random_perturb_is_deterministic_by_seed():
    a = sampling.random_perturb_indices(500, 400, tf.constant([3, 4])).numpy()
    b = sampling.random_perturb_indices(500, 400, tf.constant([3, 4])).numpy()
    c = sampling.random_perturb_indices(500, 400, tf.constant([3, 5])).numpy()
    np.testing.assert_array_equal(a, b)
    assert np.any(a != c)


@pytest.mark.parametrize("t", [1, 2, 37, 50, 399, 400, 401, 2700])
@pytest.mark.parametrize("in_map", [False, True])
def test_uniform_sampling_matches_numpy(t, in_map):
    n_ref = int(np.clip(t, 50, 400))
    ref = np.floor(np.arange(n_ref) * t / n_ref).astype(int)

    def fn(tt):
        return sampling.uniform_indices(tt, sampling.test_sample_count(tt, 50, 400))

    if in_map:
        idx = next(iter(tf.data.Dataset.from_tensors(tf.constant(t)).map(fn))).numpy()
    else:
        idx = fn(tf.constant(t)).numpy()
    np.testing.assert_array_equal(idx, ref)
