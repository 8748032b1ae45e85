"""Plots of a video's localization: the drawn data against numpy on a
hand-made video, PNG files and summary images, --mode=visualize's
plot_model_dir, and the images the periodic validation of --mode=train writes."""
import glob
import os
import shutil

import matplotlib.image
import numpy as np
import pytest
import tensorflow as tf

from conftest import read_videos, tiny_config
from dgam_tf.errors import UserError
from dgam_tf.localization.localize import Detection, StreamOutput
from dgam_tf.training import train_lib
from dgam_tf.visualization import plots

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


def test_drawn_lines_are_attention_and_u_of_the_predicted_and_true_classes():
    fig = plots.draw_video(VIDEO, OUTPUTS, DETECTIONS, CLASS_NAMES)
    # rgb predicts the true classes 1 and 2; flow predicts 0 and misses both.
    expected = {"rgb": {1: "-", 2: "-"}, "flow": {0: "-", 1: "--", 2: "--"}}
    for ax, (stream, out) in zip(fig.axes, OUTPUTS.items()):
        lines = {line.get_gid(): line for line in ax.get_lines()}
        assert set(lines) == {"attention"} | {f"u:{c}" for c in expected[stream]}
        for line in lines.values():
            np.testing.assert_allclose(line.get_xdata(), [0.0, 1.25, 2.5, 3.75])
        np.testing.assert_allclose(lines["attention"].get_ydata(), out.attention)
        attention, tcam = out.attention.astype(np.float64), out.tcam.astype(np.float64)
        for c, style in expected[stream].items():
            u = attention / (1.0 + np.exp(-tcam[:, c]))
            line = lines[f"u:{c}"]
            np.testing.assert_allclose(line.get_ydata(), u, rtol=1e-12)
            assert line.get_linestyle() == style
            assert line.get_label() == (
                f"weighted T-CAM {CLASS_NAMES[c]} (p={out.class_probs[c]:.2f}"
                + (", not predicted)" if style == "--" else ")"))


# Detections whose bars or score labels would overlap on one row: 1.0-2.5
# and 1.1-2.0 overlap, 2.55 starts before the label of 2.5's neighbour ends.
CROWDED = [Detection(1, 0.42, 1.0, 2.5), Detection(1, 0.29, 1.1, 2.0),
           Detection(1, 0.31, 2.55, 2.9), Detection(1, 0.12, 3.0, 4.5),
           Detection(2, -0.05, 3.0, 4.0)]


@pytest.mark.parametrize("dpi", [plots.PNG_DPI, plots.SUMMARY_DPI])
def test_bars_and_score_labels_do_not_overlap(dpi):
    fig = plots.draw_video(VIDEO, OUTPUTS, CROWDED, CLASS_NAMES, dpi=dpi)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    bars_ax = fig.axes[-1]
    labels = [t.get_window_extent(renderer) for t in bars_ax.texts]
    assert len(labels) == len(CROWDED)
    for i, a in enumerate(labels):
        assert not any(a.overlaps(b) for b in labels[i + 1:])
    detections = [p for p in bars_ax.patches if p.get_gid().startswith("detection")]
    rows = {}
    for patch in detections:
        rows.setdefault(patch.get_y(), []).append(
            (patch.get_x(), patch.get_x() + patch.get_width()))
    for spans in rows.values():
        spans.sort()
        assert all(end <= start for (_, end), (start, _) in zip(spans, spans[1:]))
    # Each label sits on its detection's bar.
    for text in bars_ax.texts:
        [bar] = [p for p in detections if p.get_x() == text.get_position()[0]
                 and abs(p.get_y() + p.get_height() / 2 - text.get_position()[1]) < 1e-9]
        [score] = [d.score for d in CROWDED if d.start == bar.get_x()
                   and bar.get_gid() == f"detection:{d.class_id}"]
        assert text.get_text() == f"{score:.2f}"


def test_legends_are_clear_of_the_curves_in_summary_images():
    fig = plots.draw_video(VIDEO, OUTPUTS, DETECTIONS, CLASS_NAMES, dpi=plots.SUMMARY_DPI)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    assert fig.canvas.get_width_height()[0] == 600
    figure_box = fig.bbox
    for ax in fig.axes[:-1]:
        legend = ax.get_legend().get_window_extent(renderer)
        assert not legend.overlaps(ax.get_window_extent(renderer))
        assert figure_box.x0 <= legend.x0 and legend.x1 <= figure_box.x1


def test_drawn_bars_are_detections_and_ground_truth():
    bars_ax = plots.draw_video(VIDEO, OUTPUTS, DETECTIONS, CLASS_NAMES).axes[-1]
    spans = {}
    for patch in bars_ax.patches:
        spans.setdefault(patch.get_gid(), []).append(
            (patch.get_x(), patch.get_x() + patch.get_width()))
    assert spans == {"gt:1": [(1.0, 2.5), (3.0, 4.5)], "gt:2": [(0.5, 1.0)],
                     "detection:1": [(1.0, 2.5)], "detection:2": [(3.0, 4.0)]}
    assert sorted(t.get_text() for t in bars_ax.texts) == ["-0.05", "0.42"]
    assert bars_ax.get_xlim() == (0.0, 5.0)


def test_plot_video_writes_a_png(tmp_path):
    path = str(tmp_path / "new" / "video.png")
    assert plots.plot_video(VIDEO, OUTPUTS, DETECTIONS, CLASS_NAMES, path) == path
    assert os.listdir(tmp_path / "new") == ["video.png"]   # no temporary left
    with open(path, "rb") as f:
        width, height = png_size(f.read())
    assert width == 10 * plots.PNG_DPI and 300 < height < 2000
    assert matplotlib.image.imread(path).shape == (height, width, 4)


def test_video_image_for_summaries():
    image = plots.video_image(VIDEO, OUTPUTS, DETECTIONS, CLASS_NAMES)
    size = plots.draw_video(VIDEO, OUTPUTS, DETECTIONS, CLASS_NAMES,
                            dpi=plots.SUMMARY_DPI).get_size_inches() * plots.SUMMARY_DPI
    assert image.dtype == tf.uint8
    assert image.shape == (1, round(size[1]), round(size[0]), 4)
    assert tf.reduce_min(image[..., 3]) == 255          # opaque
    assert tf.reduce_any(image[..., :3] < 128)          # something is drawn


def plot_model_dir(cfg):
    return plots.plot_model_dir(cfg.model_dir, cfg.data, cfg.localization, cfg.evaluation)


def test_plot_model_dir_draws_the_first_test_videos(tiny_data_dir, tiny_model_dir, tmp_path):
    model_dir = shutil.copytree(tiny_model_dir, tmp_path / "model")
    paths = plot_model_dir(tiny_config(tiny_data_dir, model_dir, num_plots=3))
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
