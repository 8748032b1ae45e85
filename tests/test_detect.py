"""--mode=detect on generated videos with a model trained on features
extracted from generated videos (conftest's fixtures), through the command
line: detections equal to --mode=eval's on the same features, the table,
the JSON, the timeline, the feature-provenance warnings and bad inputs."""
import json
import os
import shutil
import zlib

import pytest

pytest.importorskip("cv2", reason="the `video` extra (opencv-contrib-python-headless)")

from conftest import TINY_RECIPE, extracted_config, write_video  # noqa: E402
from dgam_tf.config import ModelConfig  # noqa: E402
from dgam_tf.features import extract as extract_lib  # noqa: E402
from dgam_tf.models import model_dir as model_dir_lib  # noqa: E402
from test_main import error_lines, run_cli  # noqa: E402

SAMPLING = ["--test_min_segments=2", "--test_max_segments=40"]   # extracted_config's


@pytest.fixture(scope="module")
def cli(videos, extracted_model, tmp_path_factory):
    """(tmp folder, {case: CliResult}) of every command below, in one subprocess."""
    folder, _, checkpoints = videos
    tmp = tmp_path_factory.mktemp("detect")
    model = shutil.copytree(extracted_model, tmp / "model")
    unknown = shutil.copytree(extracted_model, tmp / "unknown")   # trained on who knows what
    os.remove(unknown / model_dir_lib.FEATURES_FILE)
    small = tmp / "small"   # the built-in synthetic data's feature size
    small.mkdir()
    (small / model_dir_lib.SETTINGS_FILE).write_text(json.dumps(
        ModelConfig(feature_dim=256, class_names=("a", "b")).to_json()))
    write_video(tmp / "short.avi", 12, 2, 0)   # 10 frames at 25 fps
    (tmp / "broken.avi").write_bytes(b"RIFF" + b"\x00" * 300)
    weights = [f"--i3d_rgb_checkpoint={checkpoints['rgb']}",
               f"--i3d_flow_checkpoint={checkpoints['flow']}"]
    detect = ["--mode=detect", *TINY_RECIPE, *SAMPLING]
    video = f"--video={folder / 'run_b.avi'}"
    cases = {
        "detect": [*detect, video, f"--model_dir={model}", *weights, "--plot", "--plot_frames",
                   "--plot_min_score=-1", f"--output_detections_json={tmp / 'out' / 'd.json'}"],
        "unknown_then_short": [*detect, f"--video={tmp / 'short.avi'}", f"--model_dir={unknown}",
                               *weights],
        "differs_then_short": [*detect, "--resize_short_side=32", video,
                               f"--video={tmp / 'short.avi'}", f"--model_dir={model}", *weights,
                               f"--output_detections_json={tmp / 'partial.json'}"],
        "broken": [*detect, video, f"--video={tmp / 'broken.avi'}", f"--model_dir={model}",
                   *weights],
        "no_video": [*detect, f"--model_dir={model}", *weights],
        "missing_video": [*detect, f"--video={tmp / 'nowhere.avi'}", f"--model_dir={model}",
                          *weights],
        "feature_size": [*detect, video, f"--model_dir={small}", *weights],
        "no_flow_weights": [*detect, video, f"--model_dir={model}", weights[0]],
    }
    return tmp, run_cli([(cases, True)], tmp)


def eval_detections(extracted, model_dir, video_id):
    """The model's detections of a video of the extracted test split, by the
    path --mode=eval takes (records, tf.data sampling, inference.infer_split)."""
    from dgam_tf.localization import inference
    cfg = extracted_config(extracted, model_dir)
    data_dir, info, modules, _ = inference.restore(model_dir, cfg.data, cfg.evaluation)
    for video, _, detections in inference.infer_split(modules, data_dir, info, "test",
                                                      cfg.data, cfg.localization):
        if video["video_id"].decode() == video_id:
            return [(info.class_names[d.class_id], d.score, d.start, d.end) for d in detections]
    raise AssertionError(f"{video_id} is not in the test split")


def test_detect_equals_eval_on_the_same_features_and_prints_and_draws_them(
        cli, extracted, extracted_model):
    tmp, runs = cli
    result = runs["detect"]
    assert result.returncode == 0, result.stderr
    assert "warning" not in result.stderr   # the model's own recipe and weights
    results = json.load(open(tmp / "out" / "d.json"))["results"]
    assert list(results) == ["run_b"]
    found = [(d["label"], d["score"], *d["segment"]) for d in results["run_b"]]
    expected = eval_detections(extracted, extracted_model, "run_b")
    assert found and len(found) == len(expected)
    for got, want in zip(found, expected):
        assert got[0] == want[0] and got[1:] == pytest.approx(want[1:], abs=1e-5)
    duration = 58 / 30   # run_b: 58 frames at 30 fps
    assert all(0 <= start < end <= duration + 1e-6 for _, _, start, end in found)
    # The table: a heading, then the detections best first.
    lines = result.stdout.splitlines()
    heading = lines.index(f"run_b.avi: {duration:.2f} s, 3 segments, {len(found)} detection"
                          + "s" * (len(found) != 1))
    rows = [line.split() for line in lines[heading + 2:heading + 2 + len(found)]]
    best = sorted(found, key=lambda d: -d[1])
    assert rows == [[label, f"{start:.2f}", f"{end:.2f}", f"{score:.3f}"]
                    for label, score, start, end in best]
    png = tmp / "model" / "plots" / "run_b.png"
    assert f"Wrote {png}" in lines and f"Wrote {tmp / 'out' / 'd.json'}" in lines
    assert open(png, "rb").read(8) == b"\x89PNG\r\n\x1a\n"


def test_the_model_records_the_features_it_was_trained_on(videos, extracted, extracted_model):
    _, _, checkpoints = videos
    record = json.load(open(os.path.join(extracted, "dataset.json")))["features"]
    assert json.load(open(os.path.join(extracted_model, "features.json"))) == record
    assert record["recipe"] == {"fps": 25.0, "segment_frames": 16, "resize_short_side": 24,
                                "crop_size": 16, "flow_bound": 20.0}
    for stream, folder in checkpoints.items():
        # The CRC-32 of the index, then the data shard, as one byte string.
        data = b"".join(open(folder / name, "rb").read() for name in (
            "model.ckpt.index", "model.ckpt.data-00000-of-00001"))
        crc = zlib.crc32(data)
        assert record["weights"][stream] == {"path": str(folder), "name": f"{stream}_random",
                                             "crc32": f"{crc:08x}"}


def test_the_table_of_a_long_video_adds_m_ss_and_says_what_it_leaves_out():
    from dgam_tf.detect import detect, report
    from dgam_tf.localization.localize import Detection
    found = [Detection(0, 0.2, 5.0, 9.5), Detection(1, 0.9, 61.4, 75.0),
             Detection(0, 0.5, 119.6, 130.25)]
    video = detect.Detected("long", "/videos/long.mp4", 150.0, 234, 0.64, {}, found)
    assert report.table(video, ["HighJump", "Diving"], rows=2).splitlines() == [
        "long.mp4: 150.00 s, 234 segments, 3 detections",
        "  class      start  m:ss     end  m:ss   score",
        "  Diving     61.40  1:01   75.00  1:15   0.900",
        "  HighJump  119.60  2:00  130.25  2:10   0.500",
        "  ... 1 more in the JSON (--table_rows=2)"]
    short = video._replace(duration=20.0, detections=found[:1])
    assert report.table(short, ["HighJump", "Diving"], rows=2).splitlines()[1:] == [
        "  class      start     end   score", "  HighJump    5.00    9.50   0.200"]


def test_provenance_differences_name_each_field_and_stream():
    trained = {"recipe": {"fps": 25.0, "crop_size": 224},
               "weights": {"rgb": {"name": "rgb_imagenet", "crc32": "0000000a"}}}
    used = {"recipe": {"fps": 25.0, "crop_size": 16},
            "weights": {"rgb": {"name": "rgb_scratch", "crc32": "0000000b"},
                        "flow": {"name": "flow_imagenet", "crc32": "0000000c"}}}
    assert extract_lib.provenance_differences(trained, used) == [
        "crop_size 224 (trained) / 16 (here)",
        "rgb weights rgb_imagenet 0000000a (trained) / rgb_scratch 0000000b (here)",
        "flow weights none (trained) / flow_imagenet 0000000c (here)"]
    assert extract_lib.provenance_differences(used, used) == []


def warnings(result):
    return [line for line in result.stderr.splitlines() if line.startswith("warning:")]


def test_features_of_another_recipe_or_unknown_ones_are_one_warning_line(cli):
    tmp, runs = cli
    (differs,) = warnings(runs["differs_then_short"])
    assert differs == (f"warning: the model in {tmp / 'model'} was trained on other features "
                       "than detect computes: resize_short_side 24 (trained) / 32 (here); its "
                       "detections may be meaningless (use the recipe and weights of its "
                       "features.json)")
    (unknown,) = warnings(runs["unknown_then_short"])
    assert unknown.startswith(f"warning: {tmp / 'unknown'} does not record which features it "
                              "was trained on")
    assert ("fps 25, segment_frames 16, resize_short_side 24, crop_size 16, flow_bound 20 and "
            "weights rgb rgb_random ") in unknown


def test_a_bad_video_after_good_ones_keeps_their_detections(cli):
    tmp, runs = cli
    (line,) = error_lines(runs["differs_then_short"])
    assert line == (f"error: video {tmp}/short.avi: 10 frames at 25 fps, fewer than one segment "
                    f"of 16 (the detections of the 1 video(s) before it are in "
                    f"{tmp}/partial.json)")
    assert list(json.load(open(tmp / "partial.json"))["results"]) == ["run_b"]


@pytest.mark.parametrize("case, culprit", [
    ("unknown_then_short", "video {tmp}/short.avi: 10 frames at 25 fps, fewer than one "
                           "segment of 16"),
    ("broken", "video {tmp}/broken.avi: unreadable"),
    ("no_video", "--mode=detect needs --video=PATH"),
    ("missing_video", "--video {tmp}/nowhere.avi: no such file"),
    ("feature_size", "the model in {tmp}/small takes 256-d features, not I3D's 1024: "
                     "--mode=detect needs a model trained on I3D features"),
    ("no_flow_weights", "--mode=detect needs --i3d_flow_checkpoint"),
])
def test_bad_input_is_one_error_line(cli, case, culprit):
    tmp, runs = cli
    result = runs[case]
    assert result.returncode == 1 and "Traceback" not in result.stderr
    (line,) = error_lines(result)
    assert culprit.format(tmp=tmp) in line
    assert not os.path.exists(tmp / "model" / "detections_video.json")
