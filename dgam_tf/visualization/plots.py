"""One video's localization as a timeline picture (visualization/timeline.py):
the attention of each stream, the weighted T-CAM u of the classes drawn
(docs/method.md §5), the detections as bars per class and the ground truth.

Written as PNG files by `--mode=visualize` (`plot_model_dir`) and as image
tensors for `tf.summary.image` during training (`video_image`, given the
periodic validation's own outputs by its Evaluator). `timeline_arguments`
turns what inference.infer_split yields into timeline.draw_timeline's arrays.
"""
import contextlib
import itertools
import os
import re

import numpy as np
import tensorflow as tf

from dgam_tf.config import PlotConfig
from dgam_tf.errors import UserError
from dgam_tf.localization import inference
from dgam_tf.visualization import timeline

PNG_DPI = timeline.PNG_DPI
SUMMARY_DPI = 60  # Smaller images for TensorBoard.


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


def timeline_arguments(video, outputs, detections, class_names):
    """timeline.draw_timeline's arguments for one video.

    Args:
      video: dict of numpy values as infer_split yields it; uses "video_id",
        "num_segments" (T), "seconds_per_segment" (s), "duration", "labels",
        "gt_start"/"gt_end"/"gt_label" [G].
      outputs: {stream: localize.StreamOutput}, all at the same n positions
        (position i is at i T s / n seconds, as localization reads it).
      detections: [localize.Detection] of the video.
      class_names: [C] names.

    Returns:
      dict of video_id, seconds_per_segment (T s / n), attention {stream:
      [n]}, tcam {class name: [n]} (u of each class with a detection or
      ground truth, the mean over the streams), detections, ground_truth
      (None for a video with neither labels nor instances) and duration.
    """
    t, spp = int(video["num_segments"]), float(video["seconds_per_segment"])
    n = len(next(iter(outputs.values())).attention)
    gt_label = np.asarray(video["gt_label"]).astype(int)
    classes = sorted({d.class_id for d in detections} | set(gt_label.tolist()))
    u = np.mean([weighted_tcam(o, classes) for o in outputs.values()], axis=0)  # [n, k]
    truth = [(class_names[c], float(s), float(e)) for c, s, e in zip(
        gt_label, np.asarray(video["gt_start"]), np.asarray(video["gt_end"]))]
    known = len(truth) or len(np.asarray(video["labels"]))
    return dict(video_id=_video_id(video), seconds_per_segment=t * spp / n,
                attention={s: np.asarray(o.attention) for s, o in outputs.items()},
                tcam={class_names[c]: u[:, i] for i, c in enumerate(classes)},
                detections=[(class_names[d.class_id], d.score, d.start, d.end)
                            for d in detections],
                ground_truth=truth if known else None,
                duration=max(float(video["duration"]), t * spp))


def draw_video(video, outputs, detections, class_names, min_score=PlotConfig.min_score,
               dpi=PNG_DPI):
    """The timeline Figure of one video (`timeline_arguments`' arguments);
    detections scoring below min_score are left out."""
    return timeline.draw_timeline(**timeline_arguments(video, outputs, detections, class_names),
                                  min_score=min_score, dpi=dpi)


def plot_video(video, outputs, detections, class_names, path, min_score=PlotConfig.min_score,
               thumbnails=None):
    """Writes `draw_video`'s timeline to `path` as a PNG, atomically, with the
    (time in seconds, frame) `thumbnails` strip if given; returns path."""
    return timeline.write_timeline(
        path, **timeline_arguments(video, outputs, detections, class_names),
        thumbnails=thumbnails, min_score=min_score)


def video_image(video, outputs, detections, class_names, min_score=PlotConfig.min_score):
    """`draw_video`'s figure as a uint8 RGBA tensor [1, H, W, 4] for
    tf.summary.image."""
    fig = draw_video(video, outputs, detections, class_names, min_score, dpi=SUMMARY_DPI)
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


def file_name(video):
    """A PNG file name for the video (characters unsafe in paths replaced)."""
    return re.sub(r"[^\w.-]", "_", _video_id(video)) + ".png"


def plot_model_dir(model_dir, data_cfg, localization_cfg, eval_cfg, plot_cfg=PlotConfig()):
    """Draws EvalConfig's plot_videos of the test split, or else its first
    num_plots videos, with the models of inference.restore (model_dir, or
    the module-swap folders) into <model_dir>/plots/<video_id>.png, leaving
    out detections scoring below plot_cfg.min_score.

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
                       os.path.join(out_dir, file_name(video)), plot_cfg.min_score)
            for video, outputs, detections in _videos(
                modules, data_dir, info, data_cfg.test_split, data_cfg, localization_cfg,
                eval_cfg.num_plots, eval_cfg.plot_videos)]


def run(cfg):
    """--mode=visualize: plot_model_dir, printing each written path."""
    if cfg.plot.frames:
        print("note: --plot_frames: records hold features, not video frames; the timelines "
              "are drawn without thumbnails", flush=True)
    for path in plot_model_dir(cfg.model_dir, cfg.data, cfg.localization, cfg.evaluation,
                               cfg.plot):
        print(path)
