"""Each DGAM loss (docs/method.md §3) against an independent numpy computation."""
import numpy as np
import pytest
import tensorflow as tf
from scipy.ndimage import gaussian_filter1d

from dgam_tf.models.cvae import CVAE
from dgam_tf.training import losses

B, T, D, C, L = 3, 11, 6, 4, 5


@pytest.fixture(scope="module")
def batch():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(B, T, D)).astype(np.float32)
    att = rng.uniform(size=(B, T)).astype(np.float32)
    labels = np.zeros((B, C), np.float32)
    labels[0, 1] = labels[1, [0, 3]] = labels[2, 2] = 1
    w = rng.normal(size=(D, C + 1)).astype(np.float32)
    b = rng.normal(size=(C + 1,)).astype(np.float32)
    noise = rng.normal(size=(B, T, L)).astype(np.float32)
    return x, att, labels, w, b, noise


def softmax(z):
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def test_pooled_features(batch):
    x, att = batch[:2]
    f_fg, f_bg = losses.pooled_features(x, att)
    for i in range(B):
        fg = sum(att[i, t] * x[i, t] for t in range(T)) / (att[i].sum() + 1)
        bg = sum((1 - att[i, t]) * x[i, t] for t in range(T)) / ((1 - att[i]).sum() + 1e-6)
        np.testing.assert_allclose(f_fg[i], fg, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(f_bg[i], bg, rtol=1e-5, atol=1e-6)


def test_foreground_and_background_cross_entropy(batch):
    x, att, labels, w, b, _ = batch
    logits = x[:, 0] @ w + b                                       # [B, C+1]
    p = softmax(logits)
    target = np.concatenate([labels / labels.sum(1, keepdims=True), np.zeros((B, 1))], 1)
    np.testing.assert_allclose(losses.foreground_loss(logits, labels),
                               -(target * np.log(p)).sum(1), rtol=1e-5)
    np.testing.assert_allclose(losses.background_loss(logits), -np.log(p[:, -1]), rtol=1e-5)


@pytest.mark.parametrize("t", [1, 3, 4, 9, 30])
def test_smoothing_matches_scipy(t):
    s = np.random.default_rng(t).uniform(size=(2, t, 3)).astype(np.float32)
    ref = gaussian_filter1d(s, sigma=1.0, axis=1, mode="reflect", truncate=4.0)
    np.testing.assert_allclose(losses.smooth_in_time(tf.constant(s)), ref, atol=1e-6)


def test_guide_loss(batch):
    x, att, labels, w, _, _ = batch
    tcam = x @ w                                                   # [B, T, C+1], no bias
    s = gaussian_filter1d(softmax(tcam), sigma=1.0, axis=1, mode="reflect")
    expected = []
    for i in range(B):
        g_fg = s[i][:, :C][:, labels[i] > 0].max(-1)
        g_bg = 1 - s[i][:, -1]
        expected.append(np.mean(np.abs(att[i] - g_fg) + np.abs(att[i] - g_bg)))
    np.testing.assert_allclose(losses.guide_loss(att, tcam, labels), expected, rtol=1e-5)


def test_guide_loss_has_no_gradient_through_the_tcam(batch):
    x, att, labels, w, _, _ = batch
    tcam = tf.Variable(x @ w)
    a = tf.Variable(att)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(losses.guide_loss(a, tcam, labels))
    g_tcam, g_att = tape.gradient(loss, [tcam, a])
    assert g_tcam is None
    assert np.abs(g_att.numpy()).sum() > 0


def numpy_mlp(model, h):
    """Forward of a keras Sequential of Dense layers, in numpy."""
    for layer in model.layers:
        k, b = (v.numpy() for v in layer.weights)
        h = h @ k + b
        if layer.activation.__name__ == "relu":
            h = np.maximum(h, 0)
    return h


@pytest.fixture(scope="module")
def cvae():
    model = CVAE(D, hidden=7, latent_dim=L)
    model(tf.zeros([1, 2, D]), tf.zeros([1, 2]), tf.zeros([1, 2, L]))
    return model


def test_reconstruction_loss_uses_the_prior(batch, cvae):
    x, att, _, _, _, noise = batch
    z = att[..., None] + noise                                     # N(lambda * 1, I)
    x_hat = numpy_mlp(cvae.decoder, np.concatenate([z, att[..., None]], -1))
    np.testing.assert_allclose(losses.reconstruction_loss(cvae, x, att, noise),
                               ((x_hat - x) ** 2).mean((1, 2)), rtol=1e-4)


def test_reconstruction_gradient_reaches_attention_only(batch, cvae):
    x, att, _, _, _, noise = batch
    a = tf.Variable(att)
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(losses.reconstruction_loss(cvae, x, a, noise))
    assert np.abs(tape.gradient(loss, a).numpy()).sum() > 0


def test_cvae_loss_is_beta_mean_kl_plus_mse(batch, cvae):
    x, att, _, _, _, noise = batch
    h = numpy_mlp(cvae.encoder, np.concatenate([x, att[..., None]], -1))
    mean, log_var = h[..., :L], h[..., L:]
    z = mean + np.exp(0.5 * log_var) * noise
    x_hat = numpy_mlp(cvae.decoder, np.concatenate([z, att[..., None]], -1))
    # KL(N(m, s^2) || N(lambda, 1)) per dimension, averaged over dimensions.
    kl = 0.5 * (np.exp(log_var) + (mean - att[..., None]) ** 2 - 1 - log_var).mean(-1)
    mse = ((x_hat - x) ** 2).mean(-1)
    np.testing.assert_allclose(losses.cvae_loss(cvae, x, att, 0.1, noise),
                               (0.1 * kl + mse).mean(-1), rtol=1e-4)


def test_ramp():
    assert [losses.ramp(e, 300) for e in (0, 150, 300, 900)] == [0, 0.5, 1, 1]
    # The release's steps: r is taken at the first epoch of each 10-epoch chunk.
    assert [losses.ramp(e, 300, 10) for e in (0, 9, 10, 19, 155, 299, 300, 900)] == [
        0, 0, 10 / 300, 10 / 300, 150 / 300, 290 / 300, 1, 1]


def test_decoder_mse_and_its_gradients_match_the_direct_formula(batch, cvae):
    """Against mean((decode(z) - x)²) built in full, gradients included."""
    x, att, _, _, _, noise = batch
    z, a = tf.constant(att[..., None] + noise), tf.Variable(att)
    variables = [a, *cvae.decoder.trainable_variables]
    with tf.GradientTape(persistent=True) as tape:
        direct = tf.reduce_mean(tf.square(cvae.decode(z, a) - x), -1)
        expanded = cvae.decoder_mse(z, a, x)
        ld, le = tf.reduce_sum(direct), tf.reduce_sum(expanded)
    np.testing.assert_allclose(expanded, direct, rtol=1e-5)
    for gd, ge in zip(tape.gradient(ld, variables), tape.gradient(le, variables)):
        np.testing.assert_allclose(ge, gd, rtol=1e-4, atol=1e-5)
