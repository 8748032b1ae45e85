"""Video classifier: one Dense(C+1) layer; its kernel also gives the T-CAM."""
import keras
import tensorflow as tf

from dgam_tf.models.layers import Dense


class Classifier(keras.Model):
    """Linear classifier over C action classes plus background (last index).

    Call: pooled features f [B, D] -> logits [B, C+1] (float32).
    """

    def __init__(self, num_classes, initializer="pytorch", **kwargs):
        super().__init__(**kwargs)
        self.fc = Dense(num_classes + 1, initializer, name="fc", dtype="float32")

    def call(self, f):
        return self.fc(f)

    def tcam(self, x):
        """T-CAM without bias: x [B, T, D] -> [B, T, C+1] (float32)."""
        return _tcam(x, self.fc.kernel)

    def logits_and_tcam(self, f, x):
        """Logits of pooled features f [B, K, D] -> [B, K, C+1] and the T-CAM
        of x [B, T, D] -> [B, T, C+1], from one read of the kernel.

        For training steps that also update the kernel. The guide loss stops
        the T-CAM's gradient, so a read of its own would feed nothing the
        kernel's update depends on; Grappler's dependency optimizer then drops
        the edge that orders that read before the update, and the read could
        see the updated kernel. Sharing the logits' read puts it on the
        update's data path.
        """
        kernel = tf.convert_to_tensor(self.fc.kernel)                # [D, C+1]
        logits = tf.einsum("bkd,dc->bkc", tf.cast(f, tf.float32), kernel) + self.fc.bias
        return logits, _tcam(x, kernel)


def _tcam(x, kernel):
    return tf.einsum("btd,dc->btc", tf.cast(x, tf.float32), kernel)
