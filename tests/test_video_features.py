"""Decoding by timestamp, the RGB preprocessing and TV-L1 flow
(dgam_tf/features/video.py, recipe.py)."""
import os

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2", reason="the `video` extra (opencv-contrib-python-headless)")

from dgam_tf.errors import UserError  # noqa: E402
from dgam_tf.features import recipe, video  # noqa: E402

I3D_DATA = os.path.join(os.path.dirname(__file__), "data", "i3d")


def write_video(path, num_frames, fps, size=(64, 48)):
    """An MJPG .avi whose frame i is flat grey 5 i (the index survives JPEG)."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, size)
    for i in range(num_frames):
        writer.write(np.full((size[1], size[0], 3), 5 * i, np.uint8))
    writer.release()


def test_a_30_fps_video_comes_out_at_25_fps_by_time(tmp_path):
    path = tmp_path / "v30.avi"
    write_video(path, 45, 30)          # 1.5 s
    decoded = video.Decoded(str(path), 25.0)
    indices = [int(round(frame.mean() / 5)) for frame in decoded]
    # Output frame k shows instant k / 25 s: source frame floor(k * 30 / 25),
    # for every k / 25 < 1.5 s.
    expected = [k * 30 // 25 for k in range(38)]
    assert indices == expected
    assert decoded.num_frames == 38 and decoded.duration == pytest.approx(1.5)


def test_a_slower_video_repeats_frames_by_time(tmp_path):
    path = tmp_path / "v10.avi"
    write_video(path, 10, 10)          # 1 s at 10 fps: each frame shown 2.5 times
    indices = [int(round(f.mean() / 5)) for f in video.Decoded(str(path), 25.0)]
    assert indices == [(k * 10) // 25 for k in range(25)]


def test_unreadable_and_missing_files_are_one_clear_error(tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video" * 100)
    with pytest.raises(UserError, match=r"bad\.mp4: unreadable"):
        list(video.Decoded(str(bad), 25.0))
    with pytest.raises(UserError, match="no such file"):
        list(video.Decoded(str(tmp_path / "absent.avi"), 25.0))


def test_rgb_input_is_the_resized_centre_crop_in_minus_one_to_one():
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (30, 50, 3), dtype=np.uint8)
    resized = recipe.resize_short_side(frame, 12)
    assert resized.shape == (12, 20, 3)
    frames = rng.integers(0, 256, (2, 7, 9, 3), dtype=np.uint8)
    out = recipe.rgb_input(frames, 4)
    # Margins 3 and 5: one row / two columns before, the rest after.
    np.testing.assert_allclose(out, frames[:, 1:5, 2:6].astype(np.float64) * 2 / 255 - 1,
                               atol=1e-6)
    assert out.dtype == np.float32


def smooth_texture(rng, size):
    """A random texture blurred so TV-L1 can follow it (sub-pixel content)."""
    noise = rng.uniform(0, 255, (size, size)).astype(np.float32)
    return cv2.GaussianBlur(noise, (0, 0), 2.0)


def test_tvl1_recovers_a_known_translation():
    rng = np.random.default_rng(1)
    big = smooth_texture(rng, 96)
    dx, dy = 3, -2
    first = big[16:80, 16:80]
    second = big[16 - dy:80 - dy, 16 - dx:80 - dx]   # content moved by (+dx, +dy)
    norm = lambda a: cv2.normalize(a, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
    flow = recipe.flow(recipe.tvl1(), norm(first), norm(second))
    interior = flow[12:-12, 12:-12]
    assert np.median(interior[..., 0]) == pytest.approx(dx, abs=0.2)
    assert np.median(interior[..., 1]) == pytest.approx(dy, abs=0.2)
    scaled = recipe.flow_input(flow[None] * 10, 64, 20.0)
    assert scaled.min() >= -1 and scaled.max() <= 1
    np.testing.assert_allclose(np.median(scaled[0, 12:-12, 12:-12, 0]), 1.0)  # 30 clipped to 20


def test_tvl1_on_the_sample_clip_matches_deepminds_flow():
    # DeepMind's sample (kinetics-i3d, Apache-2.0: tests/data/i3d/LICENSE):
    # flow frame i is the TV-L1 flow from RGB frame i to i + 1, stored as
    # (f + 1) / 2 * 255 in the red (x) and green (y) channels.
    _, rgb = cv2.imreadmulti(os.path.join(I3D_DATA, "v_CricketShot_g04_c01_rgb.gif"))
    _, flow = cv2.imreadmulti(os.path.join(I3D_DATA, "v_CricketShot_g04_c01_flow.gif"))
    solver, correlations = recipe.tvl1(), []
    for i in (10, 40, 70):
        gray = [recipe.grayscale(rgb[j][..., ::-1]) for j in (i, i + 1)]
        ours = recipe.flow_input(recipe.flow(solver, *gray)[None], 224, 20.0)[0]
        theirs = flow[i][..., [2, 1]].astype(np.float64) / 255 * 2 - 1   # BGR -> x, y
        correlations.append([np.corrcoef(ours[..., c].ravel(), theirs[..., c].ravel())[0, 1]
                             for c in (0, 1)])
    assert np.all(np.mean(correlations, axis=0) >= 0.75), correlations


def test_clip_flows_pair_each_frame_with_the_next_and_repeat_at_the_end():
    rng = np.random.default_rng(2)
    grays = [cv2.normalize(smooth_texture(rng, 32), None, 0, 255,
                           cv2.NORM_MINMAX).astype(np.uint8) for _ in range(4)]
    solver = recipe.tvl1()
    with_next = recipe.clip_flows(solver, grays[:3], grays[3])
    at_end = recipe.clip_flows(solver, grays[:3], None)
    for i in range(3):
        np.testing.assert_array_equal(with_next[i], solver.calc(grays[i], grays[i + 1], None))
    np.testing.assert_array_equal(at_end[:2], with_next[:2])
    np.testing.assert_array_equal(at_end[2], at_end[1])
