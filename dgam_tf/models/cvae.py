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
