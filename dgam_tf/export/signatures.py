"""The served model's signatures as both sides see them: their names and
the inputs and `PredictRequest`s a client sends, which the exporter also
writes as TF Serving warm-up requests (savedmodel/README.md)."""
import numpy as np

MODEL_NAME = "dgam"
SERVING_DEFAULT = "serving_default"
LOCALIZE = "localize"


def serving_default_inputs(videos):
    """Pads videos into the `serving_default` inputs.

    Args:
      videos: list of B mappings stream name -> float array [T_i, D]; every
        video has the same streams, of equal length within a video.

    Returns:
      dict "<stream>_features" -> float32 [B, max T_i, D] (zero padded) and
      "num_segments" -> int32 [B].
    """
    lengths = np.array([len(next(iter(v.values()))) for v in videos], np.int32)
    inputs = {}
    for stream in videos[0]:
        dim = np.shape(videos[0][stream])[1]
        batch = np.zeros((len(videos), lengths.max(), dim), np.float32)
        for row, video in enumerate(videos):
            batch[row, :lengths[row]] = video[stream]
        inputs[f"{stream}_features"] = batch
    inputs["num_segments"] = lengths
    return inputs


def localize_inputs(features, duration=0.0):
    """The `localize` inputs of one video.

    Args:
      features: mapping stream name -> float array [T, D].
      duration: the video's length in seconds; 0 = unknown (0.64 s per
        segment, as for I3D features).

    Returns:
      dict "<stream>_features" -> float32 [T, D], "duration" -> float32 [].
    """
    inputs = {f"{stream}_features": np.asarray(x, np.float32)
              for stream, x in features.items()}
    inputs["duration"] = np.float32(duration)
    return inputs


def predict_request(signature_name, inputs, model_name=MODEL_NAME, version=None):
    """A `PredictRequest` for one signature.

    Args:
      signature_name: "serving_default" or "localize".
      inputs: dict input name -> array, e.g. from `serving_default_inputs`.
      model_name: the model's name in the server's model config.
      version: a model version number, or None for the latest.

    Returns:
      `tensorflow_serving.apis.predict_pb2.PredictRequest`.
    """
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2

    request = predict_pb2.PredictRequest()
    request.model_spec.name = model_name
    request.model_spec.signature_name = signature_name
    if version is not None:
        request.model_spec.version.value = version
    for name, value in inputs.items():
        request.inputs[name].CopyFrom(tf.make_tensor_proto(value))
    return request


def serving_default_request(videos, model_name=MODEL_NAME, version=None):
    """`predict_request` for `serving_default` on padded `videos`."""
    return predict_request(SERVING_DEFAULT, serving_default_inputs(videos),
                           model_name, version)


def localize_request(features, duration=0.0, model_name=MODEL_NAME, version=None):
    """`predict_request` for `localize` on one video (see `localize_inputs`)."""
    return predict_request(LOCALIZE, localize_inputs(features, duration),
                           model_name, version)


# The served I3D feature extractor (`--mode=export_i3d`): one signature per
# stream on float clips in [-1, 1], and RGB's on uint8 frames.
I3D_MODEL_NAME = "i3d"
RGB_UINT8 = "rgb_uint8"


def i3d_request(signature_name, clips, version=None):
    """A `PredictRequest` for the served I3D.

    Args:
      signature_name: "rgb" or "flow" (float32 clips in [-1, 1]), or
        "rgb_uint8" (uint8 RGB frames, scaled in the graph).
      clips: array [N, frames, size, size, channels] of the exported clip
        shape (16 x 224 x 224 by default; 3 channels, flow 2).
      version: a model version number, or None for the latest.

    Returns:
      `PredictRequest` with input "clips"; the response's "features" is
      float32 [N, 1024].
    """
    dtype = np.uint8 if signature_name == RGB_UINT8 else np.float32
    return predict_request(signature_name, {"clips": np.asarray(clips, dtype)},
                           I3D_MODEL_NAME, version)
