"""The timeline of one video's localization, drawn from plain arrays.

From top to bottom, on one time axis in seconds (m:ss from two minutes on):
an optional strip of video thumbnails, the attention of each stream, the
weighted T-CAM of the classes drawn below, then one row of bars per class
(its detections scoring at least `min_score`, in the class's colour) and
the ground truth, when known, on a grey row of its own. Score labels are
written inside bars wide enough to hold them, so they never overlap.

Used by `--mode=visualize` and training's summary images (through
plots.py), and by anything else holding a video's arrays: it imports no
model, data or evaluation code. Drawing uses matplotlib's Agg canvas
directly (no pyplot): no display is needed and no global state is kept.
"""
import io
import itertools

import numpy as np
from matplotlib import colormaps, colors, ticker
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from dgam_tf import files
from dgam_tf.config import PlotConfig

PNG_DPI = 100
FIGURE_WIDTH = 10  # inches
TRUTH_COLOR = "0.6"  # ground truth's grey; no class colour is grey
# Class colours, most distinct first: tab10, the light tab20 shades, then
# tab20b, each without its greys.
PALETTE = tuple(colors.to_hex(c) for c in itertools.chain(
    colormaps["tab10"].colors, colormaps["tab20"].colors[1::2], colormaps["tab20b"].colors)
    if not np.allclose(c[0], c[1:3], atol=0.02))
# Tick steps of the time axis (seconds), from which the first giving at
# most MAX_TICKS ticks is taken.
TICK_STEPS = (0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600)
MAX_TICKS = 14
MMSS_FROM = 120.0  # seconds: longer videos are labelled m:ss
# Heights of the panels.
THUMB_INCHES = 0.9
THUMB_TICK = 0.12  # of the strip's height: the tick from a frame's time to it
ATTENTION_INCHES = 0.7  # each stream's
TCAM_INCHES = 1.4
ROW_INCHES = 0.32  # one row of bars


def class_colors(names):
    """{name: colour} of classes in drawing order, distinct while there are
    fewer than len(PALETTE) of them, none the ground truth's grey."""
    return {name: PALETTE[i % len(PALETTE)] for i, name in enumerate(names)}


def time_formatter(seconds):
    """(x-axis label, tick formatter) for a time axis `seconds` long."""
    if seconds >= MMSS_FROM:
        return "time (m:ss)", ticker.FuncFormatter(
            lambda x, _: f"{int(round(x)) // 60}:{int(round(x)) % 60:02d}")
    return "time (s)", ticker.FuncFormatter(lambda x, _: f"{x:g}")


def tick_step(seconds):
    """The tick spacing of a time axis `seconds` long."""
    return next((s for s in TICK_STEPS if seconds / s <= MAX_TICKS), TICK_STEPS[-1])


def lanes(spans):
    """Stacks (start, end) spans, in the given order, into lanes where none
    overlap; returns each one's lane (0 first) as a list."""
    lane_ends, out = [], []
    for start, end in spans:
        lane = next((i for i, e in enumerate(lane_ends) if e <= start), len(lane_ends))
        if lane == len(lane_ends):
            lane_ends.append(end)
        else:
            lane_ends[lane] = end
        out.append(lane)
    return out


def kept_detections(detections, min_score):
    """The (label, score, start, end) detections with score >= min_score,
    best first."""
    return sorted((d for d in detections if d[1] >= min_score), key=lambda d: -d[1])


def _row_classes(kept, ground_truth):
    """Classes with a row of bars: those detected (best score first), then
    those only in the ground truth (by name)."""
    detected = list(dict.fromkeys(d[0] for d in kept))
    return detected + sorted({g[0] for g in ground_truth or ()} - set(detected))


def draw_timeline(video_id, seconds_per_segment, attention, tcam, detections,
                  ground_truth=None, thumbnails=None, min_score=PlotConfig.min_score,
                  duration=None, dpi=PNG_DPI):
    """Draws one video's timeline.

    Args:
      video_id: the title.
      seconds_per_segment: seconds between consecutive entries of the
        attention and T-CAM arrays (entry i holds over [i, i + 1) *
        seconds_per_segment, drawn as a step).
      attention: {stream: [n]} attention of each stream, in [0, 1].
      tcam: {class name: [n]} weighted T-CAM of classes; those of classes
        with a row of bars are drawn (dashed: a ground-truth class with no
        detection drawn), the others ignored.
      detections: [(class name, score, start s, end s)].
      ground_truth: [(class name, start s, end s)], or None when unknown
        (no truth row).
      thumbnails: [(time s, [H, W, 3] uint8)] or None: a strip of as many
        as fit side by side, each over a tick at its time.
      min_score: detections scoring below it are left out.
      duration: seconds of the video (default: what the arrays cover).
      dpi: pixels per inch (the figure is FIGURE_WIDTH inches wide).

    Returns:
      matplotlib Figure on an Agg canvas. Its artists carry gids: "attention:
      <stream>", "tcam:<class>", "detection:<class>", "truth:<class>",
      "score:<class>" (score labels) and "thumbnail".
    """
    n = max((len(a) for a in attention.values()), default=0)
    kept = kept_detections(detections, min_score)
    seconds = max([duration or 0.0, n * seconds_per_segment]
                  + [d[3] for d in detections] + [g[2] for g in ground_truth or ()])
    seconds = seconds if seconds > 0 else 1.0
    classes = _row_classes(kept, ground_truth)
    color = class_colors(classes)
    num_rows = len(classes) + (ground_truth is not None)
    heights = (([THUMB_INCHES] if thumbnails else []) + [ATTENTION_INCHES] * len(attention)
               + [TCAM_INCHES, ROW_INCHES * max(num_rows, 1) + 0.2])
    fig = Figure(figsize=(FIGURE_WIDTH, sum(heights) + 1.0), dpi=dpi, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(heights), 1, sharex=True, height_ratios=heights, squeeze=False)[:, 0]
    strip_ax = axes[0] if thumbnails else None
    tcam_ax, bars_ax = axes[-2:]
    for ax, (stream, values) in zip(axes[-2 - len(attention):-2], attention.items()):
        _draw_attention(ax, stream, values, seconds_per_segment)
    _draw_tcam(tcam_ax, tcam, seconds_per_segment, classes, {d[0] for d in kept}, color)
    bars = _draw_bars(bars_ax, kept, ground_truth, classes, color)
    label, formatter = time_formatter(seconds)
    bars_ax.set_xlim(0.0, seconds)
    bars_ax.xaxis.set_major_locator(ticker.MultipleLocator(tick_step(seconds)))
    bars_ax.xaxis.set_major_formatter(formatter)
    bars_ax.set_xlabel(label)
    hidden = len(detections) - len(kept)
    fig.suptitle(f"{video_id}: {len(kept)} detection{'s' * (len(kept) != 1)} scoring "
                 f"{min_score:g} or more" + (f" ({hidden} below, not drawn)" if hidden else ""))
    # Score labels and thumbnails are sized in pixels: lay the figure out
    # first, then freeze it so that they cannot move it.
    fig.draw_without_rendering()
    fig.set_layout_engine("none")
    _label_scores(bars_ax, bars)
    if strip_ax is not None:
        _draw_thumbnails(strip_ax, thumbnails, seconds)
    return fig


def _steps(values, step):
    """(times, values) of a step curve: entry i holds over [i step, (i+1) step),
    as localization reads it, so the curve reaches the end of the last entry."""
    values = np.asarray(values, np.float64)
    return np.arange(len(values) + 1) * step, np.append(values, values[-1:])


def _draw_attention(ax, stream, values, step):
    """One stream's attention, filled below."""
    times, values = _steps(values, step)
    ax.fill_between(times, values, step="post", color="black", alpha=0.15, linewidth=0)
    ax.plot(times, values, drawstyle="steps-post", color="black", linewidth=1.0,
            gid=f"attention:{stream}")
    ax.set_ylim(0.0, 1.05)
    ax.set_yticks([0.0, 1.0])
    ax.set_ylabel(f"{stream}\nattention", fontsize="small")


def _draw_tcam(ax, tcam, step, classes, detected, color):
    """The weighted T-CAM of each class with a row (dashed when it has no
    detection drawn), the legend above the axes."""
    top = 1.05
    for name in classes:
        if name not in tcam:
            continue
        times, values = _steps(tcam[name], step)
        top = max(top, float(values.max(initial=0.0)) * 1.05)
        ax.plot(times, values, drawstyle="steps-post", color=color[name], linewidth=1.2,
                linestyle="-" if name in detected else "--", gid=f"tcam:{name}",
                label=name if name in detected else f"{name} (truth, not detected)")
    ax.set_ylim(0.0, top)
    ax.set_ylabel("weighted\nT-CAM", fontsize="small")
    if ax.get_lines():
        ax.legend(loc="lower left", bbox_to_anchor=(0.0, 1.0), ncols=4,
                  fontsize="x-small", frameon=False, borderaxespad=0.2)


def _draw_bars(ax, kept, ground_truth, classes, color):
    """One row per class, top first: its detections (overlapping ones in
    thinner lanes); then the ground-truth row, grey with the class's colour
    as edge. Returns [(Rectangle, score label, class)] of the detections."""
    rows = [(name, [(d[2], d[3], f"{d[1]:.2f}") for d in kept if d[0] == name], False)
            for name in classes]
    if ground_truth is not None:
        rows.append(("ground truth", [(g[1], g[2], g[0]) for g in ground_truth], True))
    bars = []
    for y, (name, spans, truth) in enumerate(rows):
        spans = sorted(spans)
        lane = lanes((s, e) for s, e, _ in spans)
        height = 0.8 / (max(lane, default=0) + 1)
        for (start, end, text), k in zip(spans, lane):
            bottom = -y + 0.4 - (k + 1) * height
            [bar] = ax.barh(bottom, end - start, height, left=start, align="edge",
                            color=TRUTH_COLOR if truth else color[name],
                            edgecolor=color[text] if truth else "white",
                            linewidth=1.5 if truth else 0.4)  # white: touching bars part
            bar.set_gid(f"truth:{text}" if truth else f"detection:{name}")
            if not truth:
                bars.append((bar, text, name))
    ax.set_yticks(-np.arange(len(rows)), [r[0] for r in rows], fontsize="small")
    for tick, (name, _, truth) in zip(ax.get_yticklabels(), rows):
        tick.set_color("black" if truth else color[name])
    ax.set_ylim(-len(rows) + 0.5, 0.5)
    legend = [Patch(facecolor=color[c], label=c) for c in classes]
    if ground_truth is not None:
        legend.append(Patch(facecolor=TRUTH_COLOR, label="ground truth"))
    if legend:
        ax.legend(handles=legend, loc="upper left", bbox_to_anchor=(1.0, 1.0),
                  fontsize="x-small", frameon=False, borderaxespad=0.2)
    return bars


def _label_scores(ax, bars):
    """Writes each detection's score inside its bar when the label fits in
    it (bars do not overlap within a lane, lanes not at all, so neither do
    the labels); leaves it out otherwise."""
    renderer = ax.figure.canvas.get_renderer()
    for bar, text, name in bars:
        box = bar.get_window_extent(renderer)
        r, g, b, _ = bar.get_facecolor()
        label = ax.text(bar.get_x() + bar.get_width() / 2, bar.get_y() + bar.get_height() / 2,
                        text, ha="center", va="center", fontsize="x-small", clip_on=True,
                        color="black" if 0.299 * r + 0.587 * g + 0.114 * b > 0.55 else "white",
                        gid=f"score:{name}")
        extent = label.get_window_extent(renderer)
        if extent.width + 2 > box.width or extent.height > box.height:
            label.remove()


def _draw_thumbnails(ax, thumbnails, seconds):
    """Thumbnails side by side in as many equal slots as fit across the
    strip, each slot showing the frame nearest its centre, with a tick
    at that frame's time below it."""
    ax.set_axis_off()
    h, w = np.shape(thumbnails[0][1])[:2]
    image_height = 1.0 - THUMB_TICK
    thumb_seconds = ax.bbox.height * image_height * w / h * seconds / ax.bbox.width
    slots = max(1, min(len(thumbnails), int(seconds / (1.05 * thumb_seconds))))
    times = np.array([t for t, _ in thumbnails], np.float64)
    for centre in (np.arange(slots) + 0.5) * seconds / slots:
        nearest = int(np.argmin(np.abs(times - centre)))
        time, image = thumbnails[nearest]
        times[nearest] = np.inf  # each frame once
        ax.imshow(image, extent=(centre - thumb_seconds / 2, centre + thumb_seconds / 2,
                                 THUMB_TICK, 1.0), aspect="auto", gid="thumbnail")
        ax.plot([time, time], [0.0, THUMB_TICK], color="black", linewidth=1.0)
    ax.set_xlim(0.0, seconds)
    ax.set_ylim(0.0, 1.0)


def write_timeline(path, *args, **kwargs):
    """Writes `draw_timeline(*args, **kwargs)` to `path` as a PNG,
    atomically; returns path."""
    buffer = io.BytesIO()
    draw_timeline(*args, **kwargs).savefig(buffer, format="png")
    files.atomic_write_bytes(path, buffer.getvalue())
    return path
