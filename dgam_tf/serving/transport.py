"""How requests reach TF Serving: gRPC `PredictRequest`s through a stub,
REST JSON bodies through HTTP, and their replies as numpy arrays.

Both raise RuntimeError with the server's message, or that it cannot be
reached. TensorFlow and gRPC are imported only by the gRPC functions.
"""
import json
import urllib.error
import urllib.request

import numpy as np

from dgam_tf.export.signatures import MODEL_NAME

# ---- gRPC -------------------------------------------------------------------


def parse_predict_response(response):
    """A `PredictResponse` as a dict output name -> numpy array (str for text)."""
    import tensorflow as tf

    return {name: decode_strings(tf.make_ndarray(proto))
            for name, proto in response.outputs.items()}


def make_stub(target):
    """A `PredictionServiceStub` on an insecure channel to "host:port"."""
    import grpc
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    return prediction_service_pb2_grpc.PredictionServiceStub(
        grpc.insecure_channel(target))


def predict(stub, request, timeout=30.0):
    """Sends `request` through `stub.Predict`; returns the parsed outputs."""
    return parse_predict_response(stub.Predict(request, timeout=timeout))


def grpc_predict(request, args, stub=None):
    """Sends `request` to args.server over gRPC (through `stub`, default a new
    channel); returns the parsed outputs.

    Raises:
      RuntimeError: the server answered with an error or cannot be reached.
    """
    import grpc

    try:
        return predict(stub or make_stub(args.server), request, args.timeout)
    except grpc.RpcError as error:
        raise RuntimeError(f"TF Serving error ({error.code().name}) at {args.server}: "
                           f"{error.details()}") from None


# ---- REST -------------------------------------------------------------------


def rest_url(host="localhost:8501", model_name=MODEL_NAME, version=None):
    """The REST `:predict` URL of a model (a version, or the latest)."""
    version_part = f"/versions/{version}" if version is not None else ""
    return f"http://{host}/v1/models/{model_name}{version_part}:predict"


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
    """POSTs a JSON body (an object, or its encoded bytes) to a REST
    `:predict` URL; returns the parsed outputs.

    Raises:
      RuntimeError: the server answered with an error (its message included)
        or cannot be reached.
    """
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data,
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
    except urllib.error.URLError as error:
        raise RuntimeError(f"cannot reach {url}: {error.reason}") from None


def decode_strings(array):
    """Byte-string arrays (from TensorProtos) as str arrays; others unchanged."""
    if array.dtype.kind not in "OS":
        return array
    return np.array([s.decode() if isinstance(s, bytes) else s for s in array.ravel()],
                    dtype=str).reshape(array.shape)
