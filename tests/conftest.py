"""Session-scoped fixtures: one tiny synthetic dataset and one tiny trained
model, generated videos, their features and a model trained on them, shared
by every test that needs them (keeps the suite fast)."""
import json
import os
import struct

# Quiet TF's C++ start-up chatter in test output.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from dgam_tf import flags as dgam_flags  # noqa: E402
from dgam_tf.data import builtin, records  # noqa: E402

TINY_DATA = dict(num_classes=3, feature_dim=16, num_train=8, num_validation=4, num_test=4,
                 min_segments=20, max_segments=60)
TINY_MODEL = dict(epochs=2, batch_size=4, num_segments=24, ramp_epochs=1,
                  attention_hidden=8, cvae_hidden=8, latent_dim=4,
                  test_min_segments=4, test_max_segments=40, progress=False)


# The start of a script that a fresh Python runs to read an export as TF
# Serving would: dgam_tf and TFP cannot be imported, argv is [export_path,
# work_dir, path of saved_model_cli], and `saved_model_cli(*args)` runs that
# script in the same process (one TF start-up for all its commands).
FRESH_SAVED_MODEL_CLI = r"""
import contextlib, importlib.abc, runpy, sys

class Blocker(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("dgam_tf", "tensorflow_probability"):
            raise ImportError(f"{name} is blocked in this test")

sys.meta_path.insert(0, Blocker())
try:
    import dgam_tf
    raise SystemExit("the import blocker does not work")
except ImportError:
    pass

export_path, work, cli = sys.argv[1:]

def saved_model_cli(*args):
    sys.argv = [cli, *args]
    try:
        runpy.run_path(cli, run_name="__main__")
    except SystemExit as done:
        assert not done.code, done.code
"""


def read_videos(data_dir, split, info=None):
    """Every Video of a split in file order, eagerly."""
    info = info or records.load_info(data_dir)
    return [video for path in info.split_files(data_dir, split)
            for video in records.read_videos_from_file(path, info)]


def tiny_config(data_dir, model_dir, argv=(), **overrides):
    """The Config of a tiny run on `data_dir` (tiny shapes, two epochs):
    flags `argv`, then TINY_MODEL and `overrides` as flag values."""
    return dgam_flags.parse_args(argv, data_dir=str(data_dir), model_dir=str(model_dir),
                                 **{**TINY_MODEL, **overrides})


def evaluate_fn(cfg):
    """The Evaluator of cfg's settings, drawing summary images, as --mode=train
    builds it."""
    from dgam_tf.evaluation import evaluate
    from dgam_tf.visualization import plots
    return evaluate.Evaluator(cfg.data, cfg.localization, cfg.evaluation, plots.video_image)


def train(cfg, evaluate=False):
    """train_lib.train_and_evaluate of a Config; with `evaluate`, validating
    (with summary images) and evaluating the test split as --mode=train does."""
    from dgam_tf.training import train_lib
    return train_lib.train_and_evaluate(cfg.model_dir, cfg.data, cfg.model, cfg.train,
                                        evaluate_fn(cfg) if evaluate else None)


def make_trainer(cfg, info):
    """A training.trainer.Trainer of a Config on its data."""
    from dgam_tf.training import trainer
    return trainer.Trainer(cfg.data.data_dir, info, cfg.data, cfg.model, cfg.train)


# Generated videos and their features (--mode=extract, --mode=detect).
SOURCE_FPS = 30
# Source frames per video (30 fps): 1.4 to 2.3 s, 2 or 3 segments at 25 fps
# (TV-L1 costs about 0.1 s a frame pair even at this size).
LENGTHS = {"walk_a": 42, "walk_b": 70, "run_a": 50, "run_b": 58}
SUBSETS = {"walk_a": "validation", "run_a": "validation", "walk_b": "test", "run_b": "test"}
TINY_RECIPE = ["--resize_short_side=24", "--crop_size=16", "--clips_per_batch=2"]


def write_video(path, num_frames, speed, seed):
    """A bright square moving `speed` px a frame over a fixed random
    background, 64x48, MJPG at 30 fps."""
    import cv2
    rng = np.random.default_rng(seed)
    background = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), SOURCE_FPS, (64, 48))
    for i in range(num_frames):
        frame = background.copy()
        x = (speed * i) % 50
        frame[10:26, x:x + 14] = (0, 200, 255)
        writer.write(frame)
    writer.release()


@pytest.fixture(scope="session")
def videos(tmp_path_factory):
    """(video folder, annotations JSON, I3D checkpoints {stream: folder})."""
    pytest.importorskip("cv2", reason="the `video` extra (opencv-contrib-python-headless)")
    from dgam_tf.features import i3d, weights
    root = tmp_path_factory.mktemp("videos")
    folder = root / "videos"
    folder.mkdir()
    database = {}
    for seed, (name, length) in enumerate(LENGTHS.items()):
        write_video(folder / f"{name}.avi", length, 1 if name.startswith("walk") else 4, seed)
        label = name.split("_")[0]
        database[name] = {"subset": SUBSETS[name], "duration": length / SOURCE_FPS,
                          "annotations": [{"label": label, "segment": [0.3, 1.2]}]}
    annotations = root / "gt.json"
    annotations.write_text(json.dumps({"database": database}))
    checkpoints = {}
    for stream in ("rgb", "flow"):
        checkpoints[stream] = root / f"{stream}_random"
        weights.save_deepmind_checkpoint(i3d.I3D(stream), str(checkpoints[stream] / "model.ckpt"))
    return folder, annotations, checkpoints


def extract_config(videos, data_dir, *argv, annotations=True):
    folder, gt, checkpoints = videos
    args = [f"--video_dir={folder}", f"--data_dir={data_dir}", "--feature_dtype=float32",
            f"--i3d_rgb_checkpoint={checkpoints['rgb']}",
            f"--i3d_flow_checkpoint={checkpoints['flow']}", *TINY_RECIPE, *argv]
    if annotations:
        args.append(f"--annotations={gt}")
    return dgam_flags.parse_args(["--mode=extract", *args])


def extract(cfg):
    from dgam_tf.features import extract as extract_lib
    return extract_lib.run(cfg)


@pytest.fixture(scope="session")
def extracted(videos, tmp_path_factory):
    """An uninterrupted extraction of the four annotated videos."""
    data_dir = tmp_path_factory.mktemp("extracted") / "data"
    extract(extract_config(videos, data_dir))
    return str(data_dir)


def extracted_config(data_dir, model_dir, argv=()):
    """tiny_config of the model trained on extracted features: the w/o-GAM
    baseline (one training stage, half the tracing time), one epoch."""
    return tiny_config(data_dir, model_dir, argv, epochs=1, num_segments=4, batch_size=2,
                       test_min_segments=2, eval_every=0, gam=False)


@pytest.fixture(scope="session")
def extracted_model(extracted, tmp_path_factory):
    """A model trained on the `extracted` records (its features.json records them)."""
    model_dir = tmp_path_factory.mktemp("extracted_model") / "run"
    train(extracted_config(extracted, model_dir))
    return str(model_dir)


def tfrecord_ends(raw):
    """End offsets of the records of a TFRecord file's bytes (each: 8-byte
    length, 4-byte length CRC, data, 4-byte data CRC), read with struct."""
    ends, pos = [], 0
    while pos + 8 <= len(raw):
        (length,) = struct.unpack("<Q", raw[pos:pos + 8])
        pos += 16 + length
        ends.append(pos)
    return ends


@pytest.fixture(scope="session")
def tiny_data_dir(tmp_path_factory):
    """A synthetic dataset: 3 classes, D=16, splits of 8/4/4 videos."""
    path = tmp_path_factory.mktemp("data") / "tiny"
    builtin.generate(str(path), seed=0, num_shards=2, **TINY_DATA)
    return str(path)


@pytest.fixture(scope="session")
def tiny_info(tiny_data_dir):
    return records.load_info(tiny_data_dir)


@pytest.fixture(scope="session")
def tiny_model_dir(tiny_data_dir, tmp_path_factory):
    """A model trained for two epochs on the tiny dataset (both streams)."""
    model_dir = tmp_path_factory.mktemp("model") / "run"
    train(tiny_config(tiny_data_dir, model_dir))
    return str(model_dir)
