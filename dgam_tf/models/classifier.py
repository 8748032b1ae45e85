"""Video classifier: one Dense(C+1) layer; its kernel also gives the T-CAM."""
import keras
import tensorflow as tf


class Classifier(keras.Model):
    """Linear classifier over C action classes plus background (last index).

    Call: pooled features f [B, D] -> logits [B, C+1] (float32).
    """

    def __init__(self, num_classes, **kwargs):
        super().__init__(**kwargs)
        self.fc = keras.layers.Dense(num_classes + 1, name="fc", dtype="float32")

    def call(self, f):
        return self.fc(f)

    def tcam(self, x):
        """T-CAM without bias: x [B, T, D] -> [B, T, C+1] (float32)."""
        return tf.einsum("btd,dc->btc", tf.cast(x, tf.float32), self.fc.kernel)
