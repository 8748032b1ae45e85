"""Client helpers for the exported DGAM model served by TF Serving.

Two signatures (see savedmodel/README.md):

* `serving_default`: a padded batch `<stream>_features` [B, T, D] plus
  `num_segments` [B] -> per stream `<stream>_attention` [B, T],
  `<stream>_class_probs` [B, C], `<stream>_tcam` [B, T, C].
* `localize`: one whole video `<stream>_features` [T, D] plus `duration` []
  seconds -> detections `start`, `end`, `score`, `class_id`, `label` [K].

gRPC: build a `PredictRequest` with `serving_default_request` or
`localize_request` and send it with `predict(stub, request)`. REST: build a
JSON body with `rest_body` (or `rest_instances` for the row format of
`serving_default`), post it to `rest_url(...)` with `rest_predict`, or any
HTTP client, and read the reply with `parse_rest_response`.
"""
import json
import urllib.error
import urllib.request

import grpc
import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2
from tensorflow_serving.apis import prediction_service_pb2_grpc

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


# ---- gRPC -------------------------------------------------------------------


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


def parse_predict_response(response):
    """A `PredictResponse` as a dict output name -> numpy array (str for text)."""
    return {name: _decode_strings(tf.make_ndarray(proto))
            for name, proto in response.outputs.items()}


def make_stub(target):
    """A `PredictionServiceStub` on an insecure channel to "host:port"."""
    return prediction_service_pb2_grpc.PredictionServiceStub(
        grpc.insecure_channel(target))


def predict(stub, request, timeout=30.0):
    """Sends `request` through `stub.Predict`; returns the parsed outputs."""
    return parse_predict_response(stub.Predict(request, timeout=timeout))


# ---- REST -------------------------------------------------------------------


def rest_url(host="localhost:8501", model_name=MODEL_NAME, version=None):
    """The REST `:predict` URL of a model (a version, or the latest)."""
    version_part = f"/versions/{version}" if version is not None else ""
    return f"http://{host}/v1/models/{model_name}{version_part}:predict"


def rest_body(signature_name, inputs):
    """A columnar ("inputs") REST request body, ready for `json.dumps`.

    Works for both signatures (`localize` has a scalar input, so it cannot
    use the row format).
    """
    return {"signature_name": signature_name,
            "inputs": {name: np.asarray(value).tolist()
                       for name, value in inputs.items()}}


def rest_instances(videos):
    """A row-format ("instances") REST body for `serving_default`.

    Args:
      videos: as in `serving_default_inputs` (padded to a common length).

    Returns:
      {"signature_name", "instances": [one dict of inputs per video]}.
    """
    inputs = serving_default_inputs(videos)
    return {"signature_name": SERVING_DEFAULT,
            "instances": [{name: value[row].tolist() for name, value in inputs.items()}
                          for row in range(len(videos))]}


def parse_rest_response(body):
    """A REST `:predict` reply as a dict output name -> numpy array.

    Accepts both reply formats: {"outputs": {name: value}} (columnar
    request) and {"predictions": [{name: value}, ...]} (row request; rows
    are stacked back into a batch).

    Raises:
      RuntimeError: the reply is an error ({"error": message}).
    """
    if "error" in body:
        raise RuntimeError(f"TF Serving error: {body['error']}")
    if "outputs" in body:
        return {name: np.asarray(value) for name, value in body["outputs"].items()}
    rows = body["predictions"]
    return {name: np.asarray([row[name] for row in rows]) for name in rows[0]}


def rest_predict(url, body, timeout=30.0):
    """POSTs a JSON body to a REST `:predict` URL; returns the parsed outputs.

    Raises:
      RuntimeError: the server answered with an error (its message included).
    """
    request = urllib.request.Request(url, data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as reply:
            return parse_rest_response(json.load(reply))
    except urllib.error.HTTPError as error:
        message = error.read().decode(errors="replace")
        try:
            message = json.loads(message)["error"]
        except (ValueError, KeyError, TypeError):
            pass
        raise RuntimeError(f"TF Serving error ({error.code}): {message}") from None


# ---- outputs ----------------------------------------------------------------


def detections(outputs):
    """`localize` outputs as ActivityNet-style detections.

    Args:
      outputs: dict from `parse_predict_response` or `parse_rest_response`.

    Returns:
      list of {"label", "score", "segment": [start, end], "class_id"}, in the
      model's order (by class id, then descending score).
    """
    labels = _decode_strings(np.asarray(outputs["label"]))
    return [{"label": str(label), "score": float(score),
             "segment": [float(start), float(end)], "class_id": int(class_id)}
            for label, score, start, end, class_id in zip(
                labels, outputs["score"], outputs["start"], outputs["end"],
                outputs["class_id"])]


def _decode_strings(array):
    """Byte-string arrays (from TensorProtos) as str arrays; others unchanged."""
    if array.dtype.kind not in "OS":
        return array
    return np.array([s.decode() if isinstance(s, bytes) else s for s in array.ravel()],
                    dtype=str).reshape(array.shape)
