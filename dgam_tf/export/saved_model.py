"""SavedModel export of a trained DGAM for TF Serving.

`DGAMServing` holds each stream's attention head and classifier (no CVAE:
it is only used in training) and serves two signatures, every input checked
in the graph (a bad request fails with InvalidArgument saying what was
expected):

* `serving_default`, the models on a zero-padded batch of videos:
  `<stream>_features` float32 [B, T, D] per stream and `num_segments` int32
  [B] (valid lengths, 1 <= num_segments <= T) -> `<stream>_attention`
  [B, T] (0 at padded positions), `<stream>_class_probs` [B, C] (padding
  excluded from pooling), `<stream>_tcam` [B, T, C] (0 at padded positions).
* `localize`, docs/method.md §5 on one whole video: `<stream>_features`
  float32 [T, D] and `duration` float32 [] seconds (0 = unknown: 0.64 s per
  segment) -> `start`, `end` float32 [K] seconds, `score` float32 [K],
  `class_id` int32 [K], `label` string [K], by class id then descending
  score. The video is sampled uniformly inside the graph, n = clip(T,
  test_min_segments, test_max_segments).

A one-stream model has only that stream's inputs and outputs. The inputs
declare their shapes (features [B, T, D] / [T, D] with D fixed, lengths [B],
duration []), so `saved_model_cli`, TF Serving's metadata API and generated
clients show what to send. TF Serving does not check requests against them,
so the graph checks the features' rank and D too, besides what shapes cannot
say: NaN, streams of different T, an empty video, lengths beyond T.

`export` writes `<export_dir>/<version>/` atomically, with warm-up requests
for both signatures in `assets.extra/tf_serving_warmup_requests`.
"""
import os
import re

import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import prediction_log_pb2

from dgam_tf import files
from dgam_tf.config import SECONDS_PER_SEGMENT, STREAMS, DataConfig, LocalizationConfig
from dgam_tf.data import sampling
from dgam_tf.errors import UserError
from dgam_tf.export import signatures
from dgam_tf.localization import graph as graph_localization
from dgam_tf.models import model_dir as model_dir_lib
from dgam_tf.models.dgam import video_outputs

WARMUP_FILE = os.path.join("assets.extra", "tf_serving_warmup_requests")
# Segments of the (all-zero) video in the warm-up requests.
WARMUP_SEGMENTS = 16


class DGAMServing(tf.Module):
    """The serving module: attention and classifier of each stream.

    Attributes:
      serving_default, localize: the signature functions (see the module
        docstring for their inputs and outputs).
      weights: the tf.Variables of the attention heads and classifiers
        (see `Untracked`).
    """

    def __init__(self, models, class_names, localization_config=None,
                 test_min_segments=DataConfig.test_min_segments,
                 test_max_segments=DataConfig.test_max_segments):
        """Wraps trained models.

        Args:
          models: {stream: StreamModel}, one or two of "rgb", "flow".
          class_names: the C class names, by class id.
          localization_config: `LocalizationConfig`; None = THUMOS14 defaults.
          test_min_segments, test_max_segments: `localize` samples
            n = clip(T, min, max) segments.

        Raises:
          ValueError: not one or two known streams, or class names that do not
            match the models.
        """
        super().__init__(name="dgam_serving")
        self._streams = [s for s in STREAMS if s in models]
        if not self._streams or len(self._streams) != len(models):
            raise ValueError(f"expected models of streams {STREAMS}, got {list(models)}")
        first = models[self._streams[0]]
        self._feature_dim = first.feature_dim
        self._num_classes = first.num_classes
        self._class_names = list(class_names)
        if len(self._class_names) != self._num_classes:
            raise ValueError(f"{len(self._class_names)} class names for a model of "
                             f"{self._num_classes} classes")
        self._config = localization_config or LocalizationConfig()
        self._sample_range = (test_min_segments, test_max_segments)
        self._layers = Untracked({s: (models[s].attention, models[s].classifier)
                                  for s in self._streams})
        self.weights = serving_variables(layer for pair in self._layers.value.values()
                                         for layer in pair)
        # Signatures are built per instance: their inputs depend on the streams.
        def features(shape):
            return [tf.TensorSpec(shape + [self._feature_dim], tf.float32,
                                  name=f"{s}_features") for s in self._streams]
        self.serving_default = tf.function(
            self._serving_default, autograph=False,
            input_signature=features([None, None])
            + [tf.TensorSpec([None], tf.int32, name="num_segments")])
        self.localize = tf.function(
            self._localize, autograph=False,
            input_signature=features([None])
            + [tf.TensorSpec([], tf.float32, name="duration")])

    def signature_functions(self):
        """{signature name: tf.function} for `tf.saved_model.save`."""
        return {signatures.SERVING_DEFAULT: self.serving_default,
                signatures.LOCALIZE: self.localize}

    def _serving_default(self, *inputs):
        *features, lengths = inputs
        checks, valid, shape = self._feature_checks(features, rank=3)
        in_range = ((tf.size(lengths) == shape[0])
                    & tf.reduce_all((lengths >= 1) & (lengths <= shape[1])))
        checks.append(tf.debugging.Assert(~valid | in_range, [
            "num_segments must be int32 [batch] with 1 <= num_segments <= T, the "
            "segment dimension of the features; got", lengths, "for features of shape",
            shape]))
        features = self._checked_features(features, checks)
        with tf.control_dependencies(checks):
            lengths = tf.identity(lengths)
        outputs = {}
        for stream, x in features.items():
            attention, class_probs, tcam = self._stream_outputs(stream, x, lengths)
            outputs[f"{stream}_attention"] = attention
            outputs[f"{stream}_class_probs"] = class_probs
            outputs[f"{stream}_tcam"] = tcam
        return outputs

    def _localize(self, *inputs):
        *features, duration = inputs
        checks, _, _ = self._feature_checks(features, rank=2)
        checks.append(tf.debugging.Assert(
            tf.reduce_all(tf.math.is_finite(duration) & (duration >= 0)),
            ["duration must be a float32 scalar: the length of the video in seconds, "
             "finite and >= 0 (0 = unknown: 0.64 s per segment); got", duration]))
        features = self._checked_features(features, checks)
        with tf.control_dependencies(checks):
            duration = tf.cast(duration, tf.float64)
        num_segments = tf.shape(next(iter(features.values())))[0]  # T
        index = sampling.test_indices(num_segments, *self._sample_range)  # [n]
        n = tf.size(index)
        streams = {}
        for stream, x in features.items():
            outputs = self._stream_outputs(stream, tf.gather(x, index)[None], n[None])
            streams[stream] = graph_localization.StreamTensors(*(o[0] for o in outputs))
        seconds_per_segment = tf.where(
            duration > 0, duration / tf.cast(num_segments, tf.float64),
            tf.constant(SECONDS_PER_SEGMENT, tf.float64))
        return graph_localization.localize_video(streams, num_segments, self._class_names,
                                                 self._config, seconds_per_segment)

    def _feature_checks(self, features, rank):
        """Assertions on the shapes of every stream's features.

        Each assertion also holds when an earlier input is malformed, so a bad
        request fails on its root cause whatever order the checks run in.

        Args:
          features: one tensor per stream, in `self._streams` order.
          rank: 3 for [B, T, D] batches, 2 for one [T, D] video.

        Returns:
          (checks, valid, shape): list of assert ops; bool scalar, true when
          every stream is well formed; int32 [rank] shape of the first stream
          (meaningful when valid).
        """
        layout = "[batch, segments, D]" if rank == 3 else "[segments, D]"
        checks, valid, shapes = [], tf.constant(True), {}
        for stream, x in zip(self._streams, features):
            shape = tf.shape(x)
            # Zeros in front make indexing safe whatever the actual rank.
            padded = tf.concat([tf.zeros([rank], tf.int32), shape], axis=0)[-rank:]
            ok = ((runtime_rank(x) == rank) & (padded[-1] == self._feature_dim)
                  & (padded[-2] > 0))
            checks.append(tf.debugging.Assert(ok, [
                f"{stream}_features must be float32 {layout} with D = {self._feature_dim} "
                "and at least one segment (not an empty video); got shape", shape]))
            valid &= ok
            shapes[f"{stream}_features"] = padded
        if len(shapes) == 2:
            (first, x), (second, y) = shapes.items()
            what = "batch size and number of segments" if rank == 3 else "number of segments"
            checks.append(tf.debugging.Assert(~valid | tf.reduce_all(x[:-1] == y[:-1]), [
                f"{first} and {second} must have the same {what}; got shapes", x, y]))
        return checks, valid, next(iter(shapes.values()))

    def _checked_features(self, features, checks):
        """{stream: features} computed after `checks` and a NaN/Inf check."""
        with tf.control_dependencies(checks):
            return {stream: tf.debugging.check_numerics(
                x, f"{stream}_features contains NaN or Inf; features must be finite")
                for stream, x in zip(self._streams, features)}

    def _stream_outputs(self, stream, x, lengths):
        """One stream's outputs on a padded batch (docs/method.md §5 steps 1, 3).

        Args:
          stream: stream name.
          x: features [B, T, D].
          lengths: int32 [B] valid segments of each video.

        Returns:
          attention [B, T], class_probs [B, C] (softmax over C + 1 with the
          background dropped) and tcam [B, T, C] (no bias), float32; padded
          positions have attention and T-CAM 0 and do not enter the pooling.
        """
        attention, classifier = self._layers.value[stream]
        return video_outputs(attention, classifier, self._num_classes, x, lengths)

    def warmup_requests(self):
        """PredictRequests for both signatures on an all-zero short video."""
        video = {s: np.zeros([WARMUP_SEGMENTS, self._feature_dim], np.float32)
                 for s in self._streams}
        return [signatures.serving_default_request([video]),
                signatures.localize_request(video, duration=0.0)]


class Untracked:
    """Holds Keras 3 layers in a serving tf.Module without the module tracking
    them; the module tracks `serving_variables(layers)` instead.

    A SavedModel whose module tracks Keras 3 layers restores in TF2's
    `tf.saved_model.load`, but in the session-based loader of TF Serving and
    `saved_model_cli run` every read fails with "Could not find variable
    ..."; tracking the layers' tf.Variables directly restores in both.
    """

    def __init__(self, value):
        self.value = value


def serving_variables(layers):
    """[tf.Variable] of every weight of Keras 3 `layers` (see `Untracked`)."""
    return [weight.value for layer in layers for weight in layer.weights]


def runtime_rank(x):
    """The rank of the tensor actually fed, int32 [].

    tf.rank would give the declared rank at tracing time, which TF Serving
    does not enforce; counting the entries of the run-time shape does not.
    """
    return tf.math.count_nonzero(tf.shape(x) >= 0, dtype=tf.int32)


def write_warmup_requests(path, requests):
    """Writes PredictRequests as TF Serving warm-up records (PredictionLog)."""
    tf.io.gfile.makedirs(os.path.dirname(path))
    with tf.io.TFRecordWriter(path) as writer:
        for request in requests:
            log = prediction_log_pb2.PredictionLog(
                predict_log=prediction_log_pb2.PredictLog(request=request))
            writer.write(log.SerializeToString(deterministic=True))


def next_version(export_dir):
    """1 + the largest numbered version folder in `export_dir` (1 if none)."""
    if not tf.io.gfile.isdir(export_dir):
        return 1
    try:
        names = [name.rstrip("/") for name in tf.io.gfile.listdir(export_dir)]
        versions = [int(name) for name in names if re.fullmatch(r"[0-9]+", name)
                    and tf.io.gfile.isdir(os.path.join(export_dir, name))]
    except tf.errors.OpError as e:
        raise UserError(f"cannot read --export_dir {export_dir}: {e.message}") from None
    return max(versions, default=0) + 1


def export_models(models, class_names, export_dir, *, version=None, overwrite=False,
                  localization_config=None, test_min_segments=DataConfig.test_min_segments,
                  test_max_segments=DataConfig.test_max_segments):
    """Writes models as SavedModel version `<export_dir>/<version>/`.

    The version is written into a temporary folder inside `export_dir`, then
    renamed into place, or, on object stores, moved in file by file with
    saved_model.pb last (files.atomic_output_dir): TF Serving never loads
    half of it.

    Args:
      models: {stream: StreamModel}.
      class_names: the C class names.
      export_dir: base folder of the versions (TF Serving's base_path).
      version: version number; None = latest existing + 1 (1 when empty).
      overwrite: replace an existing version (otherwise an error).
      localization_config: `LocalizationConfig` of `localize`; None =
        THUMOS14 defaults.
      test_min_segments, test_max_segments: `localize`'s test sampling.

    Returns:
      The version folder.

    Raises:
      UserError: the version exists (without `overwrite`), a bad version
        or sampling range, or `export_dir` cannot be written.
    """
    if not 1 <= test_min_segments <= test_max_segments:
        raise UserError("test sampling needs 1 <= test_min_segments <= test_max_segments, "
                        f"got {test_min_segments} and {test_max_segments}")
    module = DGAMServing(models, class_names, localization_config,
                         test_min_segments, test_max_segments)
    return save_version(module, export_dir, version, overwrite)


def save_version(module, export_dir, version=None, overwrite=False):
    """Writes a serving module as SavedModel version `<export_dir>/<version>/`,
    atomically, with its warm-up requests.

    Args:
      module: a tf.Module with `signature_functions()` ({name: tf.function})
        and `warmup_requests()` (PredictRequests).
      export_dir: base folder of the versions (TF Serving's base_path).
      version: version number; None = latest existing + 1 (1 when empty).
      overwrite: replace an existing version (otherwise an error).

    Returns:
      The version folder.

    Raises:
      UserError: the version exists (without `overwrite`), a bad version, or
        `export_dir` cannot be written.
    """
    version = next_version(export_dir) if version is None else version
    if version < 1:
        raise UserError(f"export version must be a positive number, got {version}")
    path = os.path.join(export_dir, str(version))
    with files.atomic_output_dir(path, overwrite=overwrite) as tmp:
        tf.saved_model.save(module, tmp, signatures=module.signature_functions())
        write_warmup_requests(os.path.join(tmp, WARMUP_FILE), module.warmup_requests())
    return files.abspath(path)


def export(model_dir, export_dir, *, version=None, overwrite=False, checkpoint="latest",
           localization_config=None, test_min_segments=DataConfig.test_min_segments,
           test_max_segments=DataConfig.test_max_segments):
    """Restores a trained model and exports it (see `export_models`).

    Args:
      model_dir: training folder (model.json + checkpoints).
      checkpoint: "latest", "best" or a checkpoint path.
      Others: as in `export_models`.

    Returns:
      The version folder.

    Raises:
      UserError: no trained model or checkpoint, or as in `export_models`.
    """
    models, settings, _ = model_dir_lib.load_models(model_dir, checkpoint)
    return export_models(models, settings.class_names, export_dir, version=version,
                         overwrite=overwrite, localization_config=localization_config,
                         test_min_segments=test_min_segments,
                         test_max_segments=test_max_segments)


def run(cfg):
    """--mode=export: exports --model_dir's model to --export_dir."""
    ex = cfg.export
    print("Exported " + export(
        cfg.model_dir, ex.export_dir, version=ex.export_version, overwrite=ex.overwrite,
        checkpoint=ex.checkpoint, localization_config=cfg.localization,
        test_min_segments=cfg.data.test_min_segments,
        test_max_segments=cfg.data.test_max_segments))
