"""Tests of `--mode=export_i3d`: the I3D feature extractor as a SavedModel.

Random weights (DeepMind's names, He-scaled so features are of order 1) are
exported once per module with a small clip shape (9 frames of 193 px, the
smallest with I3D features) to keep it fast. The export is run by
`saved_model_cli run` in a fresh Python that cannot import dgam_tf: the
session-based loader TF Serving uses, not TF2's `tf.saved_model.load`.
"""
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import prediction_log_pb2

from conftest import FRESH_SAVED_MODEL_CLI
from dgam_tf import flags as dgam_flags
from dgam_tf import main
from dgam_tf.errors import UserError
from dgam_tf.export import saved_model, signatures
from dgam_tf.features import weights
from test_i3d import keras_i3d, random_weights

FRAMES, SIZE = 9, 193
# Signature -> (stream, input dtype).
SIGNATURES = {"rgb": ("rgb", np.float32), "rgb_uint8": ("rgb", np.uint8),
              "flow": ("flow", np.float32)}

# Run by a fresh Python (conftest.FRESH_SAVED_MODEL_CLI): `saved_model_cli
# show --all` into work/cli.txt, and `saved_model_cli run` of each
# work/<signature>.npy into work/<signature>/features.npy.
FRESH_PYTHON = FRESH_SAVED_MODEL_CLI + r"""
with open(work + "/cli.txt", "w") as shown, contextlib.redirect_stdout(shown):
    saved_model_cli("show", "--all", "--dir", export_path)
for name in ("rgb", "rgb_uint8", "flow"):
    saved_model_cli("run", "--dir", export_path, "--tag_set", "serve", "--signature_def", name,
                    "--inputs", f"clips={work}/{name}.npy", "--outdir", f"{work}/{name}")
assert not [m for m in sys.modules if m.split(".")[0] == "dgam_tf"]
"""


@pytest.fixture(scope="module")
def networks():
    """{stream: (Keras I3D, its weights)} with random He-scaled weights."""
    out = {}
    for stream, channels in (("rgb", 3), ("flow", 2)):
        unit_weights = random_weights(channels, seed=10 + channels, num_classes=400)
        out[stream] = keras_i3d(stream, unit_weights)
    return out


@pytest.fixture(scope="module")
def checkpoints(networks, tmp_path_factory):
    """{stream: checkpoint folder} of the networks' weights, DeepMind's layout."""
    root = tmp_path_factory.mktemp("i3d_weights")
    paths = {}
    for stream, model in networks.items():
        paths[stream] = str(root / stream)
        weights.save_deepmind_checkpoint(model, os.path.join(paths[stream], "model.ckpt"))
    return paths


def export_flags(checkpoints, export_dir, *argv):
    """--mode=export_i3d's flags of the small clip shape, then `argv`."""
    return dgam_flags.flag_values(
        ["--mode=export_i3d", f"--export_dir={export_dir}", f"--segment_frames={FRAMES}",
         f"--crop_size={SIZE}", *argv],
        i3d_rgb_checkpoint=checkpoints.get("rgb"), i3d_flow_checkpoint=checkpoints.get("flow"))


@pytest.fixture(scope="module")
def export_path(checkpoints, tmp_path_factory):
    """Both streams exported as --mode=export_i3d does (version 1)."""
    export_dir = str(tmp_path_factory.mktemp("export") / "i3d")
    main.run(export_flags(checkpoints, export_dir))
    return os.path.join(export_dir, "1")


@pytest.fixture(scope="module")
def clips():
    """{signature: a batch of two random clips} in its input dtype."""
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (2, FRAMES, SIZE, SIZE, 3), dtype=np.uint8)
    return {"rgb": frames.astype(np.float32) / 255 * 2 - 1, "rgb_uint8": frames,
            "flow": rng.uniform(-1, 1, (2, FRAMES, SIZE, SIZE, 2)).astype(np.float32)}


@pytest.fixture(scope="module")
def fresh_run(export_path, clips, tmp_path_factory):
    """What FRESH_PYTHON wrote: {"cli", "features": {signature: array}}."""
    work = tmp_path_factory.mktemp("fresh")
    for name, batch in clips.items():
        np.save(work / f"{name}.npy", batch)
    cli = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
    subprocess.run([sys.executable, "-c", FRESH_PYTHON, export_path, str(work), cli],
                   check=True, cwd=work, timeout=300,
                   env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    return {"cli": (work / "cli.txt").read_text(),
            "features": {name: np.load(work / name / "features.npy") for name in clips}}


@pytest.mark.parametrize("signature", sorted(SIGNATURES))
def test_saved_model_cli_run_matches_keras(fresh_run, networks, clips, signature):
    stream, _ = SIGNATURES[signature]
    want = networks[stream].features(clips["rgb" if signature == "rgb_uint8" else signature])
    want = np.asarray(want, np.float64)
    got = fresh_run["features"][signature]
    assert got.shape == (2, 1024) and np.abs(want).max() > 0.1
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5 * np.abs(want).max())


def test_saved_model_cli_shows_the_signatures(fresh_run):
    shown = fresh_run["cli"]
    for name, (stream, dtype) in SIGNATURES.items():
        block = shown.split(f"signature_def['{name}']:")[1].split("signature_def[")[0]
        channels = 3 if stream == "rgb" else 2
        assert f"shape: (-1, {FRAMES}, {SIZE}, {SIZE}, {channels})" in block
        assert ("DT_UINT8" if dtype == np.uint8 else "DT_FLOAT") in block
        assert "outputs['features']" in block and "shape: (-1, 1024)" in block


@pytest.fixture(scope="module")
def loaded(export_path):
    return tf.saved_model.load(export_path)


def warmup_requests(version_dir):
    """The PredictRequests of a version's warm-up file."""
    path = os.path.join(version_dir, saved_model.WARMUP_FILE)
    return [prediction_log_pb2.PredictionLog.FromString(record).predict_log.request
            for record in tf.data.TFRecordDataset(path).as_numpy_iterator()]


def test_warmup_requests_run(export_path, loaded):
    requests = warmup_requests(export_path)
    assert sorted(f"{r.model_spec.name}/{r.model_spec.signature_name}" for r in requests) == [
        "i3d/flow", "i3d/rgb", "i3d/rgb_uint8"]
    for request in requests:
        inputs = {k: tf.constant(tf.make_ndarray(v)) for k, v in request.inputs.items()}
        outputs = loaded.signatures[request.model_spec.signature_name](**inputs)
        assert outputs["features"].shape == (1, 1024)


def _bad_clips():
    good = np.zeros((1, FRAMES, SIZE, SIZE, 3), np.float32)
    nan = good.copy()
    nan[0, 0, 0, 0, 0] = np.nan
    return [
        ("rgb", good[:, :-1], r"clips must be \[clips, 9, 193, 193, 3\] \(rgb\)"),
        ("rgb", good[:0], r"with at least one clip; got shape.*\[0 9 193 193 3\]"),
        ("rgb", good[0], r"got shape.*\[9 193 193 3\]"),
        ("flow", good, r"clips must be \[clips, 9, 193, 193, 2\] \(flow\)"),
        ("rgb", good + 255, r"within \[-1, 1\].*got values from\] \[255\] \[to\] \[255\]"),
        ("rgb", nan, r"finite and within \[-1, 1\]"),
        ("rgb_uint8", good[:, :, :-1].astype(np.uint8), r"got shape.*\[1 9 192 193 3\]"),
    ]


@pytest.mark.parametrize("signature, batch, message", _bad_clips())
def test_invalid_clips_are_rejected_with_a_message(loaded, signature, batch, message):
    with pytest.raises(tf.errors.InvalidArgumentError, match=message):
        loaded.signatures[signature](clips=tf.constant(batch))


def test_one_stream_export_takes_the_next_version(checkpoints, tmp_path):
    export_dir = tmp_path / "i3d"
    (export_dir / "1").mkdir(parents=True)
    main.run(export_flags({"rgb": checkpoints["rgb"]}, str(export_dir), "--streams=rgb"))
    assert sorted(os.listdir(export_dir)) == ["1", "2"]
    loaded = tf.saved_model.load(str(export_dir / "2"))
    assert sorted(loaded.signatures) == ["rgb", "rgb_uint8"]
    assert [r.model_spec.signature_name for r in warmup_requests(str(export_dir / "2"))] == [
        "rgb", "rgb_uint8"]


@pytest.mark.parametrize("weights_of, argv, message", [
    (("rgb",), (), "exports --streams=rgb,flow and needs --i3d_flow_checkpoint"),
    (("rgb", "flow"), ("--segment_frames=8",), "--segment_frames must be at least 9"),
    (("rgb", "flow"), ("--crop_size=160",), "--crop_size must be at least 193"),
    (("rgb",), ("--streams=rgb,depth",), "--streams must be a non-empty subset"),
])
def test_export_user_errors(checkpoints, tmp_path, weights_of, argv, message):
    export_dir = tmp_path / "i3d"
    with pytest.raises(UserError, match=message):
        main.run(export_flags({s: checkpoints[s] for s in weights_of}, str(export_dir), *argv))
    assert not export_dir.exists()


def test_default_export_dir_is_beside_dgam():
    cfg = dgam_flags.parse_args(["--mode=export_i3d"])
    assert cfg.export.export_dir == os.path.join("savedmodel", "i3d")
    assert dgam_flags.parse_args(["--mode=export"]).export.export_dir == os.path.join(
        "savedmodel", "dgam")


def test_models_config_serves_both_exports():
    """savedmodel/models.config serves each default --export_dir under its
    model name, mounted at /models."""
    from google.protobuf import text_format
    from tensorflow_serving.config import model_server_config_pb2

    path = os.path.join(os.path.dirname(__file__), "..", "savedmodel", "models.config")
    with open(path, encoding="utf-8") as f:
        config = text_format.Parse(f.read(), model_server_config_pb2.ModelServerConfig())
    served = {m.name: m.base_path for m in config.model_config_list.config}
    folders = {name: dgam_flags.parse_args([f"--mode={mode}"]).export.export_dir
               for name, mode in ((signatures.MODEL_NAME, "export"),
                                  (signatures.I3D_MODEL_NAME, "export_i3d"))}
    assert served == {name: "/models/" + os.path.relpath(folder, "savedmodel")
                      for name, folder in folders.items()}
