"""Attention head: lambda_t = sigmoid(Dense(1)(relu(Dense(256)(x_t))))."""
import keras


class Attention(keras.Model):
    """Per-segment foreground attention.

    Call: x [B, T, D] -> lambda [B, T] in [0, 1].
    """

    def __init__(self, hidden=256, **kwargs):
        super().__init__(**kwargs)
        self.hidden = keras.layers.Dense(hidden, activation="relu", name="hidden")
        self.score = keras.layers.Dense(1, activation="sigmoid", name="score", dtype="float32")

    def call(self, x):
        return self.score(self.hidden(x))[..., 0]                  # [B, T]
