"""DGAM losses (docs/method.md §3). Each returns per-example values [B] so the
caller can average over the global batch under a tf.distribute strategy."""
import tensorflow as tf

from dgam_tf.localization.graph import gaussian_smooth
from dgam_tf.models.cvae import sample


def pooled_features(x, attention):
    """Attention-weighted foreground and background video features.

    Args:
      x: [B, T, D] features; attention: [B, T].

    Returns:
      f_fg = sum lambda x / (sum lambda + 1), f_bg = sum (1-lambda) x /
      (sum (1-lambda) + 1e-6), each [B, D] float32.
    """
    x = tf.cast(x, tf.float32)
    att = tf.cast(attention, tf.float32)
    weights = tf.stack([att, 1 - att], axis=1)                    # [B, 2, T]
    # Both weighted sums in one batched matmul: one pass over x forward and
    # one backward (the gradient w.r.t. the weights is also a matmul), where
    # broadcast products would write [B, T, D] tensors (docs/performance.md).
    sums = tf.matmul(weights, x)                                  # [B, 2, D]
    norms = tf.reduce_sum(weights, -1) + tf.constant([1.0, 1e-6])  # [B, 2]
    pooled = sums / norms[..., None]
    return pooled[:, 0], pooled[:, 1]


def foreground_loss(logits_fg, labels):
    """L_fg: cross-entropy against labels normalised to sum 1.

    Args:
      logits_fg: [B, C+1]; labels: multi-hot [B, C].
    Returns: [B].
    """
    target = labels / tf.reduce_sum(labels, -1, keepdims=True)
    target = tf.pad(target, [[0, 0], [0, 1]])                     # background 0
    return tf.nn.softmax_cross_entropy_with_logits(target, logits_fg)


def background_loss(logits_bg):
    """L_bg: cross-entropy against the one-hot background class (last). [B]."""
    return -tf.nn.log_softmax(logits_bg)[:, -1]


def smooth_in_time(s):
    """Gaussian smoothing (sigma 1, radius 4, 'reflect' borders) along axis 1.

    s: [B, T, K] -> [B, T, K]; matches scipy.ndimage.gaussian_filter1d.
    """
    return gaussian_smooth(s, 1.0, axis=1)


def guide_loss(attention, tcam, labels):
    """L_guide (self-guidance), per example [B].

    Args:
      attention: [B, T]; tcam: x W^T without bias [B, T, C+1]; labels: [B, C].
    """
    s = tf.stop_gradient(smooth_in_time(tf.nn.softmax(tcam)))      # [B, T, C+1]
    labelled = tf.where(labels[:, None, :] > 0, s[..., :-1], -1.0)  # [B, T, C]
    g_fg = tf.reduce_max(labelled, -1)                              # [B, T]
    g_bg = 1.0 - s[..., -1]
    att = tf.cast(attention, tf.float32)
    return tf.reduce_mean(tf.abs(att - g_fg) + tf.abs(att - g_bg), -1)


def reconstruction_loss(cvae, x, attention, noise):
    """L_recon: MSE of the decoder on z drawn from the prior p(z | lambda). [B].

    `noise` [B, T, L] is standard normal; gradients reach `attention` through
    the prior's mean and the (frozen) decoder.
    """
    z = sample(cvae.prior(attention), noise)                        # [B, T, L]
    return tf.reduce_mean(cvae.decoder_mse(z, attention, x), -1)


def cvae_loss(cvae, x, attention, beta, noise):
    """L_cvae = beta * KL(q || p) + MSE, both means over elements. [B].

    `attention` is held constant (the caller stops its gradient).
    """
    q = cvae.posterior(x, attention)
    kl = q.kl_divergence(cvae.prior(attention)) / cvae.latent_dim   # [B, T]
    mse = cvae.decoder_mse(sample(q, noise), attention, x)          # [B, T]
    return tf.reduce_mean(beta * kl + mse, -1)


def ramp(epoch, ramp_epochs, chunk_epochs=1):
    """r(e) = min(e0, ramp_epochs) / ramp_epochs, with e0 = e - e % chunk_epochs
    the first epoch of e's chunk (the release steps r once per 10 epochs)."""
    return min(epoch - epoch % chunk_epochs, ramp_epochs) / ramp_epochs
