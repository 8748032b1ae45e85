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
                 cvae_hidden=128, latent_dim=128, gam=True, initializer="pytorch",
                 **kwargs):
        super().__init__(**kwargs)
        self.feature_dim = feature_dim
        self.num_classes = num_classes
        self.attention = Attention(attention_hidden, initializer, name="attention")
        self.classifier = Classifier(num_classes, initializer, name="classifier")
        cvae = CVAE(feature_dim, cvae_hidden, latent_dim, initializer, name="cvae")
        self.cvae = cvae if gam else None
        # Without GAM the CVAE is still made and built, but not kept (a lambda
        # is not tracked), so that it draws from Keras' global seed as a GAM
        # model's does: attention and classifier of both then start from the
        # same weights for a seed, and GAM vs w/o GAM pair by seed.
        self._seed_draws = lambda: cvae

    def build_all(self):
        """Creates every variable (before restoring a checkpoint)."""
        x = tf.zeros([1, 2, self.feature_dim])
        att = self.attention(x)
        self.classifier(x[:, 0])
        cvae = self._seed_draws()
        cvae(x, att, tf.zeros([1, 2, cvae.latent_dim]))

    def video_outputs(self, x, lengths=None):
        """Test-time outputs of a batch x [B, T, D]; see `video_outputs`."""
        return video_outputs(self.attention, self.classifier, self.num_classes, x, lengths)


def video_outputs(attention, classifier, num_classes, x, lengths=None):
    """Test-time outputs of a batch of videos (docs/method.md §5 steps 1 and 3).

    Attention and classifier may come from different models (the paper's
    module swap, §7).

    Args:
      attention: an Attention; classifier: a Classifier.
      num_classes: C.
      x: features [B, T, D].
      lengths: optional int32 [B], valid segments of each zero-padded video;
        padded positions get attention and T-CAM 0 and stay out of the pooling.

    Returns:
      attention [B, T], class_probs [B, C] (softmax over C+1 of the
      attention-pooled feature sum(lambda x) / sum(lambda), background
      dropped, not renormalised) and tcam [B, T, C] (x W^T without bias),
      float32.
    """
    x = tf.cast(x, tf.float32)
    att = tf.cast(attention(x), tf.float32)                          # [B, T]
    tcam = classifier.tcam(x)[..., :num_classes]                    # [B, T, C]
    if lengths is not None:
        mask = tf.sequence_mask(lengths, tf.shape(x)[1])            # [B, T]
        att = tf.where(mask, att, 0.0)
        tcam = tf.where(mask[..., None], tcam, 0.0)
    # sum(lambda) only vanishes if every sigmoid underflows; guard the division.
    pooled = (tf.reduce_sum(att[..., None] * x, axis=1)
              / tf.maximum(tf.reduce_sum(att, axis=1, keepdims=True), 1e-12))  # [B, D]
    probs = tf.nn.softmax(classifier(pooled))[:, :num_classes]      # [B, C]
    return att, probs, tcam
