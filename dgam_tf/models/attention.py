"""Attention head: lambda_t = sigmoid(Dense(1)(relu(Dense(256)(x_t))))."""
import keras

from dgam_tf.models.layers import Dense


class Attention(keras.Model):
    """Per-segment foreground attention.

    Call: x [B, T, D] -> lambda [B, T] in [0, 1].
    """

    def __init__(self, hidden=256, initializer="pytorch", **kwargs):
        super().__init__(**kwargs)
        self.hidden = Dense(hidden, initializer, activation="relu", name="hidden")
        self.score = Dense(1, initializer, activation="sigmoid", name="score", dtype="float32")

    def call(self, x):
        return self.score(self.hidden(x))[..., 0]                  # [B, T]
