"""Evaluation of trained models on a split: inference, localization, the
detection mAP and the paper's frame-set statistics (algorithm.md §5-§7)."""
import dataclasses
import functools
import os

import numpy as np
import tensorflow as tf

from dgam_tf import io_utils
from dgam_tf.data import pipeline
from dgam_tf.errors import UserError
from dgam_tf.evaluation import detection
from dgam_tf.localization import localize
from dgam_tf.models.dgam import video_outputs

@functools.lru_cache(maxsize=8)
def _output_fn(attention, classifier, num_classes):
    """Per-video outputs as one traced function for any length n (cached, so
    periodic evaluations during training reuse the trace)."""
    @tf.function(input_signature=[tf.TensorSpec([None, None], tf.float32)])
    def fn(x):
        return [o[0] for o in video_outputs(attention, classifier, num_classes, x[None])]
    return fn


def infer_split(modules, data_dir, info, split, config):
    """Runs the models over a split, video by video.

    Args:
      modules: {stream: (attention, classifier)} (one or two streams).

    Yields:
      (video dict of numpy values from pipeline.eval_dataset,
       {stream: localize.StreamOutput}, [localize.Detection]).
    """
    loc_config = localize.LocalizationConfig.from_flags(config)
    fns = {s: _output_fn(a, c, info.num_classes) for s, (a, c) in modules.items()}
    count = 0
    with pipeline.reading(data_dir, info, split):
        for count, video in enumerate(pipeline.eval_dataset(data_dir, info, split, config), 1):
            outputs = {s: localize.StreamOutput(*(t.numpy() for t in fn(video[s])))
                       for s, fn in fns.items()}
            video = {k: v.numpy() for k, v in video.items()}
            detections = localize.localize_video(
                outputs, int(video["num_segments"]), loc_config,
                seconds_per_segment=float(video["seconds_per_segment"]))
            yield video, outputs, detections
    if count < info.splits[split]["num_videos"]:
        raise pipeline.fewer_videos_error(data_dir, info, split)


def frame_statistics(samples, attention_high, cls_high):
    """The paper's frame-set statistics (§7) over sampled positions.

    Args:
      samples: iterable of (attention [n], cls_score [n] = sigmoid of the
        labelled classes' T-CAM (max over them), in_gt [n] bool).
      attention_high, cls_high: thresholds defining "high".

    Returns:
      dict of the four ratios, each a count over all videos divided by |gt|.
    """
    counts = np.zeros(5)
    for att, cls, gt in samples:
        att, cls = att > attention_high, cls > cls_high
        counts += [np.sum(att & ~gt), np.sum(gt & ~att), np.sum(cls & ~gt & ~att),
                   np.sum(att & gt & ~cls), np.sum(gt)]
    gt_total = max(counts[4], 1.0)
    return {"att_minus_gt": counts[0] / gt_total, "gt_minus_att": counts[1] / gt_total,
            "cls_minus_gt_not_att": counts[2] / gt_total,
            "att_and_gt_minus_cls": counts[3] / gt_total}


def _frame_sample(video, output):
    """(attention, labelled-class score, in-gt mask) at the sampled positions."""
    n, t = output.attention.shape[0], int(video["num_segments"])
    centre = (np.arange(n) * t // n + 0.5) * float(video["seconds_per_segment"])  # [n] s
    in_gt = np.zeros(n, bool)
    for s, e in zip(video["gt_start"], video["gt_end"]):
        in_gt |= (centre >= s) & (centre <= e)
    labels = video["labels"].astype(int)
    cls = 1 / (1 + np.exp(-output.tcam[:, labels].max(-1))) if labels.size else np.zeros(n)
    return output.attention, cls, in_gt


def _score(detections_by_video, gt, class_names, thresholds):
    """detection.evaluate (plus named averages) of {video: [Detection]}.
    Classes without ground truth in the split do not enter the mAP, and
    their detections touch no other class's AP: they are left out."""
    results = localize.results_json(detections_by_video, class_names)
    scored = {"results": {v: [d for d in dets if d["label"] in gt.class_names]
                          for v, dets in results["results"].items()}}
    return detection.add_average_mAPs(detection.evaluate(
        gt, detection.parse_predictions(scored, gt.class_names), thresholds))


def evaluate_modules(modules, data_dir, info, split, config, checkpoint=None):
    """Localizes a split and scores it, fused and, with two streams, each
    stream alone (one-stream localization, v = u, on the same outputs).

    Args:
      checkpoint: what was evaluated, recorded in the metrics: a path, or
        {"attention": path, "classifier": path} for a module swap.

    Returns:
      metrics dict: detection.evaluate's keys plus named averages (fused),
      "streams" {stream: the same keys} with two streams,
      "frame_statistics" {stream: {...}}, "split", "source" (checkpoint,
      data, sampling and localization settings) and "results", the
      ActivityNet result JSON object of the (fused) detections.
    """
    loc_config = localize.LocalizationConfig.from_flags(config)
    alone = list(modules) if len(modules) > 1 else []
    database, samples = {}, {s: [] for s in modules}
    detections = {key: {} for key in [None] + alone}   # None: all streams together
    for video, outputs, dets in infer_split(modules, data_dir, info, split, config):
        vid = video["video_id"].decode()
        detections[None][vid] = dets
        for s in alone:
            detections[s][vid] = localize.localize_video(
                {s: outputs[s]}, int(video["num_segments"]), loc_config,
                seconds_per_segment=float(video["seconds_per_segment"]))
        database[vid] = {"subset": split, "duration": float(video["duration"]),
                         "annotations": [
                             {"label": info.class_names[c], "segment": [float(s), float(e)]}
                             for s, e, c in zip(video["gt_start"], video["gt_end"],
                                                video["gt_label"])]}
        for s, out in outputs.items():
            samples[s].append(_frame_sample(video, out))
    gt = detection.parse_ground_truth({"database": database}, split,
                                      source=f"split '{split}' of {data_dir}")
    thresholds = detection.thresholds_from_flags(config)
    metrics = _score(detections[None], gt, info.class_names, thresholds)
    if alone:
        metrics["streams"] = {s: _score(detections[s], gt, info.class_names, thresholds)
                              for s in alone}
    metrics["frame_statistics"] = {
        s: frame_statistics(v, config.attention_high, config.cls_high)
        for s, v in samples.items()}
    metrics["split"] = split
    metrics["source"] = {
        "checkpoint": checkpoint, "data_dir": io_utils.abspath(data_dir),
        "dataset": info.name or config.dataset, "streams": list(modules),
        "sampling": {"test_min_segments": config.test_min_segments,
                     "test_max_segments": config.test_max_segments},
        "localization": dataclasses.asdict(loc_config)}
    metrics["results"] = localize.results_json(detections[None], info.class_names)
    return metrics


def stream_modules(models):
    """{stream: (attention, classifier)} of {stream: StreamModel}."""
    return {s: (m.attention, m.classifier) for s, m in models.items()}


def evaluate_split(models, data_dir, info, split, config, checkpoint=None):
    """evaluate_modules for {stream: StreamModel} (training's hook)."""
    return evaluate_modules(stream_modules(models), data_dir, info, split, config, checkpoint)


def load_modules(config):
    """Restores --model_dir, or the module-swap model folders
    (--attention_checkpoint / --classifier_checkpoint), for the data of
    --data_dir (default: the built-in data).

    Returns:
      (data_dir, DatasetInfo, {stream: (attention, classifier)}).

    Raises:
      UserError: as `restore_modules`.
    """
    return restore_modules(config)[:3]


def restore_modules(config):
    """`load_modules` plus what was restored.

    Returns:
      (data_dir, DatasetInfo, {stream: (attention, classifier)}, checkpoint:
      the restored checkpoint's path, or {"attention": path, "classifier":
      path} for a module swap).

    Raises:
      UserError: no such model or checkpoint, or a model trained on other
        classes than those of the data.
    """
    from dgam_tf.training import train_lib
    data_dir, info = train_lib.resolve_data(config)
    attention_dir = config.attention_checkpoint or config.model_dir
    classifier_dir = config.classifier_checkpoint or config.model_dir
    loaded, paths = {}, {}
    for model_dir in dict.fromkeys((attention_dir, classifier_dir)):
        models, settings = train_lib.load_models(model_dir, config.checkpoint,
                                                 config.streams)
        if settings["class_names"] != info.class_names:
            raise UserError(f"the model in {model_dir} was trained on other classes "
                            f"than those of {data_dir}")
        loaded[model_dir], paths[model_dir] = models, io_utils.abspath(settings["checkpoint"])
    modules = {s: (loaded[attention_dir][s].attention, loaded[classifier_dir][s].classifier)
               for s in config.streams}
    checkpoint = paths[attention_dir] if attention_dir == classifier_dir else {
        "attention": paths[attention_dir], "classifier": paths[classifier_dir]}
    return data_dir, info, modules, checkpoint


def evaluate_model_dir(config):
    """--mode=eval: evaluates --test_split with the models of `load_modules`."""
    data_dir, info, modules, checkpoint = restore_modules(config)
    return evaluate_modules(modules, data_dir, info, config.test_split, config, checkpoint)


def output_paths(config, split):
    """(metrics, detections) paths of one evaluation: --output_metrics_json
    (default <model_dir>/metrics.json) and, beside it, detections_<split>.json,
    or NAME_detections_<split>.json for metrics named NAME.json."""
    metrics_path = config.output_metrics_json or os.path.join(config.model_dir, "metrics.json")
    stem = os.path.splitext(os.path.basename(metrics_path))[0]
    name = f"detections_{split}.json" if stem == "metrics" else f"{stem}_detections_{split}.json"
    return metrics_path, os.path.join(os.path.dirname(metrics_path), name)


def report(metrics, config):
    """Prints the mAP table (each stream alone and fused) and writes the
    metrics and the detections JSON atomically, at `output_paths`."""
    metrics = dict(metrics)
    results = metrics.pop("results")
    split = metrics["split"]
    metrics_path, detections_path = output_paths(config, split)
    metrics["detections"] = io_utils.abspath(detections_path)
    io_utils.atomic_write_json(detections_path, results)
    io_utils.atomic_write_json(metrics_path, metrics)
    streams = metrics["source"]["streams"]
    print(detection.format_table(
        metrics, f"{metrics['source']['dataset']}, {split} split"
        + (f", {streams[0]} stream alone" if len(streams) == 1 else ""), metrics.get("streams")))
    for stream, stats in metrics["frame_statistics"].items():
        print(f"frame sets ({stream}): " + ", ".join(f"{k} {v:.3f}" for k, v in stats.items()))
    print(f"Wrote {metrics_path} and {detections_path}")
