"""The release's Adam (PyTorch's epsilon placement) against a numpy reference."""
import keras
import numpy as np
import tensorflow as tf

from dgam_tf.training import optimizer


def torch_adam(w, grads, lr, b1, b2, eps):
    """torch.optim.Adam's update rule (no weight decay), in numpy float64."""
    m, v = np.zeros_like(w), np.zeros_like(w)
    for t, g in enumerate(grads, 1):
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        m_hat, v_hat = m / (1 - b1 ** t), v / (1 - b2 ** t)
        w = w - lr * m_hat / (np.sqrt(v_hat) + eps)
    return w


def test_matches_pytorch_update_rule_including_tiny_gradients():
    rng = np.random.default_rng(0)
    w0 = rng.normal(size=50)
    # Gradients spanning 1e-9 .. 1: where epsilon's placement matters most.
    grads = [rng.normal(size=50) * 10.0 ** rng.uniform(-9, 0, size=50) for _ in range(6)]
    lr, b1, b2, eps = 2.0 ** -10, 0.8, 0.999, 1e-8   # lr exact in float32 (Keras keeps it so)
    var = tf.Variable(w0, dtype=tf.float64)
    opt = optimizer.Adam(lr, beta_1=b1, beta_2=b2, epsilon=eps)
    for g in grads:
        opt.apply_gradients([(tf.constant(g), var)])
    expected = torch_adam(w0, grads, lr, b1, b2, eps)
    np.testing.assert_allclose(var.numpy(), expected, rtol=1e-10, atol=1e-15)
    # Keras' own Adam (epsilon on the uncorrected sqrt(v)) differs visibly.
    keras_var = tf.Variable(w0, dtype=tf.float64)
    keras_opt = keras.optimizers.Adam(lr, beta_1=b1, beta_2=b2, epsilon=eps)
    for g in grads:
        keras_opt.apply_gradients([(tf.constant(g), keras_var)])
    assert np.abs(keras_var.numpy() - expected).max() > 1e-6
