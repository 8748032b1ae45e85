"""Property-based tests (Hypothesis): randomly corrupted records and feature
files end in a clear UserError (or read back intact), never in another
exception, a hang or an out-of-memory."""
import io
import json
import os
import shutil

import hypothesis
import numpy as np
import pytest
import tensorflow as tf
from hypothesis import strategies as st

from conftest import read_videos, tfrecord_ends, tiny_config
from dgam_tf.data import converters, pipeline, records, scan, writer
from dgam_tf.errors import UserError

SETTINGS = hypothesis.settings(max_examples=15, deadline=None, derandomize=True,
                               suppress_health_check=list(hypothesis.HealthCheck))
D = 4


def _example(**fields):
    """A record Example from raw feature dicts (key -> ('bytes'|'float'|'int', values))."""
    make = {"bytes": lambda v: tf.train.Feature(bytes_list=tf.train.BytesList(value=v)),
            "float": lambda v: tf.train.Feature(float_list=tf.train.FloatList(value=v)),
            "int": lambda v: tf.train.Feature(int64_list=tf.train.Int64List(value=v))}
    return tf.train.Example(features=tf.train.Features(feature={
        k: make[kind](v) for k, (kind, v) in fields.items()})).SerializeToString()


def _good_fields(t=5):
    x = np.ones((t, D), np.float16).tobytes()
    return {"video_id": ("bytes", [b"v"]), "num_segments": ("int", [t]),
            "feature_dim": ("int", [D]), "seconds_per_segment": ("float", [0.64]),
            "duration": ("float", [t * 0.64]), "labels": ("int", [0]),
            "gt_start": ("float", []), "gt_end": ("float", []), "gt_label": ("int", []),
            "rgb": ("bytes", [x]), "flow": ("bytes", [x])}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """A valid 1-class, 2-stream dataset of three videos (one shard)."""
    out = str(tmp_path_factory.mktemp("hostile") / "ds")
    info = records.DatasetInfo(class_names=["a"], streams=["rgb", "flow"], feature_dim=D)
    with writer.DatasetWriter(out, info) as w:
        for i in range(3):
            w.add("train", records.Video(f"v{i}", {s: np.ones((5, D), np.float32)
                                                   for s in ("rgb", "flow")}, [0], 3.2))
    return out


def _read_all(data_dir, tmp_path):
    """Reads every video eagerly, then through the training pipeline."""
    info = records.load_info(data_dir)
    videos = list(read_videos(data_dir, "train", info))
    config = tiny_config(data_dir, tmp_path / "m", batch_size=1, num_segments=3)
    with pipeline.reading(data_dir, info, "train"):
        for _ in pipeline.train_dataset(data_dir, info, config.data, 0, 1,
                                        config.model.latent_dim):
            pass
    return videos


def _with_file(dataset, tmp_path, data):
    case = str(tmp_path / "case")
    shutil.rmtree(case, ignore_errors=True)
    shutil.copytree(dataset, case)
    with open(os.path.join(case, records.load_info(case).splits["train"]["files"][0]), "wb") as f:
        f.write(data)
    return case


def _raw(dataset):
    info = records.load_info(dataset)
    with open(os.path.join(dataset, info.splits["train"]["files"][0]), "rb") as f:
        return f.read()


@SETTINGS
@hypothesis.given(data=st.data())
def test_truncated_or_bit_flipped_shards(dataset, tmp_path_factory, data):
    raw = _raw(dataset)
    if data.draw(st.booleans(), "truncate"):
        corrupt = raw[:data.draw(st.integers(0, len(raw) - 1), "cut")]
    else:
        pos = data.draw(st.integers(0, len(raw) - 1), "byte")
        corrupt = raw[:pos] + bytes([raw[pos] ^ data.draw(st.integers(1, 255), "mask")]) + \
            raw[pos + 1:]
    tmp = tmp_path_factory.mktemp("c")
    case = _with_file(dataset, tmp, corrupt)
    try:
        videos = _read_all(case, tmp)
    except UserError as e:
        assert str(e) and "\n" not in str(e)
    else:   # A cut at a record boundary leaves fewer, intact videos.
        assert all(np.all(v.features["rgb"] == 1) for v in videos)


MUTATIONS = st.one_of(
    st.tuples(st.just("drop"), st.sampled_from(sorted(_good_fields()))),
    st.tuples(st.just("num_segments"), st.integers(-2**40, 2**62)),
    st.tuples(st.just("feature_dim"), st.integers(-5, 10**9)),
    st.tuples(st.just("rgb_bytes"), st.binary(max_size=64)),
    st.tuples(st.just("wrong_type"), st.sampled_from(["rgb", "num_segments", "video_id",
                                                      "labels", "duration"])),
    st.tuples(st.just("nan"), st.sampled_from([np.nan, np.inf, -np.inf])),
)


def _bad_example(mutation):
    """A serialized record with one field broken as `mutation` (MUTATIONS) says."""
    kind, value = mutation
    fields = _good_fields()
    if kind == "drop":
        del fields[value]
    elif kind in ("num_segments", "feature_dim"):
        fields[kind] = ("int", [value])
    elif kind == "rgb_bytes":
        fields["rgb"] = ("bytes", [value])
    elif kind == "wrong_type":
        fields[value] = ("float", [1.0]) if fields[value][0] != "float" else ("bytes", [b"x"])
    else:
        x = np.ones((5, D), np.float16)
        x[2, 1] = value
        fields["rgb"] = ("bytes", [x.tobytes()])
    return _example(**fields)


@SETTINGS
@hypothesis.given(mutation=MUTATIONS)
def test_records_with_bad_fields(dataset, tmp_path_factory, mutation):
    writer_path = tmp_path_factory.mktemp("r") / "shard"
    with tf.io.TFRecordWriter(str(writer_path)) as w:
        w.write(_bad_example(mutation))
    tmp = tmp_path_factory.mktemp("c")
    case = _with_file(dataset, tmp, open(writer_path, "rb").read())
    with pytest.raises(UserError) as e:
        _read_all(case, tmp)
    assert "corrupt record in" in str(e.value) and "\n" not in str(e.value)


@SETTINGS
@hypothesis.given(data=st.data())
def test_npy_dir_converter_with_hostile_feature_files(tmp_path_factory, data):
    src = tmp_path_factory.mktemp("npy")
    database = {f"v{i}": {"subset": "test", "duration": 3.2,
                          "annotations": [{"label": "a", "segment": [0.0, 1.0]}]}
                for i in range(2)}
    with open(src / "gt.json", "w") as f:
        json.dump({"database": database}, f)
    np.save(src / "v0.npy", np.ones((5, 2 * D), np.float32))
    kind = data.draw(st.sampled_from(["truncate", "flip", "dtype", "shape", "huge", "nan"]))
    good = np.ones((5, 2 * D), np.float32)
    path = src / "v1.npy"
    if kind == "dtype":
        np.save(path, np.array([["x"] * 2 * D] * 5))
    elif kind == "shape":
        np.save(path, np.ones(data.draw(st.lists(st.integers(0, 3), max_size=4)), np.float32))
    elif kind == "nan":
        good[data.draw(st.integers(0, 4)), 0] = np.nan
        np.save(path, good)
    else:
        np.save(path, good)
        raw = path.read_bytes()
        if kind == "truncate":
            raw = raw[:data.draw(st.integers(0, len(raw) - 1))]
        elif kind == "flip":
            pos = data.draw(st.integers(0, len(raw) - 1))
            raw = raw[:pos] + bytes([raw[pos] ^ 0xFF]) + raw[pos + 1:]
        else:  # A header declaring 8 * 10^13 elements over a tiny body.
            header = io.BytesIO()
            np.lib.format.write_array_header_1_0(header, {
                "descr": "<f4", "fortran_order": False, "shape": (10**13, 2 * D)})
            raw = header.getvalue() + good.tobytes()
        path.write_bytes(raw)
    out = tmp_path_factory.mktemp("out") / "ds"
    try:
        info = converters.convert("npy_dir", str(src), str(out))
    except UserError as e:
        assert str(e) and "\n" not in str(e)
        assert not out.exists()
    else:
        assert info.splits["test"]["num_videos"] == 2


@SETTINGS
@hypothesis.given(data=st.data(), mutation=MUTATIONS)
def test_skip_bad_records_keeps_exactly_the_good_videos(dataset, tmp_path_factory, data,
                                                        mutation):
    raw = _raw(dataset)
    ends = tfrecord_ends(raw)
    ids = ["v0", "v1", "v2"]
    kind = data.draw(st.sampled_from(["truncate", "flip", "insert"]), "kind")
    if kind == "truncate":
        cut = data.draw(st.integers(0, len(raw) - 1), "cut")
        corrupt, expected = raw[:cut], ids[:sum(e <= cut for e in ends)]
    elif kind == "flip":   # Any flipped byte fails a CRC: records before it stay.
        pos = data.draw(st.integers(0, len(raw) - 1), "byte")
        corrupt = raw[:pos] + bytes([raw[pos] ^ 0xA5]) + raw[pos + 1:]
        expected = ids[:sum(e <= pos for e in ends)]
    else:                  # A well-framed record with a bad field, among the good.
        at = data.draw(st.integers(0, 3), "at")
        serialized = [r.numpy() for r in tf.data.TFRecordDataset(
            os.path.join(dataset, records.load_info(dataset).splits["train"]["files"][0]))]
        serialized.insert(at, _bad_example(mutation))
        path = tmp_path_factory.mktemp("w") / "shard"
        with tf.io.TFRecordWriter(str(path)) as w:
            for s in serialized:
                w.write(s)
        corrupt, expected = path.read_bytes(), ids
    tmp = tmp_path_factory.mktemp("c")
    case = _with_file(dataset, tmp, corrupt)
    reports = []
    info = scan.skip_bad_records(case, records.load_info(case), report=reports.append)
    assert info.splits["train"]["num_videos"] == len(expected)
    assert len(reports) == 1   # every case here loses or adds a record
    config = tiny_config(case, tmp / "m", batch_size=1, num_segments=3)
    got = [v["video_id"].numpy().decode() for v in pipeline.eval_dataset(case, info, "train",
                                                                          config.data)]
    assert got == expected
    batches = list(pipeline.train_dataset(case, info, config.data, 0, 1,
                                          config.model.latent_dim)) if expected else []
    assert len(batches) == len(expected)
    assert all(np.all(b["rgb"].numpy() == 1) for b in batches)


def test_num_segments_that_wraps_around_int32_is_refused(dataset, tmp_path):
    """2^32 + 5 segments with the bytes of 5: a cast to int32 alone reads 5."""
    fields = _good_fields()
    fields["num_segments"] = ("int", [2**32 + 5])
    path = tmp_path / "shard"
    with tf.io.TFRecordWriter(str(path)) as w:
        w.write(_example(**fields))
    case = _with_file(dataset, tmp_path, path.read_bytes())
    with pytest.raises(UserError, match="corrupt record in .*num_segments is too large"):
        _read_all(case, tmp_path)


def test_a_record_with_nan_features_is_named_by_file_index_and_video(dataset, tmp_path):
    nan = np.ones((5, D), np.float16)
    nan[2, 1] = np.nan
    path = tmp_path / "shard"
    with tf.io.TFRecordWriter(str(path)) as w:
        w.write(_example(**_good_fields()))
        w.write(_example(**{**_good_fields(), "video_id": ("bytes", [b"clip_7"]),
                            "flow": ("bytes", [nan.tobytes()])}))
    case = _with_file(dataset, tmp_path, path.read_bytes())
    shard = os.path.join(case, records.load_info(case).splits["train"]["files"][0])
    with pytest.raises(UserError) as e:
        _read_all(case, tmp_path)
    assert str(e.value) == (f"corrupt record in {shard}, record 1 (video 'clip_7'): flow "
                            "features contain NaN or Inf")
