"""One stream's DGAM: attention, classifier and CVAE."""
import keras
import tensorflow as tf

from dgam_tf.models.attention import Attention
from dgam_tf.models.classifier import Classifier
from dgam_tf.models.cvae import CVAE


class StreamModel(keras.Model):
    """The three modules of one stream (rgb or flow).

    Attributes:
      attention, classifier, cvae: the modules; `cvae` is None without GAM.
    """

    def __init__(self, feature_dim, num_classes, attention_hidden=256,
                 cvae_hidden=128, latent_dim=128, gam=True, **kwargs):
        super().__init__(**kwargs)
        self.feature_dim = feature_dim
        self.num_classes = num_classes
        self.attention = Attention(attention_hidden, name="attention")
        self.classifier = Classifier(num_classes, name="classifier")
        self.cvae = CVAE(feature_dim, cvae_hidden, latent_dim, name="cvae") if gam else None

    @classmethod
    def from_config_flags(cls, config, feature_dim, num_classes, name):
        return cls(feature_dim, num_classes, config.attention_hidden, config.cvae_hidden,
                   config.latent_dim, config.gam, name=name)

    def build_all(self):
        """Creates every variable (before restoring a checkpoint)."""
        x = tf.zeros([1, 2, self.feature_dim])
        att = self.attention(x)
        self.classifier(x[:, 0])
        if self.cvae is not None:
            self.cvae(x, att, tf.zeros([1, 2, self.cvae.latent_dim]))

    def video_outputs(self, x):
        """Test-time outputs of one video x [n, D]; see `video_outputs`."""
        return video_outputs(self.attention, self.classifier, self.num_classes, x)


def video_outputs(attention, classifier, num_classes, x):
    """Test-time outputs of one video (algorithm.md §5 steps 1 and 3).

    Attention and classifier may come from different models (the paper's
    module swap, §7).

    Args:
      attention: an Attention; classifier: a Classifier.
      num_classes: C.
      x: features [n, D].

    Returns:
      attention [n], class_probs [C] (softmax over C+1, background dropped,
      not renormalised) and tcam [n, C] (x W^T without bias), float32.
    """
    att = tf.cast(attention(x[None])[0], tf.float32)                # [n]
    x32 = tf.cast(x, tf.float32)
    # sum(lambda) only vanishes if every sigmoid underflows; guard the division.
    f = tf.reduce_sum(att[:, None] * x32, 0) / tf.maximum(tf.reduce_sum(att), 1e-12)  # [D]
    probs = tf.nn.softmax(classifier(f[None])[0])[:num_classes]
    tcam = classifier.tcam(x[None])[0, :, :num_classes]             # [n, C]
    return att, probs, tcam
