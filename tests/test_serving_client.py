"""Tests of the TF Serving client helpers on protos and JSON (no server)."""
import io
import json
import urllib.error

import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2

from dgam_tf.serving import client


def _videos():
    rng = np.random.default_rng(0)
    return [{s: rng.normal(size=(t, 4)).astype(np.float32) for s in ("rgb", "flow")}
            for t in (3, 5)]


def _localize_response():
    response = predict_pb2.PredictResponse()
    outputs = {"start": np.array([1.0, 4.5], np.float32),
               "end": np.array([2.0, 6.0], np.float32),
               "score": np.array([0.9, 0.2], np.float32),
               "class_id": np.array([0, 2], np.int32),
               "label": np.array([b"BaseballPitch", b"CliffDiving"])}
    for name, value in outputs.items():
        response.outputs[name].CopyFrom(tf.make_tensor_proto(value))
    return response


def test_serving_default_inputs_pads_and_records_lengths():
    videos = _videos()
    inputs = client.serving_default_inputs(videos)
    assert set(inputs) == {"rgb_features", "flow_features", "num_segments"}
    assert inputs["rgb_features"].shape == (2, 5, 4)
    assert inputs["rgb_features"].dtype == np.float32
    np.testing.assert_array_equal(inputs["num_segments"], [3, 5])
    assert inputs["num_segments"].dtype == np.int32
    np.testing.assert_array_equal(inputs["flow_features"][0, :3], videos[0]["flow"])
    assert not inputs["flow_features"][0, 3:].any()


def test_serving_default_request():
    request = client.serving_default_request(_videos(), version=3)
    assert request.model_spec.name == "dgam"
    assert request.model_spec.signature_name == "serving_default"
    assert request.model_spec.version.value == 3
    assert request.inputs["rgb_features"].dtype == tf.float32.as_datatype_enum
    assert request.inputs["num_segments"].dtype == tf.int32.as_datatype_enum
    expected = client.serving_default_inputs(_videos())
    for name, value in expected.items():
        np.testing.assert_array_equal(tf.make_ndarray(request.inputs[name]), value)


def test_localize_request_has_a_scalar_duration():
    video = {"rgb": np.ones((7, 4))}  # float64 in, float32 out; one stream
    request = client.localize_request(video, duration=4.48, model_name="other")
    assert request.model_spec.name == "other"
    assert request.model_spec.signature_name == "localize"
    assert not request.model_spec.HasField("version")
    assert set(request.inputs) == {"rgb_features", "duration"}
    duration = tf.make_ndarray(request.inputs["duration"])
    assert duration.shape == () and duration.dtype == np.float32
    assert duration == np.float32(4.48)
    features = tf.make_ndarray(request.inputs["rgb_features"])
    assert features.dtype == np.float32 and features.shape == (7, 4)


def test_parse_predict_response_and_detections():
    outputs = client.parse_predict_response(_localize_response())
    assert outputs["label"].tolist() == ["BaseballPitch", "CliffDiving"]
    assert outputs["class_id"].dtype == np.int32
    assert client.detections(outputs) == [
        {"label": "BaseballPitch", "score": pytest.approx(0.9), "segment": [1.0, 2.0],
         "class_id": 0},
        {"label": "CliffDiving", "score": pytest.approx(0.2), "segment": [4.5, 6.0],
         "class_id": 2}]


def test_parse_empty_localize_response():
    response = predict_pb2.PredictResponse()
    for name, dtype in (("start", tf.float32), ("end", tf.float32), ("score", tf.float32),
                        ("class_id", tf.int32), ("label", tf.string)):
        response.outputs[name].CopyFrom(tf.make_tensor_proto([], dtype=dtype))
    assert client.detections(client.parse_predict_response(response)) == []


def test_predict_calls_the_stub():
    class FakeStub:
        def Predict(self, request, timeout):  # noqa: N802 (gRPC method name)
            self.seen = (request, timeout)
            return _localize_response()

    stub = FakeStub()
    request = client.localize_request({"rgb": np.ones((2, 4))})
    outputs = client.predict(stub, request, timeout=5.0)
    assert stub.seen == (request, 5.0)
    assert outputs["label"].tolist() == ["BaseballPitch", "CliffDiving"]


def test_make_stub_does_not_connect():
    assert hasattr(client.make_stub("localhost:1"), "Predict")


def test_rest_url():
    assert client.rest_url() == "http://localhost:8501/v1/models/dgam:predict"
    assert (client.rest_url("server:9000", "m", version=2)
            == "http://server:9000/v1/models/m/versions/2:predict")


def test_rest_bodies_are_json():
    video = _videos()[0]
    body = json.loads(json.dumps(client.rest_body(
        "localize", client.localize_inputs(video, duration=1.92))))
    assert body["signature_name"] == "localize"
    assert body["inputs"]["duration"] == pytest.approx(1.92)
    np.testing.assert_allclose(body["inputs"]["rgb_features"], video["rgb"])

    rows = json.loads(json.dumps(client.rest_instances(_videos())))
    assert rows["signature_name"] == "serving_default"
    assert [r["num_segments"] for r in rows["instances"]] == [3, 5]
    assert np.shape(rows["instances"][0]["flow_features"]) == (5, 4)


def test_parse_rest_responses():
    columnar = client.parse_rest_response(json.loads(json.dumps({"outputs": {
        "start": [1.0], "end": [2.0], "score": [0.5], "class_id": [1], "label": ["x"]}})))
    assert client.detections(columnar) == [
        {"label": "x", "score": 0.5, "segment": [1.0, 2.0], "class_id": 1}]
    rows = client.parse_rest_response({"predictions": [
        {"rgb_attention": [0.1, 0.2], "rgb_class_probs": [0.3]},
        {"rgb_attention": [0.5, 0.0], "rgb_class_probs": [0.4]}]})
    np.testing.assert_allclose(rows["rgb_attention"], [[0.1, 0.2], [0.5, 0.0]])
    assert rows["rgb_class_probs"].shape == (2, 1)
    with pytest.raises(RuntimeError, match="D = 1024"):
        client.parse_rest_response({"error": "rgb_features must be ... D = 1024"})


class _Reply(io.BytesIO):
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_rest_predict(monkeypatch):
    sent = {}

    def urlopen(request, timeout):
        sent.update(url=request.full_url, body=json.loads(request.data), timeout=timeout,
                    content_type=request.get_header("Content-type"))
        return _Reply(json.dumps({"outputs": {"score": [0.5]}}).encode())

    monkeypatch.setattr(client.urllib.request, "urlopen", urlopen)
    body = client.rest_body("localize", {"duration": np.float32(2.0)})
    outputs = client.rest_predict(client.rest_url(), body, timeout=3.0)
    assert sent == {"url": client.rest_url(), "body": body, "timeout": 3.0,
                    "content_type": "application/json"}
    np.testing.assert_allclose(outputs["score"], [0.5])


def test_rest_predict_reports_the_server_error(monkeypatch):
    def urlopen(request, timeout):
        raise urllib.error.HTTPError(request.full_url, 400, "Bad Request", {}, io.BytesIO(
            json.dumps({"error": "duration must be a float32 scalar"}).encode()))

    monkeypatch.setattr(client.urllib.request, "urlopen", urlopen)
    with pytest.raises(RuntimeError, match=r"\(400\): duration must be a float32 scalar"):
        client.rest_predict(client.rest_url(), {})
