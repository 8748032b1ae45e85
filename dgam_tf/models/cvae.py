"""Conditional VAE of features given attention (the generative attention model).

posterior q(z | x_t, lambda_t), prior p(z | lambda_t) = N(lambda_t * 1, I) and
decoder mean of p(x_t | z, lambda_t), all per segment.
"""
import keras
import tensorflow as tf
import tensorflow_probability as tfp

from dgam_tf.models.layers import Dense

tfd = tfp.distributions


def sample(dist, noise):
    """Reparameterised sample of a Gaussian from standard normal `noise`."""
    return dist.bijector.forward(tf.cast(noise, dist.dtype))


def _mlp(hidden, out, initializer, name):
    return keras.Sequential([
        Dense(hidden, initializer, activation="relu"),
        Dense(hidden, initializer, activation="relu"),
        Dense(out, initializer, dtype="float32"),
    ], name=name)


class CVAE(keras.Model):
    """Encoder/decoder MLPs; distributions are TFP objects over float32."""

    def __init__(self, feature_dim, hidden=128, latent_dim=128, initializer="pytorch",
                 **kwargs):
        super().__init__(**kwargs)
        self.latent_dim = latent_dim
        self.encoder = _mlp(hidden, 2 * latent_dim, initializer, "encoder")
        self.decoder = _mlp(hidden, feature_dim, initializer, "decoder")

    def posterior(self, x, attention):
        """q(z | x, lambda): x [B, T, D], attention [B, T] -> MVNDiag, batch [B, T]."""
        h = tf.concat([x, tf.cast(attention, x.dtype)[..., None]], axis=-1)
        mean, log_var = tf.split(self.encoder(h), 2, axis=-1)      # [B, T, L] each
        return tfd.MultivariateNormalDiag(loc=mean, scale_diag=tf.exp(0.5 * log_var))

    def prior(self, attention):
        """p(z | lambda) = N(lambda * 1, I): attention [B, T] -> MVNDiag, batch [B, T]."""
        loc = tf.repeat(tf.cast(attention, tf.float32)[..., None], self.latent_dim, axis=-1)
        return tfd.MultivariateNormalDiag(loc=loc, scale_diag=tf.ones_like(loc))

    def decode(self, z, attention):
        """Mean of p(x | z, lambda): z [B, T, L], attention [B, T] -> [B, T, D]."""
        h = tf.concat([z, tf.cast(attention, z.dtype)[..., None]], axis=-1)
        return self.decoder(tf.cast(h, self.compute_dtype))

    def decoder_mse(self, z, attention, x):
        """Mean over D of (decode(z, lambda) - x)², per segment: [B, T] float32.

        The [B, T, D] reconstruction is never built. With h the decoder's last
        hidden layer [B, T, H] and W [H, D], b [D] its (linear, float32) output
        layer, ||h W + b - x||² = h·(h W Wᵀ) + 2 h·(W b - x Wᵀ) + ||x||² - 2 x·b
        + ||b||²: the only D-wide matmul left is x Wᵀ, and nothing [B, T, D] is
        written but x² (docs/performance.md).
        """
        *hidden, output = self.decoder.layers
        h = tf.cast(tf.concat([z, tf.cast(attention, z.dtype)[..., None]], axis=-1),
                    self.compute_dtype)
        for layer in hidden:
            h = layer(h)
        h = tf.cast(h, tf.float32)                                      # [B, T, H]
        w, b = tf.convert_to_tensor(output.kernel), tf.convert_to_tensor(output.bias)
        x = tf.cast(x, tf.float32)
        hw_sq = tf.reduce_sum(tf.matmul(h, tf.matmul(w, w, transpose_b=True)) * h, -1)
        cross = tf.reduce_sum(h * (tf.linalg.matvec(w, b) - tf.matmul(x, w, transpose_b=True)),
                              -1)
        x_sq = tf.reduce_sum(tf.square(x), -1) - 2 * tf.linalg.matvec(x, b) + tf.reduce_sum(b * b)
        return (hw_sq + 2 * cross + x_sq) / tf.cast(tf.shape(x)[-1], tf.float32)

    def call(self, x, attention, noise):
        """Reconstruction through the posterior.

        Args:
          x: [B, T, D]; attention: [B, T]; noise: standard normal [B, T, L],
            mapped to a reparameterised sample of q (the input pipeline draws
            it per example, so samples do not depend on how a batch is split).

        Returns:
          (x_hat [B, T, D], q).
        """
        q = self.posterior(x, attention)
        return self.decode(sample(q, noise), attention), q
