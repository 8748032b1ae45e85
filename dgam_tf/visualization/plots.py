"""Plots of one video's localization (algorithm.md §5) on one time axis in
seconds: attention and the weighted T-CAM u of the predicted classes per
stream, then the detections (with scores) and the ground truth as bars.

Written as PNG files by `--mode=visualize` (`plot_model_dir`) and as image
tensors for `tf.summary.image` during training (`summary_images`). Drawing
uses matplotlib's Agg canvas directly (no pyplot): no display is needed and
no global figure state is kept.
"""
import contextlib
import io
import itertools
import os
import re

import numpy as np
import tensorflow as tf
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from dgam_tf import io_utils
from dgam_tf.errors import UserError
from dgam_tf.evaluation import evaluate
from dgam_tf.localization import localize

PNG_DPI = 100
SUMMARY_DPI = 60  # Smaller images for TensorBoard.
_COLORS = colormaps["tab10"]


def sample_times(num_positions, num_segments, seconds_per_segment):
    """Seconds of the n sampled positions as localization reads them (§5 step
    8: position i is at i T s / n, s = seconds per segment), [n]."""
    return np.arange(num_positions) * (num_segments * seconds_per_segment / num_positions)


def weighted_tcam(output, classes):
    """u = lambda * sigmoid(tcam[:, c]) for each of `classes` (§5 step 4).

    Args:
      output: a localize.StreamOutput (n sampled positions, C classes).
      classes: int array [k] of class ids.

    Returns:
      float64 [n, k].
    """
    tcam = np.asarray(output.tcam, np.float64)[:, classes]                  # [n, k]
    return np.asarray(output.attention, np.float64)[:, None] * np.exp(
        -np.logaddexp(0.0, -tcam))


def _video_id(video):
    """The video's id as a str (infer_split gives bytes)."""
    video_id = video["video_id"]
    return video_id.decode() if isinstance(video_id, bytes) else str(video_id)


def _color(class_id):
    return _COLORS(class_id % _COLORS.N)


def _draw_stream(ax, stream, output, times, class_names, class_threshold):
    """Attention (gid "attention") and u of each predicted class c (gid "u:c")."""
    ax.plot(times, output.attention, color="black", linewidth=1.5, label="attention",
            gid="attention")
    classes = localize.predict_classes(output.class_probs, class_threshold)
    for c, u in zip(classes, weighted_tcam(output, classes).T):
        ax.plot(times, u, color=_color(c), gid=f"u:{c}",
                label=f"u {class_names[c]} (p={output.class_probs[c]:.2f})")
    ax.set_ylim(0.0, 1.05)
    ax.set_ylabel(stream)
    ax.legend(loc="upper right", fontsize="small")


def _bar_classes(video, detections):
    """Classes with ground truth or detections in the video, ascending."""
    return sorted(set(np.asarray(video["gt_label"]).astype(int).tolist())
                  | {d.class_id for d in detections})


def _draw_bars(ax, video, detections, class_names, classes):
    """Two rows per class of `classes`: its ground truth (grey bars, gid
    "gt:c") and its detections (coloured bars with their scores, gid
    "detection:c")."""
    gt_label = np.asarray(video["gt_label"]).astype(int)
    ticks, names = [], []
    for row, c in enumerate(classes):
        gt_y, det_y = 2 * row + 1, 2 * row
        gt = gt_label == c
        starts, ends = np.asarray(video["gt_start"])[gt], np.asarray(video["gt_end"])[gt]
        ax.barh(np.full(len(starts), gt_y), ends - starts, left=starts, height=0.7,
                color="0.6", gid=f"gt:{c}")
        mine = [d for d in detections if d.class_id == c]
        ax.barh(np.full(len(mine), det_y), [d.end - d.start for d in mine],
                left=[d.start for d in mine], height=0.7, color=_color(c), alpha=0.8,
                gid=f"detection:{c}")
        for d in mine:
            ax.text(d.start, det_y, f"{d.score:.2f}", va="center", fontsize="x-small")
        ticks += [det_y, gt_y]
        names += [f"{class_names[c]} detected", f"{class_names[c]} truth"]
    ax.set_yticks(ticks, names, fontsize="small")
    ax.set_ylim(-0.6, max(ticks, default=0) + 0.6)
    ax.set_xlabel("time (s)")


def draw_video(video, outputs, detections, class_names,
               class_threshold=localize.LocalizationConfig.class_threshold, dpi=PNG_DPI):
    """Draws one video's localization.

    Args:
      video: dict of numpy values as infer_split yields it; uses "video_id",
        "num_segments" (T), "seconds_per_segment", "duration", "labels",
        "gt_start"/"gt_end"/"gt_label" [G].
      outputs: {stream: localize.StreamOutput}, all at the same n positions.
      detections: [localize.Detection] of the video.
      class_names: [C] names.
      class_threshold: classes with p_c above it are predicted (else the
        argmax); u is drawn for those.
      dpi: pixels per inch (the figure is 10 inches wide).

    Returns:
      matplotlib Figure on an Agg canvas: one axes per stream, then the bars.
    """
    t, spp = int(video["num_segments"]), float(video["seconds_per_segment"])
    classes = _bar_classes(video, detections)
    fig = Figure(figsize=(10, 2.2 * len(outputs) + 1.2 + 0.4 * len(classes)),
                 dpi=dpi, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(outputs) + 1, 1, sharex=True, squeeze=False)[:, 0]
    for ax, (stream, output) in zip(axes, outputs.items()):
        times = sample_times(len(output.attention), t, spp)
        _draw_stream(ax, stream, output, times, class_names, class_threshold)
    _draw_bars(axes[-1], video, detections, class_names, classes)
    axes[-1].set_xlim(0.0, max(float(video["duration"]), t * spp))
    labels = ", ".join(class_names[c] for c in np.asarray(video["labels"]).astype(int))
    fig.suptitle(f"{_video_id(video)} (labels: {labels or 'none'})")
    return fig


def plot_video(video, outputs, detections, class_names, path,
               class_threshold=localize.LocalizationConfig.class_threshold):
    """Writes `draw_video`'s figure to `path` as a PNG, atomically; returns path."""
    buffer = io.BytesIO()
    draw_video(video, outputs, detections, class_names, class_threshold).savefig(
        buffer, format="png")
    io_utils.atomic_write_bytes(path, buffer.getvalue())
    return path


def video_image(video, outputs, detections, class_names,
                class_threshold=localize.LocalizationConfig.class_threshold):
    """`draw_video`'s figure as a uint8 RGBA tensor [1, H, W, 4] for
    tf.summary.image."""
    fig = draw_video(video, outputs, detections, class_names, class_threshold,
                     dpi=SUMMARY_DPI)
    fig.canvas.draw()
    return tf.constant(np.asarray(fig.canvas.buffer_rgba())[None])


def _first_videos(modules, data_dir, info, split, config, count):
    """The first `count` items of evaluate.infer_split (reading stops there)."""
    with contextlib.closing(evaluate.infer_split(modules, data_dir, info, split,
                                                 config)) as videos:
        yield from itertools.islice(videos, count)


def summary_images(modules, data_dir, info, split, config):
    """Yields (video_id, image [1, H, W, 4]) for the first --num_plots videos
    of `split`, for tf.summary.image.

    Args:
      modules: {stream: (attention, classifier)}.
    """
    for video, outputs, detections in _first_videos(modules, data_dir, info, split,
                                                    config, config.num_plots):
        yield _video_id(video), video_image(
            video, outputs, detections, info.class_names, config.class_threshold)


def _file_name(video):
    """A PNG file name for the video (characters unsafe in paths replaced)."""
    return re.sub(r"[^\w.-]", "_", _video_id(video)) + ".png"


def plot_model_dir(config):
    """--mode=visualize: draws the first --num_plots videos of --test_split
    with the models of evaluate.load_modules (--model_dir, or the module-swap
    folders) into <model_dir>/plots/<video_id>.png.

    Returns:
      The written paths, in split order.

    Raises:
      UserError: --num_plots below 1, or what load_modules raises.
    """
    if config.num_plots < 1:
        raise UserError(f"--num_plots must be at least 1, got {config.num_plots}")
    data_dir, info, modules = evaluate.load_modules(config)
    out_dir = os.path.join(config.model_dir, "plots")
    return [plot_video(video, outputs, detections, info.class_names,
                       os.path.join(out_dir, _file_name(video)),
                       config.class_threshold)
            for video, outputs, detections in _first_videos(
                modules, data_dir, info, config.test_split, config, config.num_plots)]
