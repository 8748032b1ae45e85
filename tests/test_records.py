"""Tests of dgam_tf/data/records.py: round trips, validation, atomic writes, corruption."""
import dataclasses
import json
import os
import re

import numpy as np
import pytest

from conftest import read_videos, tfrecord_ends

from dgam_tf.data import records, writer
from dgam_tf.errors import UserError

D = 6


def _info(feature_dtype="float16"):
    return records.DatasetInfo(class_names=["a", "b", "c"], streams=["rgb", "flow"],
                               feature_dim=D, feature_dtype=feature_dtype, name="tiny")


def _video(video_id="v0", t=5, labels=(1,), gt=((0.5, 1.5, 1),), seed=0):
    rng = np.random.default_rng(seed)
    return records.Video(
        video_id=video_id,
        features={"rgb": rng.normal(0, 3, (t, D)).astype(np.float32),
                  "flow": rng.normal(0, 3, (t, D)).astype(np.float32)},
        labels=list(labels), duration=t * 0.64, gt=list(gt))


def _write(out, videos, feature_dtype="float16", num_shards=1, split="train"):
    info = _info(feature_dtype)
    with writer.DatasetWriter(str(out), info, num_shards={split: num_shards}) as out:
        for video in videos:
            out.add(split, video)
    return info


@pytest.mark.parametrize("feature_dtype", ["float16", "float32"])
def test_round_trip(tmp_path, feature_dtype):
    videos = [_video("with_gt", t=7, labels=[0, 2], gt=[(0.0, 1.28, 0), (2.5, 4.48, 2)]),
              _video("without_gt", t=3, labels=[1], gt=[], seed=1)]
    _write(tmp_path / "d", videos, feature_dtype)
    info = records.load_info(str(tmp_path / "d"))
    assert info == dataclasses.replace(
        _info(feature_dtype), splits={"train": {"files": ["train-00000-of-00001.tfrecord"],
                                                "num_videos": 2}})
    got = list(read_videos(str(tmp_path / "d"), "train"))
    assert [v.video_id for v in got] == ["with_gt", "without_gt"]
    for want, have in zip(videos, got):
        for stream in ("rgb", "flow"):
            expected = want.features[stream].astype(feature_dtype).astype(np.float32)
            assert have.features[stream].dtype == np.float32
            np.testing.assert_array_equal(have.features[stream], expected)
        assert have.labels == want.labels
        assert have.duration == pytest.approx(want.duration, rel=1e-6)
        assert have.seconds_per_segment == pytest.approx(0.64)
        assert have.gt == [(pytest.approx(s), pytest.approx(e), c) for s, e, c in want.gt]
    if feature_dtype == "float16":
        # float16 really loses precision: the test above is not vacuous.
        assert not np.array_equal(got[0].features["rgb"], videos[0].features["rgb"])


def test_the_features_provenance_is_written_only_when_known(tmp_path):
    _write(tmp_path / "unknown", [_video()])
    assert "features" not in json.load(open(tmp_path / "unknown" / "dataset.json"))
    assert records.load_info(str(tmp_path / "unknown")).features is None
    known = {"recipe": {"fps": 25.0}, "weights": {"rgb": {"name": "w", "crc32": "0000002a"}}}
    with writer.DatasetWriter(str(tmp_path / "known"), dataclasses.replace(
            _info(), features=known), num_shards={"train": 1}) as out:
        out.add("train", _video())
    assert json.load(open(tmp_path / "known" / "dataset.json"))["features"] == known
    assert records.load_info(str(tmp_path / "known")).features == known


def test_shards_round_robin_and_empty_shards_dropped(tmp_path):
    videos = [_video(f"v{i}", seed=i) for i in range(3)]
    info = _write(tmp_path / "d", videos, num_shards=2)
    assert info.splits["train"] == {"files": ["train-00000-of-00002.tfrecord",
                                              "train-00001-of-00002.tfrecord"], "num_videos": 3}
    assert [v.video_id for v in read_videos(str(tmp_path / "d"), "train")] == [
        "v0", "v2", "v1"]
    info = _write(tmp_path / "e", videos[:1], num_shards=4)
    assert info.splits["train"]["files"] == ["train-00000-of-00004.tfrecord"]
    assert sorted(os.listdir(tmp_path / "e")) == ["dataset.json", "train-00000-of-00004.tfrecord"]


def _set_features(video, stream, x):
    video.features[stream] = x


@pytest.mark.parametrize("spoil, message", [
    (lambda v: _set_features(v, "flow", np.ones((5, D + 1), np.float32)), "feature size is 7"),
    (lambda v: v.features["rgb"].__setitem__((2, 3), np.nan), "NaN or Inf"),
    (lambda v: v.features["rgb"].__setitem__((1, 1), np.inf), "NaN or Inf"),
    (lambda v: v.features["rgb"].__setitem__((0, 0), 1e5), "float16 range"),
    (lambda v: _set_features(v, "rgb", np.ones((0, D), np.float32)), "zero segments"),
    (lambda v: _set_features(v, "flow", np.ones((4, D), np.float32)), "different lengths"),
    (lambda v: v.features.pop("flow"), "has streams ['rgb']"),
    (lambda v: v.labels.append(3), "label id 3 outside 0..2"),
    (lambda v: v.gt.append((0.0, 4.0, 1)), "outside the video"),  # 5 segments: 3.2 s
    (lambda v: v.gt.append((1.0, 1.0, 1)), "or is empty"),
    (lambda v: v.gt.append((0.0, 1.0, 5)), "ground-truth label id 5"),
])
def test_validate_video_names_the_video_and_the_problem(spoil, message):
    video = _video("culprit")
    records.validate_video(video, _info())  # the unspoilt video is fine
    spoil(video)
    with pytest.raises(UserError) as raised:
        records.validate_video(video, _info())
    assert "'culprit'" in str(raised.value) and message in str(raised.value)


def test_ground_truth_may_overhang_by_one_segment():
    video = _video(t=5, gt=[(2.0, 3.2 + 0.6, 1)])
    records.validate_video(video, _info())


def test_failed_block_leaves_no_folder(tmp_path):
    with pytest.raises(UserError, match="'bad'"):
        with writer.DatasetWriter(str(tmp_path / "d"), _info()) as out:
            out.add("train", _video("good"))
            out.add("train", _video("bad", labels=[7]))
    with pytest.raises(RuntimeError):
        with writer.DatasetWriter(str(tmp_path / "d"), _info()) as out:
            out.add("train", _video("good"))
            raise RuntimeError("interrupted")
    assert os.listdir(tmp_path) == []  # no folder, no temporary left behind


def test_duplicate_video_in_a_split_is_refused(tmp_path):
    with pytest.raises(UserError, match="'v' appears twice in split 'test'"):
        with writer.DatasetWriter(str(tmp_path / "d"), _info()) as out:
            out.add("test", _video("v"))
            out.add("test", _video("v"))
    assert not (tmp_path / "d").exists()


def test_existing_folder_is_not_overwritten(tmp_path):
    _write(tmp_path / "d", [_video("old")])
    before = {f: (tmp_path / "d" / f).read_bytes() for f in os.listdir(tmp_path / "d")}
    with pytest.raises(UserError, match="already exists.*pass --overwrite"):
        _write(tmp_path / "d", [_video("new")])
    assert {f: (tmp_path / "d" / f).read_bytes() for f in os.listdir(tmp_path / "d")} == before
    with writer.DatasetWriter(str(tmp_path / "d"), _info(), overwrite=True) as out:
        out.add("test", _video("new"))
    assert [v.video_id for v in read_videos(str(tmp_path / "d"), "test")] == ["new"]
    assert "train" not in records.load_info(str(tmp_path / "d")).splits


def test_load_info_errors(tmp_path):
    with pytest.raises(UserError, match="data folder not found"):
        records.load_info(str(tmp_path / "nowhere"))
    _write(tmp_path / "d", [_video()])
    shard = tmp_path / "d" / "train-00000-of-00001.tfrecord"
    os.rename(shard, tmp_path / "shard")
    with pytest.raises(UserError, match="split 'train' is missing: .*train-00000-of-00001"):
        records.load_info(str(tmp_path / "d"))
    os.remove(tmp_path / "d" / "dataset.json")
    with pytest.raises(UserError, match="dataset metadata not found: .*dataset.json"):
        records.load_info(str(tmp_path / "d"))


def test_load_info_rejects_other_versions_and_unknown_splits(tmp_path):
    _write(tmp_path / "d", [_video()])
    path = tmp_path / "d" / "dataset.json"
    raw = json.loads(path.read_text())
    path.write_text(json.dumps(dict(raw, format_version=99)))
    with pytest.raises(UserError, match="version 99"):
        records.load_info(str(tmp_path / "d"))
    path.write_text(json.dumps(raw))
    with pytest.raises(UserError, match="no 'test' split .*has: train"):
        list(read_videos(str(tmp_path / "d"), "test"))


def test_truncated_record_file_names_the_file(tmp_path):
    _write(tmp_path / "d", [_video("v0"), _video("v1", seed=1)])
    shard = tmp_path / "d" / "train-00000-of-00001.tfrecord"
    data = shard.read_bytes()
    shard.write_bytes(data[:len(data) - 100])
    videos = records.read_videos_from_file(str(shard), records.load_info(str(tmp_path / "d")))
    assert next(videos).video_id == "v0"
    second = tfrecord_ends(data)[0]   # where the cut record starts
    with pytest.raises(UserError, match=re.escape(
            f"corrupt record in {shard}, record 1: the file ends inside it (cut at byte "
            f"{second})")):
        next(videos)



def _varint(data, pos):
    """(value, next position) of the protobuf varint at `pos`."""
    value, shift = 0, 0
    while True:
        byte = data[pos]
        value |= (byte & 0x7F) << shift
        pos, shift = pos + 1, shift + 7
        if byte < 0x80:
            return value, pos


def _fields(data):
    """(field number, bytes) of each length-delimited field, in wire order."""
    pos, out = 0, []
    while pos < len(data):
        tag, pos = _varint(data, pos)
        assert tag & 7 == 2, "only length-delimited fields expected here"
        size, pos = _varint(data, pos)
        out.append((tag >> 3, data[pos:pos + size]))
        pos += size
    return out


def test_records_are_serialized_deterministically():
    # Without deterministic serialization, protobuf writes the Features map in
    # its hash table's order, which changes from process to process (so two
    # --mode=synth runs differed). Read the key order off the wire format:
    # Example.features (1) -> Features.feature (1, map entries) -> key (1).
    encoded = records.encode_video(_video())
    [(_, features)] = _fields(encoded)
    keys = [dict(_fields(entry))[1].decode() for _, entry in _fields(features)]
    assert keys == sorted([*records.EXAMPLE_SPEC, "rgb", "flow"])


def test_same_videos_give_byte_identical_datasets(tmp_path):
    videos = [_video(f"v{i}", seed=i) for i in range(2)]
    reordered = [dataclasses.replace(v, features=dict(reversed(list(v.features.items()))))
                 for v in videos]
    _write(tmp_path / "a", videos)
    _write(tmp_path / "b", reordered)
    for name in ("train-00000-of-00001.tfrecord", "dataset.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
