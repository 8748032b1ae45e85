"""Evaluation of trained models on a split: inference, localization, the
detection mAP and the paper's frame-set statistics (algorithm.md §5-§7)."""
import dataclasses
import functools
import os

import numpy as np
import tensorflow as tf

from dgam_tf import io_utils
from dgam_tf.data import pipeline
from dgam_tf.data.resolve import resolve_data
from dgam_tf.errors import UserError
from dgam_tf.evaluation import detection
from dgam_tf.localization import localize
from dgam_tf.models import io as model_io
from dgam_tf.models.dgam import video_outputs


@functools.lru_cache(maxsize=8)
def output_fn(attention, classifier, num_classes):
    """Per-video outputs as one traced function for any length n (cached, so
    periodic evaluations during training reuse the trace)."""
    @tf.function(input_signature=[tf.TensorSpec([None, None], tf.float32)])
    def fn(x):
        return [o[0] for o in video_outputs(attention, classifier, num_classes, x[None])]
    return fn


def infer_split(modules, data_dir, info, split, data, localization):
    """Runs the models over a split, video by video.

    Args:
      modules: {stream: (attention, classifier)} (one or two streams).
      data: DataConfig (its test sampling); localization: LocalizationConfig.

    Yields:
      (video dict of numpy values from pipeline.eval_dataset,
       {stream: localize.StreamOutput}, [localize.Detection]).
    """
    fns = {s: output_fn(a, c, info.num_classes) for s, (a, c) in modules.items()}
    count = 0
    with pipeline.reading(data_dir, info, split):
        for count, video in enumerate(pipeline.eval_dataset(data_dir, info, split, data), 1):
            outputs = {s: localize.StreamOutput(*(t.numpy() for t in fn(video[s])))
                       for s, fn in fns.items()}
            video = {k: v.numpy() for k, v in video.items()}
            detections = localize.localize_video(
                outputs, int(video["num_segments"]), localization,
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


def frame_sample(video, output):
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


def evaluate_modules(modules, data_dir, info, split, data, localization, evaluation,
                     checkpoint=None, on_video=None):
    """Localizes a split and scores it, fused and, with two streams, each
    stream alone (one-stream localization, v = u, on the same outputs).

    Args:
      modules: {stream: (attention, classifier)}.
      data: DataConfig (test sampling, dataset name); localization:
        LocalizationConfig; evaluation: EvalConfig (tIoU thresholds,
        frame-set thresholds).
      checkpoint: what was evaluated, recorded in the metrics: a path, or
        {"attention": path, "classifier": path} for a module swap.
      on_video: called with each (video, outputs, detections) of
        `infer_split` (the periodic validation's images), or None.

    Returns:
      metrics dict: detection.evaluate's keys plus named averages (fused),
      "streams" {stream: the same keys} with two streams,
      "frame_statistics" {stream: {...}}, "split", "source" (checkpoint,
      data, sampling and localization settings) and "results", the
      ActivityNet result JSON object of the (fused) detections.
    """
    alone = list(modules) if len(modules) > 1 else []
    database, samples = {}, {s: [] for s in modules}
    detections = {key: {} for key in [None] + alone}   # None: all streams together
    for video, outputs, dets in infer_split(modules, data_dir, info, split, data,
                                            localization):
        if on_video is not None:
            on_video(video, outputs, dets)
        vid = video["video_id"].decode()
        detections[None][vid] = dets
        for s in alone:
            detections[s][vid] = localize.localize_video(
                {s: outputs[s]}, int(video["num_segments"]), localization,
                seconds_per_segment=float(video["seconds_per_segment"]))
        database[vid] = {"subset": split, "duration": float(video["duration"]),
                         "annotations": [
                             {"label": info.class_names[c], "segment": [float(s), float(e)]}
                             for s, e, c in zip(video["gt_start"], video["gt_end"],
                                                video["gt_label"])]}
        for s, out in outputs.items():
            samples[s].append(frame_sample(video, out))
    gt = detection.parse_ground_truth({"database": database}, split,
                                      source=f"split '{split}' of {data_dir}")
    thresholds = evaluation.tiou_thresholds
    metrics = _score(detections[None], gt, info.class_names, thresholds)
    if alone:
        metrics["streams"] = {s: _score(detections[s], gt, info.class_names, thresholds)
                              for s in alone}
    metrics["frame_statistics"] = {
        s: frame_statistics(v, evaluation.attention_high, evaluation.cls_high)
        for s, v in samples.items()}
    metrics["split"] = split
    metrics["source"] = {
        "checkpoint": checkpoint, "data_dir": io_utils.abspath(data_dir),
        "dataset": info.name or data.dataset, "streams": list(modules),
        "sampling": {"test_min_segments": data.test_min_segments,
                     "test_max_segments": data.test_max_segments},
        "localization": dataclasses.asdict(localization)}
    metrics["results"] = localize.results_json(detections[None], info.class_names)
    return metrics


def stream_modules(models):
    """{stream: (attention, classifier)} of {stream: StreamModel}."""
    return {s: (m.attention, m.classifier) for s, m in models.items()}


def evaluate_split(models, data_dir, info, split, *, data, localization, evaluation,
                   checkpoint=None, on_video=None):
    """evaluate_modules for {stream: StreamModel} (training's evaluate_fn,
    with the three configs bound)."""
    return evaluate_modules(stream_modules(models), data_dir, info, split, data, localization,
                            evaluation, checkpoint, on_video)


def load_modules(model_dir, data, evaluation):
    """Restores the model in model_dir, or the module-swap model folders
    (EvalConfig's attention_checkpoint / classifier_checkpoint), for the
    data of the DataConfig (default: the built-in data).

    Returns:
      (data_dir, DatasetInfo, {stream: (attention, classifier)}).

    Raises:
      UserError: as `restore_modules`.
    """
    return restore_modules(model_dir, data, evaluation)[:3]


def restore_modules(model_dir, data, evaluation):
    """`load_modules` plus what was restored.

    Returns:
      (data_dir, DatasetInfo, {stream: (attention, classifier)}, checkpoint:
      the restored checkpoint's path, or {"attention": path, "classifier":
      path} for a module swap).

    Raises:
      UserError: no such model or checkpoint, or a model trained on other
        classes than those of the data.
    """
    data_dir, info = resolve_data(data)
    attention_dir = evaluation.attention_checkpoint or model_dir
    classifier_dir = evaluation.classifier_checkpoint or model_dir
    loaded, paths = {}, {}
    for folder in dict.fromkeys((attention_dir, classifier_dir)):
        models, settings, path = model_io.load_models(folder, evaluation.checkpoint,
                                                      data.streams)
        if list(settings.class_names) != info.class_names:
            raise UserError(f"the model in {folder} was trained on other classes "
                            f"than those of {data_dir}")
        loaded[folder], paths[folder] = models, io_utils.abspath(path)
    modules = {s: (loaded[attention_dir][s].attention, loaded[classifier_dir][s].classifier)
               for s in data.streams}
    checkpoint = paths[attention_dir] if attention_dir == classifier_dir else {
        "attention": paths[attention_dir], "classifier": paths[classifier_dir]}
    return data_dir, info, modules, checkpoint


def evaluate_model_dir(model_dir, data, localization, evaluation):
    """--mode=eval: evaluates the test split with the models of `load_modules`."""
    data_dir, info, modules, checkpoint = restore_modules(model_dir, data, evaluation)
    return evaluate_modules(modules, data_dir, info, data.test_split, data, localization,
                            evaluation, checkpoint)


def output_paths(model_dir, evaluation, split):
    """(metrics, detections) paths of one evaluation: EvalConfig's
    output_metrics_json (default <model_dir>/metrics.json) and, beside it,
    detections_<split>.json, or NAME_detections_<split>.json for metrics
    named NAME.json."""
    metrics_path = evaluation.output_metrics_json or os.path.join(model_dir, "metrics.json")
    stem = os.path.splitext(os.path.basename(metrics_path))[0]
    name = f"detections_{split}.json" if stem == "metrics" else f"{stem}_detections_{split}.json"
    return metrics_path, os.path.join(os.path.dirname(metrics_path), name)


def report(metrics, model_dir, evaluation):
    """Prints the mAP table (each stream alone and fused) and writes the
    metrics and the detections JSON atomically, at `output_paths`."""
    metrics = dict(metrics)
    results = metrics.pop("results")
    split = metrics["split"]
    metrics_path, detections_path = output_paths(model_dir, evaluation, split)
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
