"""Tests of the SavedModel export and of the graph localization.

The tiny trained model is exported once per module; the export is then read
by `saved_model_cli`, by a fresh Python that cannot import dgam_tf or TFP,
and in-process, and compared with the in-process models and the numpy
`localize_video`.
"""
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import prediction_log_pb2

from conftest import FRESH_SAVED_MODEL_CLI, TINY_DATA, TINY_MODEL, read_videos
from dgam_tf import flags as dgam_flags
from dgam_tf import main
from dgam_tf.data import sampling
from dgam_tf.errors import UserError
from dgam_tf.export import saved_model
from dgam_tf.localization import graph as graph_localization
from dgam_tf.localization import localize
from dgam_tf.models import model_dir as model_dir_lib
from dgam_tf.serving import client

SAMPLE_RANGE = (TINY_MODEL["test_min_segments"], TINY_MODEL["test_max_segments"])
STREAMS = ("rgb", "flow")

# Runs in a fresh interpreter: argv = [export_path, work_dir, saved_model_cli].
# Reads work_dir/inputs.npz; writes work_dir/outputs.npz and, from the
# `saved_model_cli` script run in the same process (one TF start-up instead
# of three), work_dir/cli.txt (`show --all`) and work_dir/cli_run/*.npy
# (`run` of serving_default: TF Serving's session-based loader).
FRESH_PYTHON = FRESH_SAVED_MODEL_CLI + r"""
import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import prediction_log_pb2

with open(work + "/cli.txt", "w") as shown, contextlib.redirect_stdout(shown):
    saved_model_cli("show", "--all", "--dir", export_path)
names = [n for n in ("rgb_features", "flow_features", "num_segments")
         if n in np.load(work + "/inputs.npz")]
saved_model_cli("run", "--dir", export_path, "--tag_set", "serve",
                "--signature_def", "serving_default", "--outdir", work + "/cli_run",
                "--inputs", ";".join(f"{n}={work}/inputs.npz[{n}]" for n in names))
model = tf.saved_model.load(export_path)
inputs = dict(np.load(work + "/inputs.npz"))
streams = [s for s in ("rgb", "flow") if s + "_features" in inputs]
out = {}
batch = model.signatures["serving_default"](
    num_segments=tf.constant(inputs["num_segments"]),
    **{f"{s}_features": tf.constant(inputs[f"{s}_features"]) for s in streams})
out.update({"batch_" + k: v.numpy() for k, v in batch.items()})
for i in range(len(inputs["duration"])):
    video = {f"{s}_features": tf.constant(inputs[f"{s}_{i}"]) for s in streams}
    result = model.signatures["localize"](duration=tf.constant(inputs["duration"][i]), **video)
    out.update({f"localize_{i}_{k}": v.numpy() for k, v in result.items()})
    out[f"localize_{i}_label"] = out[f"localize_{i}_label"].astype(str)
warmups = 0
for record in tf.data.TFRecordDataset(export_path + "/assets.extra/tf_serving_warmup_requests"):
    request = prediction_log_pb2.PredictionLog.FromString(record.numpy()).predict_log.request
    model.signatures[request.model_spec.signature_name](
        **{k: tf.constant(tf.make_ndarray(v)) for k, v in request.inputs.items()})
    warmups += 1
out["warmups"] = np.array(warmups)
blocked = [m for m in sys.modules if m.split(".")[0] in ("dgam_tf", "tensorflow_probability")]
assert not blocked, blocked
np.savez(work + "/outputs.npz", **out)
"""


@pytest.fixture(scope="module")
def models(tiny_model_dir):
    return model_dir_lib.load_models(tiny_model_dir)[0]


@pytest.fixture(scope="module")
def videos(tiny_data_dir, tiny_info):
    return list(read_videos(tiny_data_dir, "test", tiny_info))


@pytest.fixture(scope="module")
def export_path(tiny_data_dir, tiny_model_dir, tmp_path_factory):
    """The tiny model exported as --mode=export does (version 1)."""
    export_dir = str(tmp_path_factory.mktemp("export") / "dgam")
    main.run(dgam_flags.flag_values(["--mode=export"], data_dir=tiny_data_dir,
                                    model_dir=tiny_model_dir, export_dir=export_dir,
                                    **TINY_MODEL))
    return os.path.join(export_dir, "1")


@pytest.fixture(scope="module")
def loaded(export_path):
    return tf.saved_model.load(export_path)


@pytest.fixture(scope="module")
def fresh_run(export_path, videos, tmp_path_factory):
    """`saved_model_cli show --all` and both signatures, run by a Python that
    cannot import dgam_tf or TFP.

    Returns:
      {"cli": the CLI's output, "outputs": what FRESH_PYTHON wrote}.
    """
    work = tmp_path_factory.mktemp("fresh")
    inputs = client.serving_default_inputs([v.features for v in videos])
    inputs["duration"] = np.array([v.duration for v in videos], np.float32)
    for i, video in enumerate(videos):
        inputs.update({f"{s}_{i}": x for s, x in video.features.items()})
    np.savez(work / "inputs.npz", **inputs)
    cli = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
    subprocess.run([sys.executable, "-c", FRESH_PYTHON, export_path, str(work), cli],
                   check=True, cwd=work, timeout=120,
                   env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    return {"cli": (work / "cli.txt").read_text(),
            "outputs": dict(np.load(work / "outputs.npz")),
            "cli_run": {path.stem: np.load(path) for path in (work / "cli_run").glob("*.npy")}}


def reference_detections(models, features, duration):
    """numpy `localize_video` (THUMOS14 settings, the flags' defaults) on the
    in-process models' outputs, sorted."""
    num_segments = len(next(iter(features.values())))
    n = sampling.test_sample_count(num_segments, *SAMPLE_RANGE)
    index = sampling.uniform_indices(num_segments, n)
    streams = {}
    for s in STREAMS:
        if s in features:
            outputs = models[s].video_outputs(tf.gather(features[s], index)[None])
            streams[s] = localize.StreamOutput(*(o[0].numpy() for o in outputs))
    detections = localize.localize_video(
        streams, num_segments, seconds_per_segment=float(duration) / num_segments)
    return sorted((d.class_id, d.start, d.score, d.end) for d in detections)


def sorted_detections(outputs, prefix=""):
    rows = zip(*(np.asarray(outputs[prefix + k]).tolist()
                 for k in ("class_id", "start", "score", "end")))
    return sorted(rows)


def assert_same_detections(got, want):
    assert [g[0] for g in got] == [w[0] for w in want]
    np.testing.assert_allclose(np.array(got, float).reshape(-1, 4),
                               np.array(want, float).reshape(-1, 4), atol=1e-4)


# ---- the exported model -------------------------------------------------------
# Requests are checked in the graph, not against the declared shapes: TF
# Serving does not enforce those, and neither do restored signatures.


def _cli_inputs(shown):
    """{signature: {input: (dtype, shape)}} from `saved_model_cli show --all`."""
    inputs = {}
    for section in shown.split("signature_def['")[1:]:
        name = section[:section.index("'")]
        inputs[name] = {m[0]: (m[1], m[2]) for m in re.findall(
            r"inputs\['(\w+)'\] tensor_info:\s+dtype: (\w+)\s+shape: (.+)", section)}
    return inputs


def test_saved_model_cli_shows_both_signatures_and_their_shapes(fresh_run):
    shown = fresh_run["cli"]
    for name in ("rgb_tcam", "flow_class_probs", "label", "class_id"):
        assert f"outputs['{name}']" in shown
    d = TINY_DATA["feature_dim"]
    inputs = _cli_inputs(shown)
    assert inputs["serving_default"] == {
        "rgb_features": ("DT_FLOAT", f"(-1, -1, {d})"),
        "flow_features": ("DT_FLOAT", f"(-1, -1, {d})"),
        "num_segments": ("DT_INT32", "(-1)")}
    assert inputs["localize"] == {"rgb_features": ("DT_FLOAT", f"(-1, {d})"),
                                  "flow_features": ("DT_FLOAT", f"(-1, {d})"),
                                  "duration": ("DT_FLOAT", "()")}


def test_export_layout(export_path):
    assert os.path.basename(export_path) == "1"
    assert sorted(os.listdir(os.path.dirname(export_path))) == ["1"]
    assert os.path.isfile(os.path.join(export_path, "saved_model.pb"))
    names = set()
    for record in tf.data.TFRecordDataset(os.path.join(export_path, saved_model.WARMUP_FILE)):
        log = prediction_log_pb2.PredictionLog.FromString(record.numpy())
        names.add(log.predict_log.request.model_spec.signature_name)
    assert names == {"serving_default", "localize"}


def test_fresh_process_serving_default_matches_models(fresh_run, models, videos):
    outputs = fresh_run["outputs"]
    assert int(outputs["warmups"]) == 2
    for i, video in enumerate(videos):
        t = video.num_segments
        for s in STREAMS:
            attention, probs, tcam = (o[0] for o in models[s].video_outputs(video.features[s][None]))
            np.testing.assert_allclose(outputs[f"batch_{s}_attention"][i, :t],
                                       attention, atol=1e-5)
            np.testing.assert_allclose(outputs[f"batch_{s}_class_probs"][i],
                                       probs, atol=1e-5)
            np.testing.assert_allclose(outputs[f"batch_{s}_tcam"][i, :t],
                                       tcam, atol=1e-4)
            assert not outputs[f"batch_{s}_attention"][i, t:].any()
            assert not outputs[f"batch_{s}_tcam"][i, t:].any()


def test_saved_model_cli_run_restores_the_variables(fresh_run):
    """The session-based loader of TF Serving gives the outputs of TF2's."""
    outputs, cli_run = fresh_run["outputs"], fresh_run["cli_run"]
    assert sorted(cli_run) == sorted(k[len("batch_"):] for k in outputs if k.startswith("batch_"))
    for name, value in cli_run.items():
        np.testing.assert_allclose(value, outputs["batch_" + name], atol=1e-6, err_msg=name)


def test_fresh_process_localize_matches_numpy(fresh_run, models, videos, tiny_info):
    outputs = fresh_run["outputs"]
    total = 0
    for i, video in enumerate(videos):
        want = reference_detections(models, video.features, np.float32(video.duration))
        got = sorted_detections(outputs, f"localize_{i}_")
        assert_same_detections(got, want)
        labels = outputs[f"localize_{i}_label"].tolist()
        ids = outputs[f"localize_{i}_class_id"].tolist()
        assert labels == [tiny_info.class_names[c] for c in ids]
        total += len(want)
    assert total > 0


def test_padding_is_masked(loaded, videos):
    signature = loaded.signatures["serving_default"]
    inputs = client.serving_default_inputs([v.features for v in videos])
    noisy = dict(inputs)
    for s in STREAMS:  # padding content must not matter
        pad = np.arange(inputs[f"{s}_features"].shape[1]) >= inputs["num_segments"][:, None]
        noisy[f"{s}_features"] = np.where(pad[..., None], 1e3, inputs[f"{s}_features"])
    batch = {k: v.numpy() for k, v in signature(**noisy).items()}
    for i, video in enumerate(videos):
        alone = signature(**client.serving_default_inputs([video.features]))
        t = video.num_segments
        for name, value in alone.items():
            got = batch[name][i] if name.endswith("class_probs") else batch[name][i, :t]
            np.testing.assert_allclose(got, value.numpy()[0], atol=1e-5, err_msg=name)


def _video(num_segments=30, dim=16):
    rng = np.random.default_rng(0)
    return {s: rng.normal(size=(num_segments, dim)).astype(np.float32) for s in STREAMS}


def _nan_video():
    video = _video()
    video["flow"][3, 5] = np.nan
    return video


@pytest.mark.parametrize("signature, inputs, message", [
    ("localize", client.localize_inputs(_video(dim=17), 10.0), "D = 16"),
    ("localize", client.localize_inputs(_video(num_segments=0), 10.0), "empty video"),
    ("localize", client.localize_inputs(_nan_video(), 10.0), "NaN or Inf"),
    ("localize", {**client.localize_inputs(_video()), "rgb_features": np.zeros(16, np.float32)},
     "rgb_features must be float32 [segments, D]"),
    ("localize", {**client.localize_inputs(_video()),
                  "flow_features": np.zeros((1, 30, 16), np.float32)},
     "flow_features must be float32 [segments, D]"),
    ("localize", {**client.localize_inputs(_video()),
                  "flow_features": np.zeros((29, 16), np.float32)}, "same number of segments"),
    ("localize", client.localize_inputs(_video(), -1.0), "duration must be"),
    ("localize", client.localize_inputs(_video(), np.inf), "duration must be"),
    ("serving_default", client.serving_default_inputs([_video(dim=8)]), "D = 16"),
    ("serving_default", {**client.serving_default_inputs([_video()]),
                         "rgb_features": np.zeros((30, 16), np.float32)},
     "rgb_features must be float32 [batch, segments, D]"),
    ("serving_default", client.serving_default_inputs([_nan_video()]), "NaN or Inf"),
    ("serving_default", {**client.serving_default_inputs([_video()]),
                         "num_segments": np.array([31], np.int32)}, "1 <= num_segments <= T"),
    ("serving_default", {**client.serving_default_inputs([_video()]),
                         "num_segments": np.array([0], np.int32)}, "1 <= num_segments <= T"),
    ("serving_default", {**client.serving_default_inputs([_video()]),
                         "num_segments": np.array([30, 30], np.int32)}, "num_segments must be"),
])
def test_invalid_inputs_are_rejected_with_a_message(loaded, signature, inputs, message):
    with pytest.raises(tf.errors.InvalidArgumentError, match=re.escape(message)):
        loaded.signatures[signature](**{k: tf.constant(v) for k, v in inputs.items()})


def test_one_stream_export(models, videos, tiny_info, tmp_path):
    path = saved_model.export_models({"rgb": models["rgb"]}, tiny_info.class_names,
                                     str(tmp_path), test_min_segments=SAMPLE_RANGE[0],
                                     test_max_segments=SAMPLE_RANGE[1])
    model = tf.saved_model.load(path)
    serving = model.signatures["serving_default"]
    assert set(serving.structured_input_signature[1]) == {"rgb_features", "num_segments"}
    assert set(serving.structured_outputs) == {"rgb_attention", "rgb_class_probs", "rgb_tcam"}
    for video in videos[:2]:
        features = {"rgb": video.features["rgb"]}
        inputs = client.localize_inputs(features, video.duration)
        got = model.signatures["localize"](**{k: tf.constant(v) for k, v in inputs.items()})
        assert_same_detections(sorted_detections(got),
                               reference_detections(models, features, np.float32(video.duration)))


# ---- versions, atomicity and user errors ------------------------------------------


def test_next_version(tmp_path):
    assert saved_model.next_version(str(tmp_path / "missing")) == 1
    for name in ("1", "7", "10", "x", ".11.tmp-abc"):
        (tmp_path / name).mkdir()
    (tmp_path / "12").write_text("a file, not a version")
    assert saved_model.next_version(str(tmp_path)) == 11


def test_existing_version_is_not_overwritten(export_path, tiny_model_dir):
    base = os.path.dirname(export_path)
    pb = os.path.join(export_path, "saved_model.pb")
    before = open(pb, "rb").read()
    with pytest.raises(UserError, match="already exists.*pass --overwrite"):
        saved_model.export(tiny_model_dir, base, version=1)
    assert open(pb, "rb").read() == before
    assert sorted(os.listdir(base)) == ["1"]


def test_failed_export_leaves_nothing(models, tiny_info, tmp_path, monkeypatch):
    def broken_save(*args, **kwargs):
        raise RuntimeError("disk full")
    monkeypatch.setattr(tf.saved_model, "save", broken_save)
    with pytest.raises(RuntimeError, match="disk full"):
        saved_model.export_models(models, tiny_info.class_names, str(tmp_path))
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("kwargs, message", [
    (dict(model_dir="missing"), "model settings"),
    (dict(checkpoint="best"), "no best checkpoint"),
    (dict(version=0), "positive"),
    (dict(test_min_segments=5, test_max_segments=4), "test_min_segments"),
])
def test_export_user_errors(tiny_model_dir, tmp_path, kwargs, message):
    kwargs = {"model_dir": tiny_model_dir, **kwargs}
    if kwargs["model_dir"] == "missing":
        kwargs["model_dir"] = str(tmp_path / "missing")
    with pytest.raises(UserError, match=message):
        saved_model.export(export_dir=str(tmp_path / "export"), **kwargs)
    assert not os.path.exists(tmp_path / "export")


# ---- graph localization against the numpy reference -----------------------------


def _tensors(stream):
    return graph_localization.StreamTensors(stream.attention, stream.class_probs, stream.tcam)


def _graph_localizer(names, config):
    spec = graph_localization.StreamTensors(
        tf.TensorSpec([None], tf.float32), tf.TensorSpec([None], tf.float32),
        tf.TensorSpec([None, None], tf.float32))

    @tf.function(input_signature=[[spec] * len(names), tf.TensorSpec([], tf.int32),
                                  tf.TensorSpec([], tf.float64)])
    def run(streams, num_segments, seconds_per_segment):
        return graph_localization.localize_video(
            dict(zip(names, streams)), num_segments, [f"c{i}" for i in range(20)], config,
            seconds_per_segment)
    return run


@pytest.mark.parametrize("dataset, names", [
    ("thumos14", ("rgb", "flow")), ("activitynet12", ("rgb", "flow")),
    ("thumos14", ("flow",))])
def test_graph_localization_matches_numpy(dataset, names):
    config = localize.LocalizationConfig.for_dataset(dataset)
    run = _graph_localizer(names, config)
    rng = np.random.default_rng(len(names) + len(dataset))
    total = 0
    for n in (1, 2, 7, 50, 200, 400):
        num_segments = int(rng.integers(n, 3 * n + 1))
        streams = {s: localize.StreamOutput.random(n, 20, rng, np.float32) for s in names}
        seconds = float(rng.uniform(0.3, 1.0))
        want = sorted((d.class_id, d.start, d.score, d.end) for d in localize.localize_video(
            streams, num_segments, config, seconds))
        got = run([_tensors(s) for s in streams.values()], num_segments, seconds)
        assert_same_detections(sorted_detections(got), want)
        total += len(want)
    assert total > 20


def test_graph_fusion_keeps_exact_duplicates_once():
    # Identical streams with equal settings give bit-identical proposals; with
    # nms_iou = 1 NMS keeps them all, so only the duplicate removal acts.
    config = localize.LocalizationConfig(fusion_alpha={"rgb": 0.5, "flow": 0.5},
                                         proposal_threshold={"rgb": 0.05, "flow": 0.05},
                                         nms_iou=1.0)
    stream = localize.StreamOutput.random(100, 20, np.random.default_rng(3), np.float32)
    got = _graph_localizer(("rgb", "flow"), config)([_tensors(stream)] * 2, 150, 0.64)
    want = localize.localize_video({"rgb": stream, "flow": stream}, 150, config)
    rgb_only = localize.stream_proposals(
        stream, localize.predict_classes(stream.class_probs, config.class_threshold), 150,
        0.05, config, other_tcam=stream.tcam, alpha=0.5)
    assert len(want) == len(rgb_only) > 1
    assert_same_detections(sorted_detections(got),
                           sorted((d.class_id, d.start, d.score, d.end) for d in want))


def test_graph_nms_matches_numpy():
    rng = np.random.default_rng(0)
    for size in (0, 1, 5, 40, 120):
        starts = rng.uniform(0, 10, size)
        ends = starts + rng.uniform(0.1, 5, size)
        scores = np.round(rng.uniform(0, 1, size), 1)  # ties
        groups = rng.integers(0, 4, size)
        want = localize.proposals.nms_1d(starts, ends, scores, 0.5)
        got = graph_localization.nms_1d(tf.constant(starts), tf.constant(ends),
                                        tf.constant(scores), 0.5)
        assert got.numpy().tolist() == want.tolist()
        # With groups: NMS within each group, then all kept by descending score.
        kept = np.concatenate([np.flatnonzero(groups == g)[localize.proposals.nms_1d(
            starts[groups == g], ends[groups == g], scores[groups == g], 0.5)]
            for g in range(4)]).astype(int)
        want = kept[np.lexsort((kept, -scores[kept]))]
        got = graph_localization.nms_1d(tf.constant(starts), tf.constant(ends),
                                        tf.constant(scores), 0.5, tf.constant(groups))
        assert got.numpy().tolist() == want.tolist()
