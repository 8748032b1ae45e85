"""Tests of dgam_tf/data/converters.py on tiny fake releases of each layout."""
import json
import os

import numpy as np
import pytest

from conftest import read_videos

from dgam_tf import flags as dgam_flags
from dgam_tf.config import STREAMS
from dgam_tf.data import converters, records
from dgam_tf.errors import UserError

D = 8


def _features(rng, t, d=D):
    return rng.uniform(0, 2, (t, d)).astype(np.float32)


def _as_stored(x):
    """What a float16 dataset gives back for float32 features `x`."""
    return x.astype(np.float16).astype(np.float32)


def _save_object_array(path, items):
    array = np.empty(len(items), dtype=object)
    array[:] = items
    np.save(path, array, allow_pickle=True)


# --- fake releases -----------------------------------------------------------

def make_dgam(root, names=("Alpha", "Beta", "Gamma"), columns=(0, 1, 2)):
    """A DGAM/STPN-layout release: 3 train videos, 2 test videos, 3 classes.

    Args:
      names: the label matrices' columns, in order.
      columns: the column of each of the 3 classes.

    Returns:
      {split: [(video_id, rgb, flow, labels, gt)]} of what the release holds
      (class ids are columns).
    """
    rng = np.random.default_rng(1)
    splits = {
        "train": [("train_1", 5, [0], []), ("train_2", 7, [1, 2], []),
                  ("train_3", 4, [2], [])],
        "test": [("video_test_01", 6, [0, 2], [(0.5, 1.5, 0), (2.0, 3.5, 2)]),
                 ("video_test_02", 9, [1], [(1.0, 5.76, 1)])],
    }
    splits = {split: [(video_id, t, [columns[c] for c in classes],
                       [(s, e, columns[c]) for s, e, c in gt])
                      for video_id, t, classes, gt in videos]
              for split, videos in splits.items()}
    expected = {}
    for split, videos in splits.items():
        folder = os.path.join(root, f"{split}_data")
        for stream in STREAMS:
            os.makedirs(os.path.join(folder, f"{stream}_features"))
        labels = np.zeros((len(videos), len(names)), np.float32)
        expected[split] = []
        for i, (video_id, t, classes, gt) in enumerate(videos):
            rgb, flow = _features(rng, t), _features(rng, t)
            np.save(os.path.join(folder, "rgb_features", f"{i + 1}.npy"), rgb)
            np.save(os.path.join(folder, "flow_features", f"{i + 1}.npy"), flow)
            labels[i, classes] = 1
            expected[split].append((video_id, rgb, flow, classes, gt))
        np.save(os.path.join(folder, f"{split}_labels.npy"), labels)
    with open(os.path.join(root, "test_data", "TINY_test_vid_list.txt"), "w") as f:
        f.write("".join(f"{v[0]}\n" for v in splits["test"]))
    # THUMOS14 style: strings for times, no durations.
    database = {video_id: {"subset": "test", "annotations": [
        {"label": names[c], "segment": [str(s), str(e)]} for s, e, c in gt]}
        for video_id, _, _, gt in splits["test"]}
    _write_json(os.path.join(root, "test_data", "gt.json"), {"database": database})
    return expected


def make_wtalc(root):
    """A W-TALC-layout release "Tiny": 2 validation (= train) and 2 test videos.

    Returns:
      [(video_id, split, joint [T, 2 D], labels, gt, duration)].
    """
    rng = np.random.default_rng(2)
    classes = ["Jump", "Run", "Swim"]
    videos = [("v_a", "validation", 6, ["Run"], [(0.2, 1.0, "Run")], 4.1),
              ("v_b", "test", 5, ["Jump", "Swim"], [(0.0, 1.1, "Swim"), (1.5, 2.5, "Jump")], 3.3),
              ("v_c", "validation", 4, ["Swim"], [], 2.6),
              ("v_d", "test", 7, ["Jump"], [(3.0, 4.4, "Jump")], 4.5)]
    joints = [_features(rng, t, 2 * D) for _, _, t, _, _, _ in videos]
    _save_object_array(os.path.join(root, "Tiny-I3D-JOINTFeatures.npy"), joints)
    annotations = os.path.join(root, "Tiny-Annotations")
    os.makedirs(annotations)
    np.save(os.path.join(annotations, "videoname.npy"), np.array([v[0].encode() for v in videos]))
    np.save(os.path.join(annotations, "subset.npy"), np.array([v[1].encode() for v in videos]))
    np.save(os.path.join(annotations, "classlist.npy"), np.array([c.encode() for c in classes]))
    np.save(os.path.join(annotations, "duration.npy"), np.array([v[5] for v in videos]))
    _save_object_array(os.path.join(annotations, "segments.npy"),
                       [[[s, e] for s, e, _ in v[4]] for v in videos])
    _save_object_array(os.path.join(annotations, "labels.npy"),
                       [[l for _, _, l in v[4]] for v in videos])
    _save_object_array(os.path.join(annotations, "labels_all.npy"), [v[3] for v in videos])
    split = {"validation": "train", "test": "test"}
    return [(video_id, split[subset], joint, sorted(classes.index(c) for c in labels),
             [(s, e, classes.index(l)) for s, e, l in gt], duration)
            for (video_id, subset, _, labels, gt, duration), joint in zip(videos, joints)]


def make_npy_dir(root, width=2 * D):
    """A per-video .npy folder with an ActionFormer-style JSON (3 videos, 2 classes).

    Returns:
      {video_id: (split, features [T, width], fps or None, duration or None, gt)}.
    """
    rng = np.random.default_rng(3)
    videos = {
        "clip_1": ("Validation", 10, 30.0, 1.4, [(0.1, 0.9, "kick")]),
        "clip_2": ("Validation", 15, None, None, [(0.0, 0.5, "wave"), (1.0, 2.0, "kick")]),
        "clip_3": ("Test", 8, 30.0, 1.1, [(0.2, 0.6, "wave")]),
    }
    database = {}
    expected = {}
    for video_id, (subset, t, fps, duration, gt) in videos.items():
        x = _features(rng, t, width)
        np.save(os.path.join(root, f"{video_id}.npy"), x)
        entry = {"subset": subset, "annotations": [
            {"label": l, "segment": [s, e], "label_id": 9} for s, e, l in gt]}
        if fps:
            entry["fps"] = fps
        if duration:
            entry["duration"] = duration
        database[video_id] = entry
        expected[video_id] = ({"Validation": "train", "Test": "test"}[subset], x, fps,
                              duration, [(s, e, ["kick", "wave"].index(l)) for s, e, l in gt])
    _write_json(os.path.join(root, "annotations.json"), {"version": "x", "database": database})
    return expected


def _write_json(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f)


def _read(out, split):
    return {v.video_id: v for v in read_videos(str(out), split)}


def _assert_gt(video, gt):
    assert len(video.gt) == len(gt)
    for (s, e, c), (es, ee, ec) in zip(video.gt, gt):
        assert (s, e, c) == (pytest.approx(es, abs=1e-5), pytest.approx(ee, abs=1e-5), ec)


# --- conversions that succeed -------------------------------------------------

def test_dgam_round_trip(tmp_path):
    src, out = tmp_path / "src", tmp_path / "out"
    expected = make_dgam(src)
    info = converters.convert("dgam", str(src), str(out))
    assert info.class_names == ["Alpha", "Beta", "Gamma"]
    assert (info.feature_dim, info.feature_dtype, info.streams) == (D, "float16", ["rgb", "flow"])
    assert records.load_info(str(out)) == info
    for split, videos in expected.items():
        got = _read(out, split)
        assert sorted(got) == sorted(v[0] for v in videos)
        for video_id, rgb, flow, labels, gt in videos:
            video = got[video_id]
            np.testing.assert_array_equal(video.features["rgb"], _as_stored(rgb))
            np.testing.assert_array_equal(video.features["flow"], _as_stored(flow))
            assert video.labels == labels
            # No durations in gt.json: T * 16 / 25 seconds.
            assert video.duration == pytest.approx(len(rgb) * 0.64, rel=1e-6)
            assert video.seconds_per_segment == pytest.approx(0.64)
            _assert_gt(video, gt)


def test_dgam_class_names_file_sets_the_column_order(tmp_path):
    src, out = tmp_path / "src", tmp_path / "out"
    make_dgam(src)
    names = tmp_path / "classes.txt"
    names.write_text("Alpha\nBeta\nGamma\n")
    assert converters.convert("dgam", str(src), str(out), class_names=str(names),
                              feature_dtype="float32").class_names == ["Alpha", "Beta", "Gamma"]
    # Another order no longer matches the multi-hot columns of the ground truth.
    names.write_text("Beta\nAlpha\nGamma\n")
    with pytest.raises(UserError, match="video_test_01.*class order"):
        converters.convert("dgam", str(src), str(tmp_path / "out2"), class_names=str(names))
    assert not (tmp_path / "out2").exists()


THUMOS14 = ["BaseballPitch", "BasketballDunk", "Billiards", "CleanAndJerk", "CliffDiving",
            "CricketBowling", "CricketShot", "Diving", "FrisbeeCatch", "GolfSwing",
            "HammerThrow", "HighJump", "JavelinThrow", "LongJump", "PoleVault", "Shotput",
            "SoccerPenalty", "TennisSwing", "ThrowDiscus", "VolleyballSpiking"]


@pytest.mark.parametrize("num_columns, columns, names", [
    (20, (4, 9, 19), ["CliffDiving", "GolfSwing", "VolleyballSpiking"]),
    (100, (0, 37, 98), ["Archery", "Layup drill in basketball", "Wrapping presents"])])
def test_dgam_falls_back_to_the_release_class_order(tmp_path, num_columns, columns, names):
    # The ground truth names 3 of the classes: the release's THUMOS14 /
    # ActivityNet 1.2 column order applies.
    release = [f"unused {c}" for c in range(num_columns)]
    for c, name in zip(columns, names):
        release[c] = name
    src, out = tmp_path / "src", tmp_path / "out"
    expected = make_dgam(src, release, columns)
    info = converters.convert("dgam", str(src), str(out))
    assert len(info.class_names) == num_columns
    assert [info.class_names[c] for c in columns] == names
    if num_columns == 20:
        assert info.class_names == THUMOS14
    for split, videos in expected.items():
        got = _read(out, split)
        for video_id, _, _, labels, gt in videos:
            assert got[video_id].labels == labels
            _assert_gt(got[video_id], gt)


def test_dgam_without_a_known_class_order_needs_class_names(tmp_path):
    src = tmp_path / "src"
    make_dgam(src, [f"c{i:02d}" for i in range(20)], (0, 1, 2))
    _assert_fails(tmp_path / "out", "name 3 classes", "20 columns", "--class_names",
                  source_format="dgam", source_dir=str(src))


def test_dgam_one_stream_needs_only_its_folders(tmp_path):
    src, out = tmp_path / "src", tmp_path / "out"
    expected = make_dgam(src)
    for split in ("train", "test"):
        os.rename(src / f"{split}_data" / "flow_features", tmp_path / f"{split}_flow")
    info = converters.convert("dgam", str(src), str(out), stream="rgb")
    assert info.streams == ["rgb"]
    video = _read(out, "test")["video_test_02"]
    assert list(video.features) == ["rgb"]
    np.testing.assert_array_equal(video.features["rgb"], _as_stored(expected["test"][1][1]))


def test_wtalc_round_trip(tmp_path):
    src, out = tmp_path / "src", tmp_path / "out"
    src.mkdir()
    expected = make_wtalc(src)
    info = converters.convert("wtalc", str(src), str(out), allow_pickle=True,
                              feature_dtype="float32")
    assert info.class_names == ["Jump", "Run", "Swim"]
    assert info.feature_dim == D
    got = {**_read(out, "train"), **_read(out, "test")}
    assert [v.video_id for v in read_videos(str(out), "train")] == ["v_a", "v_c"]
    for video_id, _, joint, labels, gt, duration in expected:
        video = got[video_id]
        np.testing.assert_array_equal(video.features["rgb"], joint[:, :D])
        np.testing.assert_array_equal(video.features["flow"], joint[:, D:])
        assert video.labels == labels
        assert video.duration == pytest.approx(duration, rel=1e-6)
        _assert_gt(video, gt)


def test_npy_dir_joint_round_trip_with_json_fps(tmp_path):
    src, out = tmp_path / "src", tmp_path / "out"
    src.mkdir()
    expected = make_npy_dir(src)
    info = converters.convert("npy_dir", str(src), str(out), stride=4, fps=25.0)
    assert info.class_names == ["kick", "wave"]
    assert info.streams == ["rgb", "flow"]
    got = {**_read(out, "train"), **_read(out, "test")}
    for video_id, (split, x, fps, duration, gt) in expected.items():
        video = got[video_id]
        assert video_id in _read(out, split)
        np.testing.assert_array_equal(video.features["rgb"], _as_stored(x[:, :D]))
        np.testing.assert_array_equal(video.features["flow"], _as_stored(x[:, D:]))
        # The JSON's fps wins over the flag; without one the flag's 25 counts.
        seconds_per_segment = 4 / (fps or 25.0)
        assert video.seconds_per_segment == pytest.approx(seconds_per_segment)
        assert video.duration == pytest.approx(duration or len(x) * seconds_per_segment)
        assert video.labels == sorted({c for _, _, c in gt})
        _assert_gt(video, gt)


def test_npy_dir_single_stream(tmp_path):
    src, out = tmp_path / "src", tmp_path / "out"
    src.mkdir()
    expected = make_npy_dir(src, width=D)
    info = converters.convert("npy_dir", str(src), str(out), stream="flow",
                              annotations=str(src / "annotations.json"))
    assert (info.streams, info.feature_dim) == (["flow"], D)
    video = _read(out, "test")["clip_3"]
    assert list(video.features) == ["flow"]
    np.testing.assert_array_equal(video.features["flow"], _as_stored(expected["clip_3"][1]))


def test_npy_dir_one_stream_of_joint_files_needs_its_feature_size(tmp_path, capsys):
    src = tmp_path / "src"
    src.mkdir()
    expected = make_npy_dir(src)      # rgb and flow side by side, [T, 2 D]
    info = converters.convert("npy_dir", str(src), str(tmp_path / "rgb"), stream="rgb",
                              feature_dim=D)
    assert (info.streams, info.feature_dim) == (["rgb"], D)
    video = _read(tmp_path / "rgb", "test")["clip_3"]
    np.testing.assert_array_equal(video.features["rgb"], _as_stored(expected["clip_3"][1][:, :D]))
    # Without it, a file is the stream alone: the whole width, as the note says.
    cfg = dgam_flags.parse_args(["--mode=convert", "--source_format=npy_dir", "--streams=flow",
                                 f"--source_dir={src}", f"--data_dir={tmp_path / 'whole'}"])
    converters.run(cfg)
    assert records.load_info(str(tmp_path / "whole")).feature_dim == 2 * D
    assert capsys.readouterr().out.splitlines()[-1] == (
        f"note: each .npy was read as the flow stream alone, D = {2 * D}; for rgb and flow side "
        f"by side [T, 2 D], convert again with --feature_dim={D} to take the flow half, or "
        "without --streams to keep both")


# --- errors: each names the culprit and leaves no output ----------------------

def _assert_fails(out, *patterns, **convert_args):
    with pytest.raises(UserError) as raised:
        converters.convert(out_dir=str(out), **convert_args)
    for pattern in patterns:
        assert pattern in str(raised.value), str(raised.value)
    assert not os.path.exists(out)
    assert not [f for f in os.listdir(os.path.dirname(out)) if f.startswith(".out")]


def test_missing_folder(tmp_path):
    src = tmp_path / "src"
    make_dgam(src)
    os.rename(src / "test_data" / "flow_features", src / "test_data" / "flows")
    _assert_fails(tmp_path / "out", "missing folder", os.path.join("test_data", "flow_features"),
                  source_format="dgam", source_dir=str(src))


def test_missing_file(tmp_path):
    src = tmp_path / "src"
    make_dgam(src)
    # Same number of files, but 2.npy is absent.
    os.rename(src / "train_data" / "rgb_features" / "2.npy",
              src / "train_data" / "rgb_features" / "7.npy")
    _assert_fails(tmp_path / "out", "missing file", os.path.join("rgb_features", "2.npy"),
                  source_format="dgam", source_dir=str(src))


def test_wrong_feature_size(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    make_npy_dir(src, width=2 * D + 1)
    _assert_fails(tmp_path / "out", "clip_1.npy", "even width",
                  source_format="npy_dir", source_dir=str(src))


def test_videos_with_different_feature_sizes(tmp_path):
    src = tmp_path / "src"
    make_dgam(src)
    np.save(src / "train_data" / "flow_features" / "2.npy", np.ones((7, D - 2), np.float32))
    _assert_fails(tmp_path / "out", os.path.join("flow_features", "2.npy"), "'train_2'",
                  f"feature size {D - 2}", source_format="dgam", source_dir=str(src))


def test_nan_features(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    make_npy_dir(src)
    x = np.load(src / "clip_2.npy")
    x[3, 1] = np.nan
    np.save(src / "clip_2.npy", x)
    _assert_fails(tmp_path / "out", "clip_2", "NaN or Inf",
                  source_format="npy_dir", source_dir=str(src))


def test_zero_length_video(tmp_path):
    src = tmp_path / "src"
    make_dgam(src)
    np.save(src / "test_data" / "rgb_features" / "2.npy", np.zeros((0, D), np.float32))
    _assert_fails(tmp_path / "out", "'video_test_02'", "zero-length",
                  source_format="dgam", source_dir=str(src))


def test_unknown_label_name(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    make_wtalc(src)
    labels_all = np.load(src / "Tiny-Annotations" / "labels_all.npy", allow_pickle=True)
    labels_all[2] = ["Swim", "Fly"]
    _save_object_array(src / "Tiny-Annotations" / "labels_all.npy", list(labels_all))
    _assert_fails(tmp_path / "out", "'v_c'", "unknown label name 'Fly'", "labels_all.npy",
                  source_format="wtalc", source_dir=str(src), allow_pickle=True)


def test_segment_outside_video(tmp_path):
    src = tmp_path / "src"
    make_dgam(src)
    gt = json.loads((src / "test_data" / "gt.json").read_text())
    # video_test_02 has 9 segments: 5.76 s, plus one segment of slack.
    gt["database"]["video_test_02"]["annotations"][0]["segment"] = ["3.0", "6.5"]
    _write_json(src / "test_data" / "gt.json", gt)
    _assert_fails(tmp_path / "out", "'video_test_02'", "outside the video",
                  source_format="dgam", source_dir=str(src))


@pytest.mark.parametrize("culprit", ["labels", "vid_list"])
def test_count_mismatch(tmp_path, culprit):
    src = tmp_path / "src"
    make_dgam(src)
    if culprit == "labels":
        np.save(src / "test_data" / "test_labels.npy", np.eye(3, dtype=np.float32))
        patterns = ["count mismatch", "test_labels.npy"]
    else:
        (src / "test_data" / "TINY_test_vid_list.txt").write_text("video_test_01\n")
        patterns = ["count mismatch", "TINY_test_vid_list.txt", "1 videos"]
    _assert_fails(tmp_path / "out", *patterns, source_format="dgam", source_dir=str(src))


def test_wtalc_count_mismatch(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    make_wtalc(src)
    np.save(src / "Tiny-Annotations" / "duration.npy", np.array([1.0, 2.0, 3.0]))
    _assert_fails(tmp_path / "out", "count mismatch", "duration.npy", "4 videos",
                  source_format="wtalc", source_dir=str(src), allow_pickle=True)


def test_pickle_needs_allow_pickle(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    make_wtalc(src)
    _assert_fails(tmp_path / "out", "--allow_pickle", "run code",
                  os.path.join("Tiny-Annotations", "segments.npy"),
                  source_format="wtalc", source_dir=str(src))


def test_existing_output_is_kept(tmp_path):
    src, out = tmp_path / "src", tmp_path / "out"
    make_dgam(src)
    out.mkdir()
    (out / "keep.txt").write_text("x")
    with pytest.raises(UserError, match="already exists.*pass --overwrite"):
        converters.convert("dgam", str(src), str(out))
    assert os.listdir(out) == ["keep.txt"]
