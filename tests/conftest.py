"""Session-scoped fixtures: one tiny synthetic dataset and one tiny trained
model, shared by every test that needs them (keeps the suite fast)."""
import os
import struct

# Quiet TF's C++ start-up chatter in test output.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

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


# Frame rate of the generated videos (write_video).
SOURCE_FPS = 30


def write_video(path, num_frames, speed, seed):
    """A bright square moving `speed` px a frame over a fixed random
    background, 64x48, MJPG at SOURCE_FPS (needs the `video` extra)."""
    import cv2
    import numpy as np
    rng = np.random.default_rng(seed)
    background = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), SOURCE_FPS, (64, 48))
    for i in range(num_frames):
        frame = background.copy()
        x = (speed * i) % 50
        frame[10:26, x:x + 14] = (0, 200, 255)
        writer.write(frame)
    writer.release()


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
