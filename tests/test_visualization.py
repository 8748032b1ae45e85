"""Timelines of a video's localization: the drawn data against numpy on
hand-made videos (a 20 s clip and a 3-minute video with dozens of
detections), --plot_min_score, colours, score labels, the time axis,
thumbnails, PNG files and summary images, --mode=visualize's plot_model_dir,
and the images the periodic validation of --mode=train writes."""
import glob
import os
import shutil

import matplotlib.colors
import matplotlib.image
import numpy as np
import pytest
import tensorflow as tf

from conftest import read_videos, tiny_config
from dgam_tf import flags as dgam_flags
from dgam_tf.errors import UserError
from dgam_tf.localization.localize import Detection, StreamOutput
from dgam_tf.training import train_lib
from dgam_tf.visualization import plots, timeline

CLASS_NAMES = ["a", "b", "c"]
# T = 10 segments of 0.5 s sampled at n = 4 positions: position i is at
# i * 10 * 0.5 / 4 = 1.25 i seconds.
VIDEO = {"video_id": b"hand_made", "num_segments": np.int32(10),
         "seconds_per_segment": np.float32(0.5), "duration": np.float32(5.0),
         "labels": np.array([1, 2]), "gt_start": np.array([1.0, 3.0, 0.5]),
         "gt_end": np.array([2.5, 4.5, 1.0]), "gt_label": np.array([1, 1, 2])}
OUTPUTS = {
    # p > 0.1 for classes 1 and 2.
    "rgb": StreamOutput(attention=np.array([0.1, 0.9, 0.8, 0.2], np.float32),
                        class_probs=np.array([0.05, 0.7, 0.2], np.float32),
                        tcam=np.array([[1, -2, 0.5], [0, 3, -1], [2, 1, 4], [-3, -1, 0]],
                                      np.float32)),
    # No p > 0.1: the argmax, class 0, alone.
    "flow": StreamOutput(attention=np.array([0.5, 0.6, 0.3, 0.0], np.float32),
                         class_probs=np.array([0.08, 0.05, 0.02], np.float32),
                         tcam=np.array([[2, 0, 0], [-1, 0, 0], [0, 0, 0], [5, 0, 0]],
                                       np.float32)),
}
DETECTIONS = [Detection(1, 0.42, 1.0, 2.5), Detection(2, -0.05, 3.0, 4.0)]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_size(data):
    """(width, height) from a PNG's IHDR chunk."""
    assert data[:8] == PNG_SIGNATURE and data[12:16] == b"IHDR"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-np.asarray(x, np.float64)))


def test_timeline_arguments_are_the_video_in_seconds():
    args = plots.timeline_arguments(VIDEO, OUTPUTS, DETECTIONS, CLASS_NAMES)
    assert args["video_id"] == "hand_made"
    assert args["seconds_per_segment"] == pytest.approx(1.25)   # T s / n = 10 * 0.5 / 4
    assert args["duration"] == 5.0
    for stream, out in OUTPUTS.items():
        np.testing.assert_array_equal(args["attention"][stream], out.attention)
    # u of each detected or true class, averaged over the two streams.
    assert sorted(args["tcam"]) == ["b", "c"]
    for c, name in ((1, "b"), (2, "c")):
        u = np.mean([o.attention * sigmoid(o.tcam[:, c]) for o in OUTPUTS.values()], axis=0)
        np.testing.assert_allclose(args["tcam"][name], u, rtol=1e-12)
    assert args["detections"] == [("b", 0.42, 1.0, 2.5), ("c", -0.05, 3.0, 4.0)]
    assert args["ground_truth"] == [("b", 1.0, 2.5), ("b", 3.0, 4.5), ("c", 0.5, 1.0)]
    unlabelled = dict(VIDEO, labels=np.array([], int), gt_start=np.array([]),
                      gt_end=np.array([]), gt_label=np.array([], int))
    assert plots.timeline_arguments(unlabelled, OUTPUTS, [], CLASS_NAMES)[
        "ground_truth"] is None


def by_gid(artists, prefix):
    return [a for a in artists if (a.get_gid() or "").startswith(prefix)]


def bars_axes(fig):
    return next(ax for ax in fig.axes if by_gid(ax.patches, "detection:")
                or by_gid(ax.patches, "truth:"))


def test_drawn_lines_are_attention_per_stream_and_tcam_of_the_drawn_classes():
    fig = plots.draw_video(VIDEO, OUTPUTS, DETECTIONS, CLASS_NAMES, min_score=0.0)
    lines = {line.get_gid(): line for ax in fig.axes for line in ax.get_lines()
             if line.get_gid()}
    # "c" is detected only at -0.05 < min_score: drawn dashed, as a missed truth.
    assert set(lines) == {"attention:rgb", "attention:flow", "tcam:b", "tcam:c"}
    # Entry i holds over [i, i + 1) * 1.25 s: steps that reach the video's 5 s end.
    for line in lines.values():
        np.testing.assert_allclose(line.get_xdata(), [0.0, 1.25, 2.5, 3.75, 5.0])
        assert line.get_drawstyle() == "steps-post"
    for stream, out in OUTPUTS.items():
        np.testing.assert_allclose(lines[f"attention:{stream}"].get_ydata(),
                                   list(out.attention) + [out.attention[-1]])
    assert lines["tcam:b"].get_linestyle() == "-"
    assert lines["tcam:c"].get_linestyle() == "--"
    assert lines["tcam:c"].get_label() == "c (truth, not detected)"


def long_video(seed=0, seconds=180.0, num_classes=6, count=60):
    """A 3-minute video's arrays with `count` detections, many overlapping."""
    rng = np.random.default_rng(seed)
    names = [f"Class{i}" for i in range(num_classes)]
    n, step = 281, 0.64
    starts = rng.uniform(0, seconds - 12, count)
    detections = [(names[rng.integers(num_classes)], float(score), float(s), float(s + length))
                  for score, s, length in zip(rng.uniform(-0.05, 0.9, count), starts,
                                              rng.uniform(0.5, 12, count))]
    truth = [(names[i % 2], float(s), float(s + 4)) for i, s in enumerate(range(5, 170, 11))]
    return dict(video_id="long", seconds_per_segment=step,
                attention={"rgb": rng.random(n), "flow": rng.random(n)},
                tcam={name: rng.random(n) for name in names},
                detections=detections, ground_truth=truth, duration=seconds)


def short_clip():
    """A 20 s clip's arrays, thumbnails of each second included."""
    n, step = 31, 0.64
    t = np.arange(n) * step
    attention = {"rgb": sigmoid(3 * np.sin(t / 2)), "flow": sigmoid(3 * np.cos(t / 3))}
    frames = [(s + 0.5, np.full((48, 64, 3), 10 * s, np.uint8)) for s in range(20)]
    return dict(video_id="clip", seconds_per_segment=step, attention=attention,
                tcam={"LongJump": 0.8 * attention["rgb"], "HighJump": 0.6 * attention["flow"]},
                detections=[("LongJump", 0.61, 1.0, 5.5), ("LongJump", 0.08, 4.0, 6.0),
                            ("HighJump", 0.33, 7.2, 12.0), ("LongJump", 0.22, 13.5, 14.1),
                            ("HighJump", 0.12, 12.5, 17.0)],
                ground_truth=[("LongJump", 1.2, 5.0), ("HighJump", 8.0, 11.5)],
                thumbnails=frames, duration=20.0)


@pytest.mark.parametrize("case", [long_video, short_clip])
@pytest.mark.parametrize("min_score", [-1.0, 0.1, 0.5])
def test_min_score_leaves_out_low_scores(case, min_score):
    arrays = case()
    fig = timeline.draw_timeline(**arrays, min_score=min_score, dpi=plots.SUMMARY_DPI)
    bars = by_gid(bars_axes(fig).patches, "detection:")
    drawn = sorted((b.get_gid()[len("detection:"):], round(b.get_x(), 9),
                    round(b.get_x() + b.get_width(), 9)) for b in bars)
    expected = sorted((label, round(start, 9), round(end, 9))
                      for label, score, start, end in arrays["detections"] if score >= min_score)
    assert drawn == expected


def test_each_class_has_its_own_colour_never_the_truths_grey():
    arrays = long_video(num_classes=20, count=80)
    ax = bars_axes(timeline.draw_timeline(**arrays, min_score=-1.0, dpi=plots.SUMMARY_DPI))
    colours = {}
    for bar in by_gid(ax.patches, "detection:"):
        colours.setdefault(bar.get_gid(), set()).add(matplotlib.colors.to_hex(bar.get_facecolor()))
    assert len(colours) == 20 and all(len(c) == 1 for c in colours.values())
    hexes = [c.pop() for c in colours.values()]
    assert len(set(hexes)) == 20
    truth = {matplotlib.colors.to_hex(b.get_facecolor()) for b in by_gid(ax.patches, "truth:")}
    assert truth == {matplotlib.colors.to_hex(timeline.TRUTH_COLOR)}
    for rgb in (matplotlib.colors.to_rgb(h) for h in hexes):
        assert np.ptp(rgb) > 0.05          # not a grey at all
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend[-1] == "ground truth" and len(legend) == 21


@pytest.mark.parametrize("case", [long_video, short_clip])
@pytest.mark.parametrize("dpi", [timeline.PNG_DPI, plots.SUMMARY_DPI])
def test_score_labels_do_not_overlap_and_sit_in_their_bars(case, dpi):
    arrays = case()
    fig = timeline.draw_timeline(**arrays, min_score=-1.0, dpi=dpi)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    ax = bars_axes(fig)
    labels = by_gid(ax.texts, "score:")
    assert labels                         # the widest bars have room for one
    boxes = [t.get_window_extent(renderer) for t in labels]
    for i, a in enumerate(boxes):
        assert not any(a.overlaps(b) for b in boxes[i + 1:])
    bars = by_gid(ax.patches, "detection:")
    for text, box in zip(labels, boxes):
        [bar] = [b for b in bars if b.get_window_extent(renderer).contains(*box.p0)
                 and b.get_window_extent(renderer).contains(*box.p1)]
        [score] = [d[1] for d in arrays["detections"] if abs(d[2] - bar.get_x()) < 1e-9
                   and bar.get_gid() == f"detection:{d[0]}"]
        assert text.get_text() == f"{score:.2f}"


def test_time_axis_is_in_seconds():
    fig = timeline.draw_timeline(**long_video(), min_score=0.1)
    fig.canvas.draw()
    ax = bars_axes(fig)
    assert ax.get_xlim() == (0.0, 180.0)
    assert ax.get_xlabel() == "time (m:ss)"
    ticks = {t.get_position()[0]: t.get_text() for t in ax.get_xticklabels()
             if 0 <= t.get_position()[0] <= 180}
    assert ticks == {s: f"{s // 60}:{s % 60:02d}" for s in range(0, 181, 15)}
    clip = bars_axes(timeline.draw_timeline(**short_clip()))
    clip.figure.canvas.draw()
    assert clip.get_xlabel() == "time (s)" and clip.get_xlim() == (0.0, 20.0)
    assert [t.get_text() for t in clip.get_xticklabels()
            if 0 <= t.get_position()[0] <= 20] == [str(s) for s in range(0, 21, 2)]
    [bar] = [b for b in by_gid(clip.patches, "detection:LongJump") if b.get_x() == 1.0]
    assert bar.get_width() == pytest.approx(4.5)


def test_thumbnails_fit_side_by_side_at_their_times():
    fig = timeline.draw_timeline(**short_clip())
    fig.canvas.draw()
    [strip] = [ax for ax in fig.axes if by_gid(ax.images, "thumbnail")]
    extents = sorted(image.get_extent()[:2] for image in strip.images)
    assert 2 <= len(extents) < 20           # as many as fit, not all 20
    assert all(a[1] <= b[0] for a, b in zip(extents, extents[1:]))
    assert extents[0][0] >= 0 and extents[-1][1] <= 20
    # Each shows the frame of the second under its middle.
    for image in strip.images:
        left, right = image.get_extent()[:2]
        assert image.get_array()[0, 0, 0] == 10 * int((left + right) / 2)


@pytest.mark.parametrize("case", [long_video, short_clip])
def test_the_picture_is_written(case, tmp_path):
    path = str(tmp_path / "new" / "video.png")
    assert timeline.write_timeline(path, **case()) == path
    assert os.listdir(tmp_path / "new") == ["video.png"]   # no temporary left
    with open(path, "rb") as f:
        width, height = png_size(f.read())
    assert width == 10 * timeline.PNG_DPI and 400 < height < 1200
    assert matplotlib.image.imread(path).shape == (height, width, 4)


def test_plot_min_score_is_checked():
    assert dgam_flags.parse_args(["--plot_min_score=0.3"]).plot.min_score == 0.3
    with pytest.raises(UserError, match=r"^--plot_min_score must be in \[-1, 1\], got 1.5$"):
        dgam_flags.parse_args(["--plot_min_score=1.5"])


def test_legends_are_clear_of_the_curves_in_summary_images():
    fig = plots.draw_video(VIDEO, OUTPUTS, DETECTIONS, CLASS_NAMES, dpi=plots.SUMMARY_DPI)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    assert fig.canvas.get_width_height()[0] == 600
    figure_box = fig.bbox
    legends = [ax for ax in fig.axes if ax.get_legend()]
    assert len(legends) == 2                 # the T-CAM's and the bars'
    for ax in legends:
        legend = ax.get_legend().get_window_extent(renderer)
        assert not legend.overlaps(ax.get_window_extent(renderer))
        assert figure_box.x0 <= legend.x0 and legend.x1 <= figure_box.x1


def test_video_image_for_summaries():
    image = plots.video_image(VIDEO, OUTPUTS, DETECTIONS, CLASS_NAMES)
    width, height = plots.draw_video(VIDEO, OUTPUTS, DETECTIONS, CLASS_NAMES,
                                     dpi=plots.SUMMARY_DPI).canvas.get_width_height()
    assert image.dtype == tf.uint8
    assert image.shape == (1, height, width, 4) and width == 600
    assert tf.reduce_min(image[..., 3]) == 255          # opaque
    assert tf.reduce_any(image[..., :3] < 128)          # something is drawn


def plot_model_dir(cfg):
    return plots.plot_model_dir(cfg.model_dir, cfg.data, cfg.localization, cfg.evaluation)


def test_visualize_draws_the_first_test_videos(tiny_data_dir, tiny_model_dir, tmp_path,
                                              capsys):
    model_dir = shutil.copytree(tiny_model_dir, tmp_path / "model")
    plots.run(tiny_config(tiny_data_dir, model_dir, ["--plot_frames"], num_plots=3))
    note, *paths = capsys.readouterr().out.splitlines()
    assert note == ("note: --plot_frames: records hold features, not video frames; the "
                    "timelines are drawn without thumbnails")
    first = [v.video_id for v in read_videos(tiny_data_dir, "test")][:3]
    assert paths == [os.path.join(model_dir, "plots", f"{v}.png") for v in first]
    assert sorted(os.listdir(os.path.join(model_dir, "plots"))) == sorted(
        f"{v}.png" for v in first)
    for path in paths:
        with open(path, "rb") as f:
            assert png_size(f.read())[0] == 10 * plots.PNG_DPI


def test_plot_model_dir_needs_a_plot(tiny_data_dir, tmp_path):
    with pytest.raises(UserError, match="--num_plots must be at least 1, got 0"):
        plot_model_dir(tiny_config(tiny_data_dir, tmp_path, num_plots=0))


def test_plot_videos_chooses_the_videos(tiny_data_dir, tiny_model_dir, tmp_path):
    model_dir = shutil.copytree(tiny_model_dir, tmp_path / "model")
    ids = [v.video_id for v in read_videos(tiny_data_dir, "test")]
    paths = plot_model_dir(tiny_config(tiny_data_dir, model_dir, num_plots=0,
                                       plot_videos=[ids[2], ids[0]]))
    assert paths == [os.path.join(model_dir, "plots", f"{v}.png") for v in (ids[0], ids[2])]
    with pytest.raises(UserError, match=r"--plot_videos: no video nope in split 'test'"):
        plot_model_dir(tiny_config(tiny_data_dir, model_dir, plot_videos=["nope", ids[1]]))


def test_periodic_validation_writes_summary_images(tiny_data_dir, tmp_path):
    train_lib.run(tiny_config(tiny_data_dir, tmp_path / "m", epochs=3, eval_every=3,
                           num_plots=2))
    images = {}
    for path in glob.glob(str(tmp_path / "m" / "train" / "events.*")):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                if value.metadata.plugin_data.plugin_name == "images":
                    assert event.step == 3
                    images[value.tag] = value.tensor.string_val
    first = [v.video_id for v in read_videos(tiny_data_dir, "validation")][:2]
    assert sorted(images) == sorted(f"validation/{v}" for v in first)
    for width, height, png in images.values():
        assert png_size(png) == (int(width), int(height))
        assert int(width) == 10 * plots.SUMMARY_DPI
