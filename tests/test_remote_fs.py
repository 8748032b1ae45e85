"""Every path through TensorFlow's filesystems: the whole workflow on its
in-memory filesystem (ram://, which, like an object store, has no folder
rename) gives the numbers of the same run on local disk and writes nothing
to local disk; writes interrupted there leave the previous version intact.
"""
import io
import json
import os
import secrets
import sys
import tempfile
import time

import numpy as np
import pytest
import tensorflow as tf

from conftest import TINY_DATA, TINY_MODEL, read_videos, tiny_config
from dgam_tf import flags as dgam_flags
from dgam_tf import files
from dgam_tf.training import lock
from dgam_tf import main
from dgam_tf.data import records, synthetic, writer
from dgam_tf.errors import UserError
from dgam_tf.export import saved_model
from dgam_tf.models import model_dir as model_dir_lib
from dgam_tf.training import train_lib

gfile = tf.io.gfile


@pytest.fixture
def ram():
    """A fresh ram:// folder (the in-memory filesystem lives as long as the process)."""
    root = f"ram://{secrets.token_hex(4)}"
    gfile.makedirs(root)
    yield root
    for name in files.tree(root)[1]:
        gfile.remove(f"{root}/{name}")


def write_npy_release(root):
    """An `npy_dir` release of the tiny synthetic videos' rgb stream:
    <video>.npy [T, D], and their ground truth as annotations.json (train
    videos as THUMOS14's "validation" subset)."""
    generator = synthetic.SyntheticGenerator(synthetic.SyntheticConfig(**TINY_DATA), seed=0)
    database = {}
    gfile.makedirs(root)
    for split, subset in (("train", "validation"), ("test", "test")):
        for index in range(generator.config.split_size(split)):
            video = generator.video(split, index)[0]
            buffer = io.BytesIO()
            np.save(buffer, video.features["rgb"])
            with gfile.GFile(f"{root}/{video.video_id}.npy", "wb") as f:
                f.write(buffer.getvalue())
            database[video.video_id] = {"subset": subset, "duration": video.duration,
                                        "annotations": [
                {"label": f"action_{c:02d}", "segment": [s, e]} for s, e, c in video.gt]}
    with gfile.GFile(f"{root}/annotations.json", "w") as f:
        f.write(json.dumps({"database": database}))


def run(mode, *args):
    """`python -m dgam_tf.main --mode=MODE ARGS` in this process (tiny model,
    rgb stream: the test's time is mostly tracing, which grows with streams)."""
    tiny = [f"--{k}={str(v).lower()}" for k, v in TINY_MODEL.items()]
    main.run(dgam_flags.flag_values([f"--mode={mode}", *tiny, "--eval_every=0", "--streams=rgb",
                                     *args]))


def convert_and_train(root):
    """convert, then train (which evaluates the test split) under `root`."""
    write_npy_release(f"{root}/release")
    run("convert", "--source_format=npy_dir", f"--source_dir={root}/release",
        f"--data_dir={root}/data")
    run("train", f"--data_dir={root}/data", f"--model_dir={root}/model")


def read(path):
    return json.loads(files.read_bytes(path))


def rescore(root, detections):
    """eval_detections on the converter's input annotations of `detections`
    (the labels with test ground truth: the evaluator refuses the others,
    the evaluation leaves them out of its mAP)."""
    database = read(f"{root}/release/annotations.json")["database"]
    labels = {a["label"] for v in database.values() if v["subset"] == "test"
              for a in v["annotations"]}
    kept = {v: [d for d in dets if d["label"] in labels]
            for v, dets in detections["results"].items()}
    files.atomic_write_json(f"{root}/eval/kept.json", dict(detections, results=kept))
    run("eval_detections", f"--gt_json={root}/release/annotations.json", "--subset=test",
        f"--predictions_json={root}/eval/kept.json",
        f"--output_metrics_json={root}/eval/scored.json")
    return read(f"{root}/eval/scored.json")


def serving_inputs():
    x = tf.random.stateless_uniform([2, 7, TINY_DATA["feature_dim"]], [1, 2])
    return dict(rgb_features=x, num_segments=tf.constant([7, 5]))


@pytest.fixture
def local_writes(tmp_path_factory):
    """Local paths this process creates, writes, renames or removes from
    Python (an audit hook) outside pytest's tmp dir while the test runs."""
    allowed = (str(tmp_path_factory.getbasetemp()), "/dev/")
    seen, active = [], [True]

    def hook(event, args):
        if not active[0]:
            return
        if event == "open":
            path, mode, flags = args
            writing = any(c in mode for c in "wax+") if isinstance(mode, str) else bool(
                flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT))
        else:
            path, writing = (args[0] if args else None), event in (
                "os.mkdir", "os.rename", "os.remove", "os.rmdir", "shutil.rmtree",
                "shutil.move", "tempfile.mkstemp", "tempfile.mkdtemp")
        path = os.fsdecode(path) if isinstance(path, (str, bytes)) else ""
        if writing and not os.path.abspath(path).startswith(allowed):
            seen.append((event, path))

    sys.addaudithook(hook)   # (hooks stay for the process: switched off below)
    yield seen
    active[0] = False


def test_the_whole_workflow_on_ram_gives_the_local_numbers_and_no_local_file(
        tmp_path, ram, monkeypatch, local_writes):
    monkeypatch.setattr(lock, "SETTLE_SECONDS", 0.0)
    local = str(tmp_path / "local")
    convert_and_train(local)
    models, settings, _ = model_dir_lib.load_models(f"{local}/model")
    local_served = saved_model.DGAMServing(models, settings.class_names, None, 4, 40)
    local_outputs = local_served.serving_default(*serving_inputs().values())
    local_writes.clear()           # from here on: nothing on local disk
    for name in ("cwd", "home", "tmp"):
        (tmp_path / name).mkdir()
    monkeypatch.chdir(tmp_path / "cwd")                # relative paths would land here
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # ~/.cache
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))

    convert_and_train(ram)
    run("eval", f"--data_dir={ram}/data", f"--model_dir={ram}/model",
        f"--output_metrics_json={ram}/eval/m.json")
    run("export", f"--model_dir={ram}/model", f"--export_dir={ram}/serving")

    metrics, trained = read(f"{ram}/eval/m.json"), read(f"{local}/model/metrics.json")
    assert read(f"{ram}/model/metrics.json")["mAP"] == metrics["mAP"] == trained["mAP"]
    assert sum(trained["mAP"]) > 0     # (not trivially equal)
    assert metrics["source"]["data_dir"] == f"{ram}/data"
    detections = read(f"{ram}/eval/m_detections_test.json")
    assert detections == read(f"{local}/model/detections_test.json")
    assert metrics["detections"] == f"{ram}/eval/m_detections_test.json"
    assert rescore(ram, detections)["mAP"] == pytest.approx(metrics["mAP"], abs=1e-12)
    assert sorted(gfile.listdir(f"{ram}/data")) == sorted(os.listdir(f"{local}/data"))
    served = tf.saved_model.load(f"{ram}/serving/1")
    for key, value in served.signatures["serving_default"](**serving_inputs()).items():
        np.testing.assert_array_equal(value, local_outputs[key])
    assert local_writes == [], local_writes
    assert os.listdir(tmp_path / "cwd") == os.listdir(tmp_path / "home") == []
    # (tf.function's autograph writes its generated code to temporary files.)
    assert not [f for f in os.listdir(tmp_path / "tmp")
                if not f.startswith("__autograph_generated_file")]


# --- interrupted writes on ram:// ---------------------------------------------

def snapshot(root):
    """{relative path: bytes} of every file under `root`."""
    return {name: files.read_bytes(f"{root}/{name}") for name in files.tree(root)[1]}


class Crash(Exception):
    pass


def test_interrupted_metrics_write_keeps_the_previous_file(ram, monkeypatch):
    path = f"{ram}/eval/metrics.json"
    files.atomic_write_json(path, {"mAP": [0.5]})
    write = gfile.GFile.write

    def half_then_crash(self, data):
        write(self, data[:len(data) // 2])
        raise Crash

    monkeypatch.setattr(gfile.GFile, "write", half_then_crash)
    with pytest.raises(Crash):
        files.atomic_write_json(path, {"mAP": [0.75, 0.25]})
    monkeypatch.undo()
    assert gfile.listdir(f"{ram}/eval") == ["metrics.json"]
    assert files.read_json(path) == {"mAP": [0.5]}


def _dataset(path, videos, overwrite=False, crash_after=None):
    info = records.DatasetInfo(class_names=["a", "b"], streams=["rgb"], feature_dim=3)
    with writer.DatasetWriter(path, info, num_shards={"train": 2},
                               overwrite=overwrite) as out:
        for i, video in enumerate(videos):
            if i == crash_after:
                raise Crash
            out.add("train", video)


def _video(i, t):
    return records.Video(f"v{i}", {"rgb": np.full((t, 3), i, np.float32)}, [i % 2], t * 0.64)


def test_interrupted_conversion_keeps_the_previous_dataset(ram):
    _dataset(f"{ram}/data", [_video(i, 4) for i in range(3)])
    before = snapshot(f"{ram}/data")
    with pytest.raises(Crash):
        _dataset(f"{ram}/data", [_video(i, 9) for i in range(5)], overwrite=True, crash_after=4)
    assert snapshot(f"{ram}/data") == before
    assert gfile.listdir(ram) == ["data"]
    assert [v.num_segments for v in read_videos(f"{ram}/data", "train")] == [4, 4, 4]
    # Finished, the new dataset replaces the old one whole (no stale shard).
    _dataset(f"{ram}/data", [_video(i, 9) for i in range(1)], overwrite=True)
    assert sorted(gfile.listdir(f"{ram}/data")) == ["dataset.json",
                                                    "train-00000-of-00002.tfrecord"]
    assert [v.num_segments for v in read_videos(f"{ram}/data", "train")] == [9]


def test_interrupted_export_publishes_nothing_and_keeps_version_1(ram, tiny_model_dir,
                                                                 monkeypatch):
    models, settings, _ = model_dir_lib.load_models(tiny_model_dir)
    export = lambda **kw: saved_model.export_models(  # noqa: E731
        models, settings.class_names, f"{ram}/dgam", test_min_segments=4,
        test_max_segments=40, **kw)
    assert export() == f"{ram}/dgam/1"
    before = snapshot(f"{ram}/dgam/1")
    assert {"saved_model.pb", "variables/variables.index",
            "assets.extra/tf_serving_warmup_requests"} <= set(before)

    def crash(path, requests):   # after tf.saved_model.save wrote the version
        assert gfile.exists(os.path.join(os.path.dirname(os.path.dirname(path)),
                                         "saved_model.pb"))
        raise Crash

    monkeypatch.setattr(saved_model, "write_warmup_requests", crash)
    for kwargs in ({}, {"version": 1, "overwrite": True}):
        with pytest.raises(Crash):
            export(**kwargs)
        assert gfile.listdir(f"{ram}/dgam") == ["1"]     # no temporary left either
        assert snapshot(f"{ram}/dgam/1") == before


def test_interrupted_best_checkpoint_update_keeps_the_previous_best(
        tiny_data_dir, ram, monkeypatch):
    monkeypatch.setattr(lock, "SETTLE_SECONDS", 0.0)
    scores = iter([0.5, 0.75])

    class Evaluator:
        def __call__(self, models, data_dir, info, split, checkpoint=None, on_video=None):
            score = next(scores)
            return {"tiou_thresholds": [0.5], "mAP": [score], "average_mAP": score}

        def draw(self, *item):
            return None

    write_json = files.atomic_write_json

    def crash_on_second_best(path, obj):
        if path.endswith("best.json") and obj["epoch"] == 2:
            raise Crash     # inside the update: epoch 2's checkpoint is written
        write_json(path, obj)

    monkeypatch.setattr(files, "atomic_write_json", crash_on_second_best)
    model_dir = f"{ram}/model"
    with pytest.raises(Crash):
        cfg = tiny_config(tiny_data_dir, model_dir, eval_every=1, streams=["rgb"], gam=False)
        train_lib.train_and_evaluate(cfg.model_dir, cfg.data, cfg.model, cfg.train,
                                     Evaluator())
    assert files.read_json(f"{model_dir}/best/best.json") == {
        "epoch": 1, "split": "validation", "score": 0.5}
    reader = tf.compat.v1.train.NewCheckpointReader(f"{model_dir}/best/ckpt")
    assert reader.get_tensor("epoch/.ATTRIBUTES/VARIABLE_VALUE") == 1
    assert sorted(gfile.listdir(f"{ram}/model/best")) == [
        "best.json", "ckpt.data-00000-of-00001", "ckpt.index"]
    assert not [f for f in gfile.listdir(model_dir) if ".tmp-" in f]


def test_interrupted_publish_leaves_the_folder_unreadable_never_mixed(ram, monkeypatch):
    """A crash while the files are moved in (object stores: copies) leaves no
    dataset.json: the folder reads as missing, not as half old, half new."""
    _dataset(f"{ram}/data", [_video(i, 4) for i in range(3)])
    rename = gfile.rename
    monkeypatch.setattr(gfile, "rename", lambda src, dst, overwrite=False: (
        (_ for _ in ()).throw(Crash) if dst.endswith("00001-of-00002.tfrecord")
        else rename(src, dst, overwrite)))
    with pytest.raises(Crash):
        _dataset(f"{ram}/data", [_video(i, 9) for i in range(3)], overwrite=True)
    with pytest.raises(UserError, match="dataset metadata not found"):
        records.load_info(f"{ram}/data")


# --- the model-dir lock off local disk -----------------------------------------

def test_lock_object_refuses_a_second_run_and_takes_over_a_stale_one(ram, monkeypatch,
                                                                    capsys):
    monkeypatch.setattr(lock, "SETTLE_SECONDS", 0.0)
    model_dir, lock_path = f"{ram}/model", f"{ram}/model/{lock.LOCK_FILE}"
    assert not lock.is_held(model_dir)
    with lock.model_dir_lock(model_dir):
        held = files.read_json(lock_path)
        assert held["pid"] == os.getpid() and lock.is_held(model_dir)
        with pytest.raises(UserError, match=rf"another training run holds {model_dir} \(host "
                                            rf"{held['host']} pid {os.getpid()}, last heartbeat "
                                            r"0 s ago; taken over after 300 s"):
            with lock.model_dir_lock(model_dir):
                pass
    assert not gfile.exists(lock_path)      # released
    # A run that died 301 s after its last heartbeat left its lock behind.
    files.atomic_write_json(lock_path, {"owner": "dead", "host": "node7", "pid": 12,
                                      "heartbeat": held["heartbeat"] - 301})
    assert not lock.is_held(model_dir)     # stale: the next run takes it over
    monkeypatch.setattr(lock, "HEARTBEAT_SECONDS", 0.05)
    with lock.model_dir_lock(model_dir):
        taken = files.read_json(lock_path)
        assert taken["owner"] != "dead" and taken["pid"] == os.getpid()
        time.sleep(0.3)
        assert files.read_json(lock_path)["heartbeat"] > taken["heartbeat"]   # beating
    assert capsys.readouterr().err == (f"Taking over {model_dir} from a run that stopped "
                                       "(host node7 pid 12, last heartbeat 301 s ago)\n")


def test_a_run_whose_lock_was_taken_over_says_so_and_leaves_it(ram, monkeypatch, capsys):
    monkeypatch.setattr(lock, "SETTLE_SECONDS", 0.0)
    monkeypatch.setattr(lock, "HEARTBEAT_SECONDS", 0.05)
    lock_path = f"{ram}/model/{lock.LOCK_FILE}"
    other = {"owner": "other", "host": "node8", "pid": 34, "heartbeat": time.time()}
    with lock.model_dir_lock(f"{ram}/model"):
        files.atomic_write_json(lock_path, other)     # as if our heartbeat had stalled
        time.sleep(0.3)
        assert files.read_json(lock_path) == other    # no longer rewritten by us
    assert files.read_json(lock_path) == other        # nor removed
    assert capsys.readouterr().err.startswith(
        f"warning: {lock_path} was taken over by host node8 pid 34, last heartbeat 0 s ago; "
        "this run no longer holds its model dir")


def test_a_scheme_tensorflow_does_not_know_is_one_error_line():
    with pytest.raises(UserError, match=r"^cannot read nope://bucket/data: File system scheme "
                                        r"'nope' not implemented"):
        records.load_info("nope://bucket/data")
    with pytest.raises(UserError, match=r"^cannot write nope://bucket/m.json: File system "
                                        r"scheme 'nope' not implemented"):
        files.atomic_write_json("nope://bucket/m.json", {})
