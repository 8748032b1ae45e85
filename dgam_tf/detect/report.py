"""What --mode=detect shows of a video's detections: a short table and the
timeline picture (visualization/timeline.py)."""
import os

from dgam_tf.visualization import plots, timeline


def clock(seconds):
    """m:ss of a time in seconds, e.g. 1:05."""
    whole = int(round(seconds))
    return f"{whole // 60}:{whole % 60:02d}"


def recipe_text(recipe):
    """The recipe fields of a provenance record as "fps 25, segment_frames 16, ..."."""
    return ", ".join(f"{k} {v:g}" for k, v in recipe.items())


def table(detected, class_names, rows):
    """A video's detections as text: a heading line, then the `rows` best
    (class, start, end, score), in seconds, with m:ss too for videos of
    timeline.MMSS_FROM seconds or more.

    Args:
      detected: a detect.Detected.
      class_names: [C] names.
      rows: detections listed at most.
    """
    n = len(detected.detections)
    lines = [f"{os.path.basename(detected.path)}: {detected.duration:.2f} s, "
             f"{detected.num_segments} segments, {n} detection{'s' * (n != 1)}"]
    if not n:
        return lines[0]
    best = sorted(detected.detections, key=lambda d: -d.score)[:rows]
    width = max(5, *(len(class_names[d.class_id]) for d in best))
    long = detected.duration >= timeline.MMSS_FROM
    times = f"{'start':>8}{'m:ss':>6}{'end':>8}{'m:ss':>6}" if long else f"{'start':>8}{'end':>8}"
    lines.append(f"  {'class':<{width}}{times}{'score':>8}")
    for d in best:
        if long:
            span = f"{d.start:8.2f}{clock(d.start):>6}{d.end:8.2f}{clock(d.end):>6}"
        else:
            span = f"{d.start:8.2f}{d.end:8.2f}"
        lines.append(f"  {class_names[d.class_id]:<{width}}{span}{d.score:8.3f}")
    if n > rows:
        lines.append(f"  ... {n - rows} more in the JSON (--table_rows={rows})")
    return "\n".join(lines)


def plot(detected, class_names, folder, min_score, thumbnails=None):
    """Writes a detect.Detected's timeline (no ground truth) to <folder>/<video
    id>.png, atomically; returns the path."""
    video = {"video_id": detected.video_id, "num_segments": detected.num_segments,
             "seconds_per_segment": detected.seconds_per_segment,
             "duration": detected.duration, "labels": [], "gt_start": [], "gt_end": [],
             "gt_label": []}
    return plots.plot_video(video, detected.outputs, detected.detections, class_names,
                            os.path.join(folder, plots.file_name(video)), min_score, thumbnails)
