"""Tests of the TF Serving client helpers on protos and JSON, and of its
command line against loopback REST and gRPC servers that answer like TF
Serving."""
import concurrent.futures
import http.server
import io
import json
import os
import socket
import subprocess
import sys
import threading
import urllib.error

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from dgam_tf.data import records, writer
from dgam_tf.export import signatures
from dgam_tf.serving import client, transport


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
    request = signatures.serving_default_request(_videos(), version=3)
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
    outputs = transport.parse_predict_response(_localize_response())
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
    assert client.detections(transport.parse_predict_response(response)) == []


def test_predict_calls_the_stub():
    class FakeStub:
        def Predict(self, request, timeout):  # noqa: N802 (gRPC method name)
            self.seen = (request, timeout)
            return _localize_response()

    stub = FakeStub()
    request = client.localize_request({"rgb": np.ones((2, 4))})
    outputs = transport.predict(stub, request, timeout=5.0)
    assert stub.seen == (request, 5.0)
    assert outputs["label"].tolist() == ["BaseballPitch", "CliffDiving"]


def test_make_stub_does_not_connect():
    assert hasattr(transport.make_stub("localhost:1"), "Predict")


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
    columnar = transport.parse_rest_response(json.loads(json.dumps({"outputs": {
        "start": [1.0], "end": [2.0], "score": [0.5], "class_id": [1], "label": ["x"]}})))
    assert client.detections(columnar) == [
        {"label": "x", "score": 0.5, "segment": [1.0, 2.0], "class_id": 1}]
    rows = transport.parse_rest_response({"predictions": [
        {"rgb_attention": [0.1, 0.2], "rgb_class_probs": [0.3]},
        {"rgb_attention": [0.5, 0.0], "rgb_class_probs": [0.4]}]})
    np.testing.assert_allclose(rows["rgb_attention"], [[0.1, 0.2], [0.5, 0.0]])
    assert rows["rgb_class_probs"].shape == (2, 1)
    with pytest.raises(RuntimeError, match="D = 1024"):
        transport.parse_rest_response({"error": "rgb_features must be ... D = 1024"})


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

    monkeypatch.setattr(transport.urllib.request, "urlopen", urlopen)
    body = client.rest_body("localize", {"duration": np.float32(2.0)})
    outputs = client.rest_predict(client.rest_url(), body, timeout=3.0)
    assert sent == {"url": client.rest_url(), "body": body, "timeout": 3.0,
                    "content_type": "application/json"}
    np.testing.assert_allclose(outputs["score"], [0.5])


def test_rest_predict_reports_the_server_error(monkeypatch):
    def urlopen(request, timeout):
        raise urllib.error.HTTPError(request.full_url, 400, "Bad Request", {}, io.BytesIO(
            json.dumps({"error": "duration must be a float32 scalar"}).encode()))

    monkeypatch.setattr(transport.urllib.request, "urlopen", urlopen)
    with pytest.raises(RuntimeError, match=r"\(400\): duration must be a float32 scalar"):
        client.rest_predict(client.rest_url(), {})


# ---- the command line ---------------------------------------------------------

# What the fake servers answer (as _localize_response): two detections.
OUTPUTS = {"start": [1.0, 4.5], "end": [2.0, 6.0], "score": [0.9, 0.2],
           "class_id": [0, 2], "label": ["BaseballPitch", "CliffDiving"]}
DETECTIONS = [{"label": "BaseballPitch", "score": 0.9, "segment": [1.0, 2.0]},
              {"label": "CliffDiving", "score": 0.2, "segment": [4.5, 6.0]}]


@pytest.fixture
def rest_server():
    """A loopback HTTP server: records each request (path, JSON body) in
    `server.seen` and its size in bytes in `server.sizes`, and answers
    `server.reply`: (status, JSON object), or a function of (path, body)
    giving them."""
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 (http.server's method name)
            size = int(self.headers["Content-Length"])
            body = json.loads(self.rfile.read(size))
            self.server.seen.append((self.path, body))
            self.server.sizes.append(size)
            reply = self.server.reply
            status, reply = reply(self.path, body) if callable(reply) else reply
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(json.dumps(reply).encode())

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.seen, server.sizes, server.reply = [], [], (200, {"outputs": OUTPUTS})
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _run(capsys, *argv):
    """(exit status, stdout, stderr) of the command line."""
    status = client.main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def _save(tmp_path, name, x):
    np.save(tmp_path / name, x)
    return str(tmp_path / name)


def test_cli_sends_npy_streams_over_rest_and_prints_activitynet_json(
        tmp_path, capsys, rest_server):
    rgb, flow = (np.random.default_rng(i).normal(size=(5, 4)).astype(np.float32)
                 for i in range(2))
    status, out, err = _run(
        capsys, "--rgb", _save(tmp_path, "video_7.npy", rgb),
        "--flow", _save(tmp_path, "flow.npy", flow), "--duration", "3.2",
        "--server", f"127.0.0.1:{rest_server.server_port}", "--version", "3")
    assert (status, err) == (0, "")
    assert json.loads(out)["results"] == {"video_7": DETECTIONS}
    [(path, body)] = rest_server.seen
    assert path == "/v1/models/dgam/versions/3:predict"
    assert body["signature_name"] == "localize"
    np.testing.assert_array_equal(body["inputs"]["rgb_features"], rgb)
    np.testing.assert_array_equal(body["inputs"]["flow_features"], flow)
    assert body["inputs"]["duration"] == pytest.approx(3.2)


def test_cli_sends_every_video_of_a_record_file(tmp_path, capsys, rest_server):
    info = records.DatasetInfo(class_names=["a", "b"], streams=["flow"], feature_dim=3,
                               feature_dtype="float32")
    rng = np.random.default_rng(0)
    videos = [records.Video(f"v{i}", {"flow": rng.normal(size=(4 + i, 3)).astype(np.float32)},
                            [0], duration=2.0 + i) for i in range(2)]
    with writer.DatasetWriter(str(tmp_path / "data"), info) as out:
        for video in videos:
            out.add("test", video)
    [shard] = info.splits["test"]["files"]
    status, out, _ = _run(capsys, "--record", str(tmp_path / "data" / shard),
                          "--server", f"127.0.0.1:{rest_server.server_port}")
    assert status == 0
    assert json.loads(out)["results"] == {"v0": DETECTIONS, "v1": DETECTIONS}
    for (path, body), video in zip(rest_server.seen, videos):
        assert path == "/v1/models/dgam:predict"
        assert set(body["inputs"]) == {"flow_features", "duration"}
        np.testing.assert_array_equal(body["inputs"]["flow_features"], video.features["flow"])
        assert body["inputs"]["duration"] == video.duration


def _localize_or_not_found(request, context):
    if request.model_spec.name != "dgam":
        context.abort(grpc.StatusCode.NOT_FOUND, f"no model named {request.model_spec.name}")
    return _localize_response()


@pytest.fixture
def grpc_server():
    """A loopback gRPC PredictionService: records each request in
    `server.seen` and answers `server.answer(request, context)` (default:
    `localize`'s detections for model dgam, NOT_FOUND for other names)."""
    class Servicer(prediction_service_pb2_grpc.PredictionServiceServicer):
        def Predict(self, request, context):  # noqa: N802 (gRPC method name)
            server.seen.append(request)
            return server.answer(request, context)

    server = grpc.server(concurrent.futures.ThreadPoolExecutor(max_workers=1))
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(Servicer(), server)
    server.port = server.add_insecure_port("127.0.0.1:0")
    server.seen, server.answer = [], _localize_or_not_found
    server.start()
    yield server
    server.stop(None)


def test_cli_over_grpc_with_joint_features(tmp_path, capsys, grpc_server):
    port = grpc_server.port
    joint = np.arange(24, dtype=np.float32).reshape(3, 8)
    args = ["--joint", _save(tmp_path, "clip.npy", joint), "--protocol", "grpc",
            "--server", f"127.0.0.1:{port}", "--video_id", "mine"]
    status, out, _ = _run(capsys, *args)
    assert status == 0
    assert json.loads(out)["results"]["mine"] == [
        {**d, "score": pytest.approx(d["score"])} for d in DETECTIONS]
    request = grpc_server.seen[0]
    assert request.model_spec.signature_name == "localize"
    np.testing.assert_array_equal(tf.make_ndarray(request.inputs["rgb_features"]),
                                  joint[:, :4])
    np.testing.assert_array_equal(tf.make_ndarray(request.inputs["flow_features"]),
                                  joint[:, 4:])
    status, out, err = _run(capsys, *args, "--model", "other")
    assert (status, out) == (1, "")
    assert err == f"error: TF Serving error (NOT_FOUND) at 127.0.0.1:{port}: " \
                  "no model named other\n"


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("case, message", [
    ("missing file", "error: feature file not found: {tmp}/missing.npy"),
    ("wrong rank", "error: {tmp}/flat.npy: expected features [T, D], got shape (5,)"),
    ("server error", "error: TF Serving error (400): rgb_features must be float32"),
    ("no server", "error: cannot reach http://127.0.0.1:{port}/v1/models/dgam:predict"),
])
def test_cli_errors_are_one_line(tmp_path, capsys, rest_server, case, message):
    port = _free_port() if case == "no server" else rest_server.server_port
    rest_server.reply = (400, {"error": "rgb_features must be float32 [segments, D]"})
    video = {"missing file": str(tmp_path / "missing.npy"),
             "wrong rank": _save(tmp_path, "flat.npy", np.zeros(5))}.get(
        case, _save(tmp_path, "ok.npy", np.zeros((5, 4))))
    status, out, err = _run(capsys, "--rgb", video, "--server", f"127.0.0.1:{port}")
    assert (status, out) == (1, "")
    assert err.startswith(message.format(tmp=tmp_path, port=port))
    assert err.count("\n") == 1


def test_cli_help_and_a_missing_video(capsys):
    with pytest.raises(SystemExit) as done:
        client.main(["--help"])
    assert done.value.code == 0
    assert "--record" in capsys.readouterr().out
    with pytest.raises(SystemExit) as done:
        client.main(["--server", "localhost:1"])
    assert done.value.code == 2
    assert "give the video as --rgb" in capsys.readouterr().err


def test_cli_that_imports_tensorflow_prints_only_its_error(tiny_data_dir, tiny_info):
    """A fresh interpreter: TensorFlow's C++ start-up lines (oneDNN, cuInit)
    are not printed; the unreachable server is the one stderr line."""
    record = os.path.join(tiny_data_dir, tiny_info.splits["test"]["files"][0])
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}  # conftest's
    done = subprocess.run([sys.executable, "-m", "dgam_tf.serving.client", "--record", record,
                           "--protocol", "grpc", "--server", f"127.0.0.1:{port}",
                           "--timeout", "2"], capture_output=True, text=True, env=env,
                          timeout=120)
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.startswith(f"error: TF Serving error (UNAVAILABLE) at 127.0.0.1:{port}")
    assert done.stderr.count("\n") == 1, done.stderr


# ---- --video: the served i3d, then localize -------------------------------------

# The clip shape of the --video tests: 16 frames cropped to 16 x 16 (tiny).
VIDEO_RECIPE = ["--resize_short_side", "24", "--crop_size", "16"]
VIDEO_FRAMES = 96   # at 30 fps: 3.2 s, 80 frames at 25 fps, 5 segments


@pytest.fixture(scope="module")
def video_files(tmp_path_factory):
    """{"good": a 5-segment video, "short": one under a segment (10 frames at
    25 fps), "garbage": a file no decoder reads}."""
    pytest.importorskip("cv2", reason="the `video` extra (opencv-contrib-python-headless)")
    from conftest import write_video
    root = tmp_path_factory.mktemp("client_videos")
    write_video(root / "good.avi", VIDEO_FRAMES, 3, 0)
    write_video(root / "short.avi", 12, 3, 0)
    (root / "garbage.avi").write_bytes(b"not a video" * 100)
    return {name: str(root / f"{name}.avi") for name in ("good", "short", "garbage")}


def _i3d_stand_in(clips):
    """A deterministic function in place of I3D: float clips [N, L, S, S, C]
    in [-1, 1] -> [N, 1024] (frame means per channel, projected)."""
    n, length, _, _, channels = clips.shape
    projection = np.random.default_rng(channels).normal(size=(length * channels, 1024))
    return clips.mean(axis=(2, 3)).reshape(n, length * channels) @ projection


def _served_i3d_input(signature, clips):
    """What the served i3d scales `clips` to (rgb_uint8: x / 255 * 2 - 1)."""
    clips = np.asarray(clips, np.float64)
    return clips / 255 * 2 - 1 if signature == "rgb_uint8" else clips


def _expected_features(path, streams):
    """{stream: [T, 1024]} of the stand-in on the recipe's float clips of
    `path`, computed here in one go."""
    from dgam_tf.mode_config import ExtractConfig
    from dgam_tf.features import pipeline
    cfg = ExtractConfig(resize_short_side=24, crop_size=16)
    prepare = pipeline.ClipInputs(cfg, streams)
    clips = [prepare(c) for c in pipeline.decode_clips(path, path, cfg)
             if isinstance(c, pipeline.Clip)]
    return {s: _i3d_stand_in(np.stack([c[s] for c in clips])) for s in streams}


def test_cli_video_over_rest_sends_bounded_clip_batches_then_features_to_localize(
        tmp_path, capsys, rest_server, video_files):
    def answer(path, body):
        if path == "/v1/models/i3d:predict":
            clips = _served_i3d_input(body["signature_name"], body["inputs"]["clips"])
            return 200, {"outputs": {"features": _i3d_stand_in(clips).tolist()}}
        return 200, {"outputs": OUTPUTS}

    rest_server.reply = answer
    max_mb = 0.2   # about 4 RGB clips (45 KB of JSON each), 2 flow clips (90 KB) a request
    output = tmp_path / "out" / "detections.json"
    status, out, err = _run(capsys, "--video", video_files["good"], *VIDEO_RECIPE,
                            "--max_request_mb", str(max_mb), "--output", str(output),
                            "--server", f"127.0.0.1:{rest_server.server_port}")
    assert (status, out, err) == (0, "", "")
    assert json.loads(output.read_text())["results"] == {"good": DETECTIONS}

    *i3d, (localize_path, localize) = zip(rest_server.seen, rest_server.sizes)
    assert localize_path[0] == "/v1/models/dgam:predict"
    assert all(size <= max_mb * 2 ** 20 for _, size in i3d)
    clips_sent = {}
    for (path, body), _ in i3d:
        assert path == "/v1/models/i3d:predict"
        clips_sent.setdefault(body["signature_name"], []).append(len(body["inputs"]["clips"]))
        assert np.asarray(body["inputs"]["clips"]).shape[1:-1] == (16, 16, 16)
    assert sum(clips_sent["rgb_uint8"]) == sum(clips_sent["flow"]) == 5
    assert len(clips_sent["rgb_uint8"]) > 1 and len(clips_sent["flow"]) > 1

    body = localize_path[1]
    assert body["signature_name"] == "localize"
    assert body["inputs"]["duration"] == pytest.approx(VIDEO_FRAMES / 30)
    for stream, expected in _expected_features(video_files["good"], ("rgb", "flow")).items():
        np.testing.assert_allclose(body["inputs"][f"{stream}_features"], expected,
                                   rtol=1e-5, atol=1e-5)


def test_cli_video_over_grpc_packs_raw_clips_up_to_the_bound(capsys, grpc_server,
                                                             video_files):
    def answer(request, context):
        if request.model_spec.name == "i3d":
            clips = tf.make_ndarray(request.inputs["clips"])
            response = predict_pb2.PredictResponse()
            response.outputs["features"].CopyFrom(tf.make_tensor_proto(
                _i3d_stand_in(_served_i3d_input(request.model_spec.signature_name, clips)),
                dtype=tf.float32))
            return response
        return _localize_response()

    grpc_server.answer = answer
    # A raw uint8 clip is 16 * 16 * 16 * 3 = 12288 bytes; beside the 4096 bytes
    # left for the rest of a request, 31457 bytes hold 2 clips, not 3.
    status, out, _ = _run(capsys, "--video", video_files["good"], *VIDEO_RECIPE,
                          "--streams", "rgb", "--max_request_mb", "0.03",
                          "--protocol", "grpc", "--server", f"127.0.0.1:{grpc_server.port}")
    assert status == 0
    assert list(json.loads(out)["results"]) == ["good"]
    *i3d, localize = grpc_server.seen
    assert [tf.make_ndarray(r.inputs["clips"]).shape[0] for r in i3d] == [2, 2, 1]
    assert all(r.model_spec.signature_name == "rgb_uint8" and r.ByteSize() <= 0.03 * 2 ** 20
               and r.inputs["clips"].dtype == tf.uint8.as_datatype_enum for r in i3d)
    assert set(localize.inputs) == {"rgb_features", "duration"}
    np.testing.assert_allclose(tf.make_ndarray(localize.inputs["rgb_features"]),
                               _expected_features(video_files["good"], ("rgb",))["rgb"],
                               rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("case, message", [
    ("missing", "error: video {tmp}/missing.avi: no such file"),
    ("garbage", "error: video {garbage}: unreadable"),
    ("short", "error: video {short}: 10 frames at 25 fps, fewer than one segment of 16"),
    ("no server", "error: cannot reach http://127.0.0.1:{port}/v1/models/i3d:predict"),
    ("server error", "error: TF Serving error (400): clips must be [clips, 16, 224, 224, 3]"),
    ("tiny requests", "error: --max_request_mb 0.01 is below one rgb clip ("),
    ("bad streams", "error: --streams must be rgb, flow or rgb,flow; got 'rgb,depth'"),
])
def test_cli_video_errors_are_one_line(tmp_path, capsys, rest_server, video_files, case,
                                       message):
    port = _free_port() if case == "no server" else rest_server.server_port
    rest_server.reply = (400, {"error": "clips must be [clips, 16, 224, 224, 3] (rgb)"})
    video = {"missing": str(tmp_path / "missing.avi")}.get(case, video_files.get(case))
    extra = {"tiny requests": ["--max_request_mb", "0.01"],
             "bad streams": ["--streams", "rgb,depth"]}.get(case, [])
    status, out, err = _run(capsys, "--video", video or video_files["good"], *VIDEO_RECIPE,
                            "--streams", "rgb", *extra, "--server", f"127.0.0.1:{port}")
    assert (status, out) == (1, "")
    assert err.startswith(message.format(tmp=tmp_path, port=port, **video_files))
    assert err.count("\n") == 1


def test_cli_video_refuses_features_that_are_not_1024_wide(capsys, rest_server, video_files):
    def answer(path, body):    # an i3d model of another width
        return 200, {"outputs": {"features": [[0.0] * 512] * len(body["inputs"]["clips"])}}

    rest_server.reply = answer
    status, out, err = _run(capsys, "--video", video_files["good"], *VIDEO_RECIPE,
                            "--streams", "rgb", "--server",
                            f"127.0.0.1:{rest_server.server_port}")
    assert (status, out) == (1, "")
    assert err.startswith("error: the served 'i3d' model answered rgb features of shape [5, 512] "
                          "for 5 clips, not [5, 1024]")
    assert err.count("\n") == 1


def test_json_array_reads_back_to_the_same_float32_and_uint8():
    from dgam_tf.serving.from_video import json_array
    rng = np.random.default_rng(0)
    floats = np.concatenate([rng.normal(size=198), [0.0, -0.0, 1.0, -1.0, 1e-7, 1 / 3]])
    x = floats.astype(np.float32).reshape(2, 3, 34)
    text = json_array(x)
    np.testing.assert_array_equal(np.asarray(json.loads(text), np.float32), x)
    assert " " not in text and len(text) < 0.7 * len(json.dumps(x.tolist()))
    pixels = rng.integers(0, 256, (2, 4, 3), dtype=np.uint8)
    assert json.loads(json_array(pixels)) == pixels.tolist()
