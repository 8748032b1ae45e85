"""Plots of one video's localization (docs/method.md §5) on one time axis in
seconds: attention and the weighted T-CAM u of the predicted and the
ground-truth classes per stream (dashed: a ground-truth class the stream
does not predict), then the detections (with scores) and the ground truth
as bars.

Written as PNG files by `--mode=visualize` (`plot_model_dir`) and as image
tensors for `tf.summary.image` during training (`video_image`, given the
periodic validation's own outputs by its Evaluator). Drawing
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
from matplotlib.font_manager import FontProperties
from matplotlib.textpath import TextPath

from dgam_tf import files
from dgam_tf.config import LocalizationConfig
from dgam_tf.errors import UserError
from dgam_tf.localization import inference, localize

PNG_DPI = 100
SUMMARY_DPI = 60  # Smaller images for TensorBoard.
FIGURE_WIDTH = 10  # inches
_COLORS = colormaps["tab10"]
_SCORE_FONT = FontProperties(size="x-small")
# Width of the time axis as a fraction of the figure's, at least (the rest:
# class names on the left); sizes the score labels in seconds.
_MIN_AXES_FRACTION = 0.7


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


def _truth_classes(video):
    """Classes of the video's labels and ground-truth instances, a set."""
    return set(np.asarray(video["labels"]).astype(int).tolist()) | set(
        np.asarray(video["gt_label"]).astype(int).tolist())


def _draw_stream(ax, stream, output, times, class_names, class_threshold, truth):
    """Attention (gid "attention") and u of each predicted or ground-truth
    class c (gid "u:c"; dashed when the stream does not predict c), with the
    legend above the axes, clear of the curves."""
    ax.plot(times, output.attention, color="black", linewidth=1.5, label="attention",
            gid="attention")
    predicted = set(localize.predict_classes(output.class_probs, class_threshold).tolist())
    classes = sorted(predicted | truth)
    for c, u in zip(classes, weighted_tcam(output, classes).T):
        missed = "" if c in predicted else ", not predicted"
        ax.plot(times, u, color=_color(c), gid=f"u:{c}", linestyle="-" if not missed else "--",
                label=f"weighted T-CAM {class_names[c]} "
                      f"(p={output.class_probs[c]:.2f}{missed})")
    ax.set_ylim(0.0, 1.05)
    ax.set_ylabel(stream)
    ax.legend(loc="lower left", bbox_to_anchor=(0.0, 1.0), ncols=2,
              fontsize="x-small", frameon=False, borderaxespad=0.2)


def _bar_classes(video, detections):
    """Classes with ground truth or detections in the video, ascending."""
    return sorted(set(np.asarray(video["gt_label"]).astype(int).tolist())
                  | {d.class_id for d in detections})


def _lanes(detections, label_seconds):
    """Stacks detections (sorted by start) into lanes in which neither their
    bars nor their score labels (`label_seconds` wide) overlap; returns each
    one's lane, 0 first."""
    lane_ends, lanes = [], []
    for d in detections:
        lane = next((i for i, end in enumerate(lane_ends) if end <= d.start), len(lane_ends))
        end = max(d.end, d.start + label_seconds)
        if lane == len(lane_ends):
            lane_ends.append(end)
        else:
            lane_ends[lane] = end
        lanes.append(lane)
    return lanes


def _bar_rows(detections, classes, seconds):
    """Where each class's bars go: its detections in as many rows as their
    bars and score labels need not to overlap, then its ground truth.

    Args:
      seconds: the length of the time axis.

    Returns:
      ([(class, its detections by start, their rows [k], its first row,
      its number of detection rows (1 or more))], number of rows); the
      class's truth row follows its detection rows.
    """
    # The widest score label, in seconds of the narrowest time axis.
    label_seconds = 1.1 * seconds * TextPath((0, 0), "-0.00", prop=_SCORE_FONT).get_extents(
        ).width / (72 * FIGURE_WIDTH * _MIN_AXES_FRACTION)
    layout, y = [], 0
    for c in classes:
        mine = sorted((d for d in detections if d.class_id == c), key=lambda d: d.start)
        lanes = _lanes(mine, label_seconds)
        num_lanes = max(lanes, default=0) + 1
        layout.append((c, mine, y + np.array(lanes, int), y, num_lanes))
        y += num_lanes + 1
    return layout, y


def _draw_bars(ax, video, layout, class_names):
    """Each class's detections (coloured bars with their scores, gid
    "detection:c") and ground truth (grey bars, gid "gt:c"), in the rows of
    `_bar_rows`'s layout."""
    gt_label = np.asarray(video["gt_label"]).astype(int)
    ticks, names = [], []
    for c, mine, rows, first_row, num_lanes in layout:
        truth_row = first_row + num_lanes
        ax.barh(rows, [d.end - d.start for d in mine], left=[d.start for d in mine],
                height=0.7, color=_color(c), alpha=0.8, gid=f"detection:{c}")
        for d, row in zip(mine, rows):
            ax.text(d.start, row, f"{d.score:.2f}", va="center", fontproperties=_SCORE_FONT)
        gt = gt_label == c
        starts, ends = np.asarray(video["gt_start"])[gt], np.asarray(video["gt_end"])[gt]
        ax.barh(np.full(len(starts), truth_row), ends - starts, left=starts, height=0.7,
                color="0.6", gid=f"gt:{c}")
        ticks += [first_row + (num_lanes - 1) / 2, truth_row]
        names += [f"{class_names[c]} detected", f"{class_names[c]} truth"]
    ax.set_yticks(ticks, names, fontsize="small")
    ax.set_ylim(-0.6, max(ticks, default=0) + 0.6)
    ax.set_xlabel("time (s)")


def draw_video(video, outputs, detections, class_names,
               class_threshold=LocalizationConfig.class_threshold, dpi=PNG_DPI):
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
    seconds = max(float(video["duration"]), t * spp)
    layout, num_rows = _bar_rows(detections, _bar_classes(video, detections), seconds)
    fig = Figure(figsize=(FIGURE_WIDTH, 2.2 * len(outputs) + 1.2 + 0.2 * num_rows),
                 dpi=dpi, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(outputs) + 1, 1, sharex=True, squeeze=False)[:, 0]
    truth = _truth_classes(video)
    for ax, (stream, output) in zip(axes, outputs.items()):
        times = sample_times(len(output.attention), t, spp)
        _draw_stream(ax, stream, output, times, class_names, class_threshold, truth)
    _draw_bars(axes[-1], video, layout, class_names)
    axes[-1].set_xlim(0.0, seconds)
    labels = ", ".join(class_names[c] for c in np.asarray(video["labels"]).astype(int))
    fig.suptitle(f"{_video_id(video)} (labels: {labels or 'none'})")
    return fig


def plot_video(video, outputs, detections, class_names, path,
               class_threshold=LocalizationConfig.class_threshold):
    """Writes `draw_video`'s figure to `path` as a PNG, atomically; returns path."""
    buffer = io.BytesIO()
    draw_video(video, outputs, detections, class_names, class_threshold).savefig(
        buffer, format="png")
    files.atomic_write_bytes(path, buffer.getvalue())
    return path


def video_image(video, outputs, detections, class_names,
                class_threshold=LocalizationConfig.class_threshold):
    """`draw_video`'s figure as a uint8 RGBA tensor [1, H, W, 4] for
    tf.summary.image."""
    fig = draw_video(video, outputs, detections, class_names, class_threshold,
                     dpi=SUMMARY_DPI)
    fig.canvas.draw()
    return tf.constant(np.asarray(fig.canvas.buffer_rgba())[None])


def _videos(modules, data_dir, info, split, data_cfg, localization_cfg, count, video_ids=()):
    """Items of inference.infer_split: those of `video_ids` if any are given,
    else the first `count`, in split order; reading stops once they are in.

    Raises:
      UserError: a video id that is not in the split.
    """
    wanted, chosen = set(video_ids), []
    with contextlib.closing(inference.infer_split(modules, data_dir, info, split, data_cfg,
                                                  localization_cfg)) as items:
        if not wanted:
            return list(itertools.islice(items, count))
        for item in items:
            if _video_id(item[0]) in wanted:
                chosen.append(item)
                if len(chosen) == len(wanted):
                    break
    missing = wanted - {_video_id(video) for video, _, _ in chosen}
    if missing:
        raise UserError(f"--plot_videos: no video {', '.join(sorted(missing))} in split "
                        f"'{split}' of {data_dir}")
    return chosen


def _file_name(video):
    """A PNG file name for the video (characters unsafe in paths replaced)."""
    return re.sub(r"[^\w.-]", "_", _video_id(video)) + ".png"


def plot_model_dir(model_dir, data_cfg, localization_cfg, eval_cfg):
    """Draws EvalConfig's plot_videos of the test split, or else its first
    num_plots videos, with the models of inference.restore (model_dir, or
    the module-swap folders) into <model_dir>/plots/<video_id>.png.

    Returns:
      The written paths, in split order.

    Raises:
      UserError: num_plots below 1 without plot_videos, a plot_videos id
        not in the split, or what inference.restore raises.
    """
    if eval_cfg.num_plots < 1 and not eval_cfg.plot_videos:
        raise UserError(f"--num_plots must be at least 1, got {eval_cfg.num_plots}")
    data_dir, info, modules, _ = inference.restore(model_dir, data_cfg, eval_cfg)
    out_dir = os.path.join(model_dir, "plots")
    return [plot_video(video, outputs, detections, info.class_names,
                       os.path.join(out_dir, _file_name(video)),
                       localization_cfg.class_threshold)
            for video, outputs, detections in _videos(
                modules, data_dir, info, data_cfg.test_split, data_cfg, localization_cfg,
                eval_cfg.num_plots, eval_cfg.plot_videos)]


def run(cfg):
    """--mode=visualize: plot_model_dir, printing each written path."""
    for path in plot_model_dir(cfg.model_dir, cfg.data, cfg.localization, cfg.evaluation):
        print(path)
